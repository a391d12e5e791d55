"""Built-in traffic: Ethernet/IPv4/TCP and UDP frames for the flows of
pynf.flows, with valid checksums, written once into a template arena.

Frame sizes count the 4-byte FCS, as traffic generators do: a 64-byte frame
is 60 bytes in the buffer. Rates and Gbps figures add the FCS back, and
wire rates the 20 bytes of preamble and inter-frame gap.
"""
import numpy as np

from pynf.flows import make_flows

FCS = 4
WIRE_OVERHEAD = 20          # preamble + SFD + inter-frame gap
MIN_FRAME, MAX_FRAME = 64, 1518
TEMPLATE = 64               # header bytes kept per flow: Eth + IPv4 + TCP = 54
GEN_MAC_DST = bytes.fromhex("020000000200")   # the device under test
GEN_MAC_SRC = bytes.fromhex("020000000300")   # the generator


def _be16(a, o, v):
    a[:, o] = (v >> 8) & 0xFF
    a[:, o + 1] = v & 0xFF


def _be32(a, o, v):
    for k in range(4):
        a[:, o + k] = (v >> (24 - 8 * k)) & 0xFF


def _csum(words):
    s = words.sum(axis=1, dtype=np.int64)
    while np.any(s >> 16):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _words(a, lo, hi):
    seg = a[:, lo:hi].astype(np.int64)
    return (seg[:, 0::2] << 8) | seg[:, 1::2]


def build_templates(fs, frame_size):
    """Header templates, one row per flow: uint8[flows, min(TEMPLATE, len)].

    Bytes beyond the template are payload zeros, which the checksums
    include (zeros add nothing to a one's-complement sum).
    """
    if not MIN_FRAME <= frame_size <= MAX_FRAME:
        raise ValueError(f"frame size {frame_size} outside {MIN_FRAME}..{MAX_FRAME}")
    ln = frame_size - FCS
    n = len(fs.src_ip)
    a = np.zeros((n, TEMPLATE), dtype=np.uint8)
    a[:, 0:6] = np.frombuffer(GEN_MAC_DST, dtype=np.uint8)
    a[:, 6:12] = np.frombuffer(GEN_MAC_SRC, dtype=np.uint8)
    a[:, 12], a[:, 13] = 0x08, 0x00
    src = fs.src_ip.astype(np.int64)
    dst = fs.dst_ip.astype(np.int64)
    proto = fs.proto.astype(np.int64)
    a[:, 14] = 0x45
    _be16(a, 16, np.full(n, ln - 14))
    _be16(a, 18, np.arange(n) & 0xFFFF)          # identification
    _be16(a, 20, np.full(n, 0x4000))             # DF
    a[:, 22] = 64                                # TTL
    a[:, 23] = proto
    _be32(a, 26, src)
    _be32(a, 30, dst)
    _be16(a, 24, _csum(_words(a, 14, 34)))
    _be16(a, 34, fs.sport.astype(np.int64))
    _be16(a, 36, fs.dport.astype(np.int64))
    l4len = ln - 34
    tcp = proto == 6
    # TCP: seq 1, ack 1, data offset 5, ACK, window 65535
    a[tcp, 41] = 1
    a[tcp, 45] = 1
    a[tcp, 46] = 0x50
    a[tcp, 47] = 0x10
    a[tcp, 48] = 0xFF
    a[tcp, 49] = 0xFF
    udp = ~tcp
    a[udp, 38] = (l4len >> 8) & 0xFF
    a[udp, 39] = l4len & 0xFF
    pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + l4len
    hdr = np.where(tcp[:, None], _words(a, 34, 54), np.pad(_words(a, 34, 42), ((0, 0), (0, 6))))
    ck = _csum(np.concatenate([hdr, pseudo[:, None]], axis=1))
    ck_udp = np.where(ck == 0, 0xFFFF, ck)
    tpos = np.where(tcp, 50, 40)
    val = np.where(tcp, ck, ck_udp)
    rows = np.arange(n)
    a[rows, tpos] = (val >> 8) & 0xFF
    a[rows, tpos + 1] = val & 0xFF
    return a[:, :min(TEMPLATE, ln)].copy()


def frame_bytes(fs, frame_size, i):
    """Flow i's whole frame as bytes (tests, pcap export)."""
    t = build_templates(fs, frame_size)[i]
    return t.tobytes() + bytes(frame_size - FCS - len(t))


def make(flows, frame_size, seed=1):
    fs = make_flows(flows, seed)
    return fs, build_templates(fs, frame_size)
