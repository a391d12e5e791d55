"""Bounds-checked access to any byte of a packet, for NFs.

The header arrays of a Batch cover what most NFs need; these reach the
rest (TCP flags, ICMP type, ARP fields, payload). Offsets count from the
start of the frame (the Ethernet destination address is at 0); values are
big-endian (network order), as on the wire.

    from pynf.nf.access import load8, store8
    flags = load8(pkts, i, pkts.l4[i] + 13)     # TCP flags; -1 if outside the frame

The L4 payload (bounded by the IP and UDP lengths, so Ethernet padding is
not payload) has helpers of its own:

    lo, hi = payload(pkts, i)           # its first byte's offset and its end
    c = byte(pkts, i, lo + 2, hi)       # -1 at or past hi
    if iequal(pkts, i, lo, hi, st.word, 4): ...    # ASCII case folded

Reading `pkts.mem` or `pkts.off` directly is not part of the NF API: an
NF outside pynf's own library that does is refused when it is loaded
(pynf.nf.spec), because the offsets and bounds are what these helpers are
for.

A load outside the frame returns -1; a store outside it changes nothing
and returns False. Bytes stored here are not checksummed by the stage: an
NF that changes a byte covered by a checksum fixes the checksum itself
(pynf.packet.parse.csum_delta16 and csum_apply do it incrementally). Header
fields that have a Batch array (ports, addresses, TTL, MACs) are changed
through the array, or the write-back would undo the store.
"""
from pynf.compiler.intrinsics import ld8, ld16, ld32, st8, st16, st32
from pynf.compiler.jit import hot

TCP, UDP = 6, 17


@hot(inline="always")
def inside(pkts, i, off, size):
    """True when bytes off .. off+size-1 of packet i lie inside its frame."""
    return off >= 0 and off + size <= pkts.len[i]


@hot(inline="always")
def load8(pkts, i, off):
    if not inside(pkts, i, off, 1):
        return -1
    return ld8(pkts.mem, pkts.off[i] + off)


@hot(inline="always")
def load16(pkts, i, off):
    if not inside(pkts, i, off, 2):
        return -1
    return ld16(pkts.mem, pkts.off[i] + off)


@hot(inline="always")
def load32(pkts, i, off):
    if not inside(pkts, i, off, 4):
        return -1
    return ld32(pkts.mem, pkts.off[i] + off)


@hot(inline="always")
def store8(pkts, i, off, v):
    if not inside(pkts, i, off, 1):
        return False
    st8(pkts.mem, pkts.off[i] + off, v)
    return True


@hot(inline="always")
def store16(pkts, i, off, v):
    if not inside(pkts, i, off, 2):
        return False
    st16(pkts.mem, pkts.off[i] + off, v)
    return True


@hot(inline="always")
def store32(pkts, i, off, v):
    if not inside(pkts, i, off, 4):
        return False
    st32(pkts.mem, pkts.off[i] + off, v)
    return True


# ---- the L4 payload ----

@hot(inline="always")
def payload(pkts, i):
    """(lo, hi): the offsets in packet i's frame of its payload's first
    byte and of the byte after its last. For TCP and UDP (unfragmented or a
    first fragment) the payload follows the L4 header; otherwise it is the
    IP payload. hi is where the IPv4 total length (and UDP's length) says
    the data ends, never past the frame; lo == hi when there is none."""
    ln = pkts.len[i]
    l3 = pkts.l3[i]
    lo = pkts.l4[i]
    total = load16(pkts, i, l3 + 2)
    hi = l3 + total if total >= 0 else 0
    if hi > ln:
        hi = ln
    if pkts.frag[i] != 2:
        p = pkts.proto[i]
        if p == TCP:
            doff = load8(pkts, i, lo + 12)
            lo = lo + (doff >> 4) * 4 if doff >= 0 else hi
        elif p == UDP:
            ul = load16(pkts, i, lo + 4)
            if 8 <= ul and pkts.l4[i] + ul < hi:
                hi = pkts.l4[i] + ul
            lo = lo + 8
    if lo > hi:
        lo = hi
    return lo, hi


@hot(inline="always")
def byte(pkts, i, off, hi):
    """Byte `off` of packet i's frame if off < hi (from payload()), else -1."""
    if off < 0 or off >= hi or off >= pkts.len[i]:
        return -1
    return ld8(pkts.mem, pkts.off[i] + off)


@hot(inline="always")
def _fold(c):
    return c + 32 if 65 <= c <= 90 else c


@hot
def equal(pkts, i, off, hi, pat, n):
    """True when the n bytes of packet i's frame from `off` lie before hi
    (from payload()) and equal pat[:n] (a uint8 array, in the NF's state)."""
    if n < 0 or n > len(pat) or off < 0 or off + n > hi or off + n > pkts.len[i]:
        return False
    base = pkts.off[i] + off
    mem = pkts.mem
    for k in range(n):
        if ld8(mem, base + k) != pat[k]:
            return False
    return True


@hot
def iequal(pkts, i, off, hi, pat, n):
    """equal(), with ASCII letters compared case-folded (pat in lower case:
    DNS names, HTTP header names)."""
    if n < 0 or n > len(pat) or off < 0 or off + n > hi or off + n > pkts.len[i]:
        return False
    base = pkts.off[i] + off
    mem = pkts.mem
    for k in range(n):
        if _fold(ld8(mem, base + k)) != _fold(pat[k]):
            return False
    return True
