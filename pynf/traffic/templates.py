"""Built-in traffic: Ethernet/IPv4/TCP and UDP frames for the flows of
pynf.traffic.flows, with valid checksums, written once into a template arena.

Frame sizes count the 4-byte FCS, as traffic generators do: a 64-byte frame
is 60 bytes in the buffer. Rates and Gbps figures add the FCS back, and
wire rates the 20 bytes of preamble and inter-frame gap.
"""
import numpy as np

from pynf.compiler.jit import hot
from pynf.traffic.flows import KIND_DNS, KIND_SYN

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
def _fill(src_ip, dst_ip, sport, dport, proto, ids, ln, mac_dst, mac_src, t, kind, pay, pay_sum):
    """One template row per flow; checksums from the field values, not read
    back from the bytes. t is zeroed: bytes not written are zero. kind: a
    flow's packets (pynf.traffic.flows.KIND_*); a DNS flow carries pay[i]
    (its words summing to pay_sum[i]) and ends there, the rest of the
    frame being Ethernet padding."""
    for i in range(len(src_ip)):
        kd = kind[i]
        l4len = 8 + pay.shape[1] if kd == KIND_DNS else ln - 34
        iplen = 20 + l4len
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
        _be(t, i, 16, iplen, 2)
        _be(t, i, 18, ident, 2)                 # identification
        t[i, 20] = 0x40                         # DF
        t[i, 22] = 64                           # TTL
        t[i, 23] = pr
        ips = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        _be(t, i, 24, _fold(0x4500 + iplen + ident + 0x4000 + ((64 << 8) | pr) + ips), 2)
        _be(t, i, 26, src, 4)
        _be(t, i, 30, dst, 4)
        _be(t, i, 34, sp, 2)
        _be(t, i, 36, dp, 2)
        pseudo = ips + pr + l4len
        if pr == 6:
            # seq 1, ack 1 (a SYN: 0), data offset 5, ACK (or SYN), window 65535
            syn = kd == KIND_SYN
            ack = 0 if syn else 1
            flags = 0x02 if syn else 0x10
            t[i, 41] = 1
            t[i, 45] = ack
            t[i, 46] = 0x50
            t[i, 47] = flags
            t[i, 48] = 0xFF
            t[i, 49] = 0xFF
            _be(t, i, 50, _fold(sp + dp + 1 + ack + (0x5000 | flags) + 0xFFFF + pseudo), 2)
        else:
            _be(t, i, 38, l4len, 2)             # UDP: its length, the checksum
            extra = 0
            if kd == KIND_DNS:
                for c in range(pay.shape[1]):
                    t[i, 42 + c] = pay[i, c]
                extra = pay_sum[i]
            ck = _fold(sp + dp + l4len + pseudo + extra)
            _be(t, i, 40, ck if ck != 0 else 0xFFFF, 2)     # a computed 0 is sent as 0xFFFF


# A built-in DNS query: id, flags (RD), one question; the name f<5 digits>
# under example.com, or ads.example for one flow in eight; type A, class IN.
DNS_LEN = 36
DNS_FRAME = 14 + 20 + 8 + DNS_LEN + FCS         # the smallest frame that holds it
_EXAMPLE_COM = b"\x07example\x03com\x00"
_ADS_EXAMPLE = b"\x03ads\x07example\x00"


def dns_queries(ids):
    """DNS query payloads (uint8[n, DNS_LEN]) for flow numbers ids, and the
    sums of their 16-bit words (for the UDP checksum)."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    p = np.zeros((n, DNS_LEN), dtype=np.uint8)
    p[:, 0] = (ids >> 8) & 0xFF
    p[:, 1] = ids & 0xFF
    p[:, 2] = 0x01                              # RD
    p[:, 5] = 1                                 # QDCOUNT
    p[:, 12] = 6
    p[:, 13] = ord("f")
    for d in range(5):
        p[:, 14 + d] = ord("0") + (ids // 10 ** (4 - d)) % 10
    ads = (ids // 8) % 8 == 3                    # one flow in eight, in every profile
    p[:, 19:32] = np.frombuffer(_EXAMPLE_COM, dtype=np.uint8)
    p[ads, 19:32] = np.frombuffer(_ADS_EXAMPLE, dtype=np.uint8)
    p[:, 33] = 1                                # QTYPE A
    p[:, 35] = 1                                # QCLASS IN
    words = p.reshape(n, DNS_LEN // 2, 2).astype(np.int64)
    return p, (words[:, :, 0] * 256 + words[:, :, 1]).sum(axis=1)


def build_templates(fs, frame_size, ids=None, kind=None):
    """Header templates, one row per flow: uint8[flows, min(TEMPLATE, len)].

    Bytes beyond the template are payload zeros, which the checksums
    include (zeros add nothing to a one's-complement sum). ids: each row's
    flow number, where fs holds the flows in another order (it sets the IP
    identification); default 0, 1, ... kind: each row's packet kind
    (pynf.traffic.flows.profile_flows), default plain.
    """
    if not MIN_FRAME <= frame_size <= MAX_FRAME:
        raise ValueError(f"frame size {frame_size} outside {MIN_FRAME}..{MAX_FRAME}")
    ln = frame_size - FCS
    n = len(fs.src_ip)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    kind = np.zeros(n, dtype=np.uint8) if kind is None else np.asarray(kind, dtype=np.uint8)
    dns = bool((kind == KIND_DNS).any())
    if dns and frame_size < DNS_FRAME:
        raise ValueError(f"frame size {frame_size}: a DNS query needs {DNS_FRAME} bytes or more")
    pay, pay_sum = dns_queries(ids) if dns else (np.zeros((n, DNS_LEN), dtype=np.uint8), np.zeros(n, np.int64))
    t = np.zeros((n, min(max(TEMPLATE, DNS_FRAME - FCS if dns else 0), ln)), dtype=np.uint8)
    _fill(fs.src_ip, fs.dst_ip, fs.sport, fs.dport, fs.proto, ids, ln,
          np.frombuffer(GEN_MAC_DST, dtype=np.uint8), np.frombuffer(GEN_MAC_SRC, dtype=np.uint8), t,
          kind, pay, pay_sum)
    return t


def frame_bytes(fs, frame_size, i, kind=None):
    """Flow i's whole frame as bytes (tests, pcap export)."""
    t = build_templates(type(fs)(*(a[i:i + 1] for a in fs)), frame_size, ids=[i],
                        kind=None if kind is None else kind[i:i + 1])[0]
    return t.tobytes() + bytes(frame_size - FCS - len(t))
