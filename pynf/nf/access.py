"""Bounds-checked access to any byte of a packet, for NFs.

The header arrays of a Batch cover what most NFs need; these reach the
rest (TCP flags, ICMP type, ARP fields, payload). Offsets count from the
start of the frame (the Ethernet destination address is at 0); values are
big-endian (network order), as on the wire.

    from pynf.nf.access import load8, store8
    flags = load8(pkts, i, pkts.l4[i] + 13)     # TCP flags; -1 if outside the frame

A load outside the frame returns -1; a store outside it changes nothing
and returns False. Bytes stored here are not checksummed by the stage: an
NF that changes a byte covered by a checksum fixes the checksum itself
(pynf.packet.parse.csum_delta16 and csum_apply do it incrementally). Header
fields that have a Batch array (ports, addresses, TTL, MACs) are changed
through the array, or the write-back would undo the store.
"""
from pynf.compiler.intrinsics import ld8, ld16, ld32, st8, st16, st32
from pynf.compiler.jit import hot


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
