"""Built-in traffic: Ethernet/IPv4/TCP and UDP frames for the flows of
pynf.traffic.flows, with valid checksums, written once into a template arena.

Frame sizes count the 4-byte FCS, as traffic generators do: a 64-byte frame
is 60 bytes in the buffer. Rates and Gbps figures add the FCS back, and
wire rates the 20 bytes of preamble and inter-frame gap.
"""
import numpy as np

from pynf.compiler.jit import hot

FCS = 4
WIRE_OVERHEAD = 20          # preamble + SFD + inter-frame gap
MIN_FRAME, MAX_FRAME = 64, 1518
TEMPLATE = 64               # header bytes kept per flow: Eth + IPv4 + TCP = 54
GEN_MAC_DST = bytes.fromhex("020000000200")   # the device under test
GEN_MAC_SRC = bytes.fromhex("020000000300")   # the generator


@hot
def _fold(s):
    """One's-complement sum folded to 16 bits, complemented (RFC 1071)."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@hot
def _be(t, i, o, v, nbytes):
    """Big-endian v into bytes o.. of row i (a row holds at least 60 bytes:
    every header field is within it)."""
    for k in range(nbytes):
        t[i, o + k] = (v >> (8 * (nbytes - 1 - k))) & 0xFF


@hot
def _fill(src_ip, dst_ip, sport, dport, proto, ids, ln, mac_dst, mac_src, t):
    """One template row per flow; checksums from the field values, not read
    back from the bytes. t is zeroed: bytes not written are zero."""
    l4len = ln - 34
    for i in range(len(src_ip)):
        for k in range(6):
            t[i, k] = mac_dst[k]
            t[i, 6 + k] = mac_src[k]
        t[i, 12] = 0x08
        t[i, 14] = 0x45
        src = np.int64(src_ip[i])
        dst = np.int64(dst_ip[i])
        pr = np.int64(proto[i])
        sp = np.int64(sport[i])
        dp = np.int64(dport[i])
        ident = np.int64(ids[i]) & 0xFFFF
        _be(t, i, 16, ln - 14, 2)
        _be(t, i, 18, ident, 2)                 # identification
        t[i, 20] = 0x40                         # DF
        t[i, 22] = 64                           # TTL
        t[i, 23] = pr
        ips = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        _be(t, i, 24, _fold(0x4500 + (ln - 14) + ident + 0x4000 + ((64 << 8) | pr) + ips), 2)
        _be(t, i, 26, src, 4)
        _be(t, i, 30, dst, 4)
        _be(t, i, 34, sp, 2)
        _be(t, i, 36, dp, 2)
        pseudo = ips + pr + l4len
        if pr == 6:
            # seq 1, ack 1, data offset 5, ACK, window 65535
            t[i, 41] = 1
            t[i, 45] = 1
            t[i, 46] = 0x50
            t[i, 47] = 0x10
            t[i, 48] = 0xFF
            t[i, 49] = 0xFF
            _be(t, i, 50, _fold(sp + dp + 1 + 1 + 0x5010 + 0xFFFF + pseudo), 2)
        else:
            _be(t, i, 38, l4len, 2)             # UDP: its length, the checksum
            ck = _fold(sp + dp + l4len + pseudo)
            _be(t, i, 40, ck if ck != 0 else 0xFFFF, 2)     # a computed 0 is sent as 0xFFFF


def build_templates(fs, frame_size, ids=None):
    """Header templates, one row per flow: uint8[flows, min(TEMPLATE, len)].

    Bytes beyond the template are payload zeros, which the checksums
    include (zeros add nothing to a one's-complement sum). ids: each row's
    flow number, where fs holds the flows in another order (it sets the IP
    identification); default 0, 1, ...
    """
    if not MIN_FRAME <= frame_size <= MAX_FRAME:
        raise ValueError(f"frame size {frame_size} outside {MIN_FRAME}..{MAX_FRAME}")
    ln = frame_size - FCS
    n = len(fs.src_ip)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    t = np.zeros((n, min(TEMPLATE, ln)), dtype=np.uint8)
    _fill(fs.src_ip, fs.dst_ip, fs.sport, fs.dport, fs.proto, ids, ln,
          np.frombuffer(GEN_MAC_DST, dtype=np.uint8), np.frombuffer(GEN_MAC_SRC, dtype=np.uint8), t)
    return t


def frame_bytes(fs, frame_size, i):
    """Flow i's whole frame as bytes (tests, pcap export)."""
    t = build_templates(type(fs)(*(a[i:i + 1] for a in fs)), frame_size, ids=[i])[0]
    return t.tobytes() + bytes(frame_size - FCS - len(t))
