"""Built-in traffic: Ethernet/IPv4/TCP and UDP frames for the flows of
pynf.flows, with valid checksums, written once into a template arena.

Frame sizes count the 4-byte FCS, as traffic generators do: a 64-byte frame
is 60 bytes in the buffer. Rates and Gbps figures add the FCS back, and
wire rates the 20 bytes of preamble and inter-frame gap.
"""
import numpy as np

FCS = 4
WIRE_OVERHEAD = 20          # preamble + SFD + inter-frame gap
MIN_FRAME, MAX_FRAME = 64, 1518
TEMPLATE = 64               # header bytes kept per flow: Eth + IPv4 + TCP = 54
GEN_MAC_DST = bytes.fromhex("020000000200")   # the device under test
GEN_MAC_SRC = bytes.fromhex("020000000300")   # the generator


def _put(t, o, v, nbytes):
    """Big-endian v (a number or one per flow) into byte rows o.. of t."""
    for k in range(nbytes):
        t[o + k] = (v >> (8 * (nbytes - 1 - k))) & 0xFF


def _fold_not(s):
    """One's-complement checksum of per-row sums of 16-bit words."""
    while np.any(s >> 16):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


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
    # NB: built byte position by byte position (a row of t per position, so
    # each write is contiguous), then turned into a row per flow once
    t = np.zeros((TEMPLATE, n), dtype=np.uint8)
    t[0:6] = np.frombuffer(GEN_MAC_DST, dtype=np.uint8)[:, None]
    t[6:12] = np.frombuffer(GEN_MAC_SRC, dtype=np.uint8)[:, None]
    t[12], t[13] = 0x08, 0x00
    src = fs.src_ip.astype(np.int64)
    dst = fs.dst_ip.astype(np.int64)
    proto = fs.proto.astype(np.int64)
    sport = fs.sport.astype(np.int64)
    dport = fs.dport.astype(np.int64)
    ident = (np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)) & 0xFFFF
    t[14] = 0x45
    _put(t, 16, ln - 14, 2)
    _put(t, 18, ident, 2)                       # identification
    _put(t, 20, 0x4000, 2)                      # DF
    t[22] = 64                                  # TTL
    t[23] = proto
    _put(t, 26, src, 4)
    _put(t, 30, dst, 4)
    # checksums from the field values, not read back from the bytes (RFC 1071)
    words = (0x4500 + (ln - 14) + ident + 0x4000 + ((64 << 8) | proto)
             + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    _put(t, 24, _fold_not(words), 2)
    _put(t, 34, sport, 2)
    _put(t, 36, dport, 2)
    l4len = ln - 34
    tcp = proto == 6
    # TCP: seq 1, ack 1, data offset 5, ACK, window 65535; UDP: its length
    t[45] = tcp
    t[46] = np.where(tcp, 0x50, 0)
    t[47] = np.where(tcp, 0x10, 0)
    t[48] = np.where(tcp, 0xFF, 0)
    t[49] = np.where(tcp, 0xFF, 0)
    t[38] = np.where(tcp, 0, (l4len >> 8) & 0xFF)
    t[39] = np.where(tcp, 0, l4len & 0xFF)
    pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + l4len
    ck = _fold_not(sport + dport + np.where(tcp, 1 + 1 + 0x5010 + 0xFFFF, l4len) + pseudo)
    ck = np.where(tcp | (ck != 0), ck, 0xFFFF)      # UDP sends a computed 0 as 0xFFFF
    _put(t, 50, np.where(tcp, ck, 0), 2)
    t[40] = np.where(tcp, 0, ck >> 8)               # TCP: seq's last bytes; UDP: the checksum
    t[41] = np.where(tcp, 1, ck & 0xFF)
    return np.ascontiguousarray(t[:min(TEMPLATE, ln)].T)


def frame_bytes(fs, frame_size, i):
    """Flow i's whole frame as bytes (tests, pcap export)."""
    t = build_templates(fs, frame_size)[i]
    return t.tobytes() + bytes(frame_size - FCS - len(t))
