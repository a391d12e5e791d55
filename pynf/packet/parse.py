"""Parse a burst into a Batch, and write changed header fields back.

Parsing follows docs/design.md: Ethernet II with at most one 802.1Q/802.1ad tag,
IPv4 honouring IHL, TCP/UDP ports (0 for non-first fragments and other
protocols). Malformed and non-IPv4 frames are dropped under a reason from
pynf.packet.drops. Ethernet padding after the IPv4 total length is not payload.

Write-back compares each writable field with the packet bytes and rewrites
only what changed, fixing the IPv4 header checksum and the TCP/UDP checksum
incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). A UDP checksum of
0 means "none" (RFC 768) and stays 0; a computed 0 is sent as 0xFFFF.
"""
import numpy as np

from pynf.compiler.intrinsics import ld8, ld16, ld32, prefetch, st8, st16, st32
from pynf.compiler.jit import hot
from pynf.packet.drops import (
    P_ARP,
    PUNT_BASE,
    R_IP_IHL,
    R_IP_LEN,
    R_IP_TRUNCATED,
    R_IP_VERSION,
    R_L4_TRUNCATED,
    R_NOT_IPV4,
    R_RUNT,
    R_TCP_DOFF,
    R_VLAN_STACK,
)

ETH_IPV4 = 0x0800
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
PROTO_TCP = 6
PROTO_UDP = 17


@hot(inline="always")
def rd16(mem, o):
    return ld16(mem, o)


@hot(inline="always")
def rd32(mem, o):
    return ld32(mem, o)


@hot(inline="always")
def rd48(mem, o):
    return (ld16(mem, o) << 32) | ld32(mem, o + 2)


@hot(inline="always")
def wr16(mem, o, v):
    st16(mem, o, v)


@hot(inline="always")
def wr32(mem, o, v):
    st32(mem, o, v)


@hot(inline="always")
def wr48(mem, o, v):
    st16(mem, o, (v >> 32) & 0xFFFF)
    st32(mem, o + 2, v & 0xFFFFFFFF)


@hot(inline="always")
def csum_fold(s):
    """Fold a one's-complement sum of 16-bit words into 16 bits."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s


@hot(inline="always")
def ipv4_csum_ok(mem, o):
    """True when the IPv4 header at mem[o] (IHL words, as parsed) sums to
    0xFFFF, its checksum included (RFC 1071): one 32-bit load a header word."""
    ihl = ld8(mem, o) & 0xF
    s = ld32(mem, o) + ld32(mem, o + 4) + ld32(mem, o + 8) + ld32(mem, o + 12) + ld32(mem, o + 16)
    for k in range(5, ihl):         # options (rare)
        s += ld32(mem, o + 4 * k)
    s = (s & 0xFFFF) + (s >> 16)
    return csum_fold(s) == 0xFFFF


@hot(inline="always")
def csum_delta16(old, new):
    """Contribution of one 16-bit word changing from old to new: ~m + m'."""
    return ((~old) & 0xFFFF) + new


@hot(inline="always")
def csum_delta32(old, new):
    return csum_delta16(old >> 16, new >> 16) + csum_delta16(old & 0xFFFF, new & 0xFFFF)


@hot(inline="always")
def csum_apply(hc, delta):
    """RFC 1624 eqn. 3: HC' = ~(~HC + sum of (~m + m'))."""
    return (~csum_fold(((~hc) & 0xFFFF) + delta)) & 0xFFFF


@hot(inline="always")
def parse_one(mem, b, i, want_eth):
    """Parse packet i of batch b into its header arrays; 0 or a drop reason.

    The 5-tuple, TTL, offsets and fragment state are always filled in; the
    MAC addresses only with want_eth (a stage passes a constant, so the
    compiled parser of a stage whose NFs never look at MACs skips them).
    """
    o = b.off[i]
    ln = b.len[i]
    if ln < 14:
        return R_RUNT
    et = ld16(mem, o + 12)
    l3 = 14
    vlan = -1
    if et == ETH_VLAN or et == ETH_QINQ:
        if ln < 18:
            return R_RUNT
        vlan = ld16(mem, o + 14)
        et = ld16(mem, o + 16)
        l3 = 18
        if et == ETH_VLAN or et == ETH_QINQ:
            return R_VLAN_STACK
    if et != ETH_IPV4:
        return R_NOT_IPV4
    if ln < l3 + 20:
        return R_IP_TRUNCATED
    p = o + l3
    vihl = ld8(mem, p)
    if (vihl >> 4) != 4:
        return R_IP_VERSION
    ihl = (vihl & 0xF) * 4
    if ihl < 20:
        return R_IP_IHL
    if l3 + ihl > ln:
        return R_IP_TRUNCATED
    tot = ld16(mem, p + 2)
    if tot < ihl or l3 + tot > ln:
        return R_IP_LEN
    fragw = ld16(mem, p + 6)
    proto = ld8(mem, p + 9)
    l4 = l3 + ihl
    # NB: written with & | and conditional expressions, not if/else, so
    # that LLVM emits selects: a TCP/UDP mix makes `if proto == TCP` a coin
    # toss for the branch predictor, about 15 cycles a miss. The L4 bytes
    # are read whether or not they are used; they lie inside the buffer
    # (at most 94 bytes into it), never past it.
    nonfirst = (fragw & 0x1FFF) != 0
    frag = 2 if nonfirst else (1 if (fragw & 0x2000) != 0 else 0)
    paylen = tot - ihl
    is_tcp = proto == PROTO_TCP
    has_l4 = (is_tcp | (proto == PROTO_UDP)) & (not nonfirst)
    if has_l4 & (paylen < (20 if is_tcp else 8)):
        return R_L4_TRUNCATED
    doff = (ld8(mem, o + l4 + 12) >> 4) * 4
    if has_l4 & is_tcp & ((doff < 20) | (doff > paylen)):
        return R_TCP_DOFF
    ports = ld32(mem, o + l4) if has_l4 else 0
    sport = ports >> 16
    dport = ports & 0xFFFF
    b.l3[i] = l3
    b.l4[i] = l4
    b.vlan[i] = vlan
    if want_eth:
        b.eth_dst[i] = rd48(mem, o)
        b.eth_src[i] = rd48(mem, o + 6)
    b.ttl[i] = ld8(mem, p + 8)
    b.proto[i] = proto
    b.src_ip[i] = ld32(mem, p + 12)
    b.dst_ip[i] = ld32(mem, p + 16)
    b.frag[i] = frag
    b.sport[i] = sport
    b.dport[i] = dport
    return 0


F_FIRST = 1     # parse flag: the chain's first stage (verdicts start at port 0)
F_HOST = 2      # parse flag: ports have addresses: ARP frames go to the slow path
ETH_ARP = 0x0806


@hot(inline="always")
def is_arp(mem, o, ln):
    """An ARP frame (untagged or with one 802.1Q tag)?"""
    et = ld16(mem, o + 12)
    if et == ETH_VLAN and ln >= 18:
        et = ld16(mem, o + 16)
    return et == ETH_ARP


@hot(inline="always")
def parse_into(b, live, n, flags, drops, want_eth):
    """Parse packets 0..n-1; list the good ones in live[], count the rest.

    flags & F_FIRST: this stage is the first of its chain, so every verdict
    starts at output port 0; in a later pipeline stage the ring receive has
    already put the previous stage's verdict in b.port, and a packet already
    on its way to the slow path (a punt code) skips this stage's NFs.
    flags & F_HOST: ARP frames are punted (pynf.packet.drops.P_ARP) instead of
    dropped as not_ipv4.
    Punted packets are listed from the end of live[] backwards.
    Returns (live packets, punted packets).
    """
    mem = b.mem
    # Start loading every packet's first line: a burst's misses overlap
    # instead of each packet waiting for its own (DPDK's l3fwd does the same).
    for i in range(n):
        prefetch(mem, np.uint64(b.off[i]))
    m = 0
    q = 0
    top = len(live) - 1
    first = (flags & F_FIRST) != 0
    for i in range(n):
        if not first and b.port[i] >= PUNT_BASE:
            live[top - q] = i
            q += 1
            continue
        code = parse_one(mem, b, i, want_eth)
        if code != 0:
            if code == R_NOT_IPV4 and (flags & F_HOST) != 0 and is_arp(mem, b.off[i], b.len[i]):
                b.port[i] = PUNT_BASE | P_ARP
                live[top - q] = i
                q += 1
            else:
                b.port[i] = -1 - code
                drops[code] += 1
        else:
            if first:
                b.port[i] = 0
            live[m] = i
            m += 1
    return m, q


@hot
def parse_burst(b, live, n, flags, drops):
    """parse_into with every field (tests, tools); returns the live count."""
    m, _ = parse_into(b, live, n, flags, drops, True)
    return m


@hot(inline="always")
def writeback_one(mem, b, i, w_eth, w_ttl, w_src, w_dst, w_sport, w_dport):
    """Write packet i's changed fields among those flagged (constants in a
    stage: only the fields its NFs can write are compared)."""
    o = b.off[i]
    if w_eth:
        v = b.eth_dst[i]
        if rd48(mem, o) != v:
            wr48(mem, o, v)
        v = b.eth_src[i]
        if rd48(mem, o + 6) != v:
            wr48(mem, o + 6, v)
    if not (w_ttl or w_src or w_dst or w_sport or w_dport):
        return
    p = o + b.l3[i]
    ipd = 0      # delta for the IPv4 header checksum
    l4d = 0      # delta for the TCP/UDP checksum (pseudo-header and ports)
    if w_ttl:
        old = ld8(mem, p + 8)
        new = int(b.ttl[i])
        if old != new:
            proto = ld8(mem, p + 9)
            ipd += csum_delta16((old << 8) | proto, (new << 8) | proto)
            st8(mem, p + 8, new)
    if w_src:
        old = ld32(mem, p + 12)
        new = int(b.src_ip[i])
        if old != new:
            d = csum_delta32(old, new)
            ipd += d
            l4d += d
            st32(mem, p + 12, new)
    if w_dst:
        old = ld32(mem, p + 16)
        new = int(b.dst_ip[i])
        if old != new:
            d = csum_delta32(old, new)
            ipd += d
            l4d += d
            st32(mem, p + 16, new)
    if ipd != 0:
        st16(mem, p + 10, csum_apply(ld16(mem, p + 10), ipd))
    if not (w_src or w_dst or w_sport or w_dport):
        return
    proto = int(b.proto[i])
    if b.frag[i] == 2 or (proto != PROTO_TCP and proto != PROTO_UDP):
        return
    q = o + b.l4[i]
    is_udp = proto == PROTO_UDP
    if w_sport:
        old = ld16(mem, q)
        new = int(b.sport[i])
        if old != new:
            l4d += csum_delta16(old, new)
            st16(mem, q, new)
    if w_dport:
        old = ld16(mem, q + 2)
        new = int(b.dport[i])
        if old != new:
            l4d += csum_delta16(old, new)
            st16(mem, q + 2, new)
    if l4d != 0:
        ckp = q + (6 if is_udp else 16)         # a select, not a branch (see parse_one)
        ck = ld16(mem, ckp)
        if not (is_udp & (ck == 0)):            # UDP checksum 0: none, stays 0
            ck = csum_apply(ck, l4d)
            st16(mem, ckp, 0xFFFF if (is_udp & (ck == 0)) else ck)


@hot
def writeback(b, live, m):
    """Write every changed writable field of live[:m] (tests, tools)."""
    mem = b.mem
    for j in range(m):
        writeback_one(mem, b, live[j], True, True, True, True, True, True)
