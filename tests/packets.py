"""Hand-built frames for tests, independent of pynf's own generator."""
import struct

MAC_A = bytes.fromhex("0a0000000001")
MAC_B = bytes.fromhex("0a0000000002")


def ip(a):
    return struct.unpack("!I", bytes(int(x) for x in a.split(".")))[0]


def csum(data):
    """RFC 1071 Internet checksum of bytes."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def l4_header(proto, sport, dport, payload, src, dst, udp_csum=True, flags=0x18, doff=5):
    if proto == 6:
        h = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, doff << 4, flags, 8192, 0, 0)
        h += b"\0" * (doff * 4 - 20) if doff > 5 else b""
        seg = h + payload
        pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
        c = csum(pseudo + seg)
        return seg[:16] + struct.pack("!H", c) + seg[18:]
    if proto == 17:
        ln = 8 + len(payload)
        seg = struct.pack("!HHHH", sport, dport, ln, 0) + payload
        if not udp_csum:
            return seg
        pseudo = struct.pack("!IIBBH", src, dst, 0, 17, ln)
        c = csum(pseudo + seg) or 0xFFFF
        return seg[:6] + struct.pack("!H", c) + seg[8:]
    return payload


def ipv4(src, dst, proto=17, sport=1234, dport=80, payload=b"x" * 18, ttl=64, options=b"",
         frag_off=0, mf=False, df=True, udp_csum=True, l4=None, tcp_flags=0x18, ident=1):
    """An IPv4 packet (bytes) with a valid header checksum."""
    s, d = ip(src) if isinstance(src, str) else src, ip(dst) if isinstance(dst, str) else dst
    body = l4 if l4 is not None else (
        l4_header(proto, sport, dport, payload, s, d, udp_csum, tcp_flags) if frag_off == 0 else payload)
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_off & 0x1FFF)
    h = struct.pack("!BBHHHBBHII", 0x40 | ihl, 0, ihl * 4 + len(body), ident, flags, ttl, proto, 0, s, d) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + body


def eth(payload, ethertype=0x0800, vlan=None, vlan2=None, dst=MAC_A, src=MAC_B, pad_to=60):
    tags = b""
    if vlan is not None:
        tags += struct.pack("!HH", 0x8100, vlan)
    if vlan2 is not None:
        tags += struct.pack("!HH", 0x8100, vlan2)
    f = dst + src + tags + struct.pack("!H", ethertype) + payload
    if len(f) < pad_to:
        f += b"\0" * (pad_to - len(f))
    return f


def udp(src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=53, **kw):
    return eth(ipv4(src, dst, 17, sport, dport, **kw))


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=80, **kw):
    return eth(ipv4(src, dst, 6, sport, dport, **kw))


def arp():
    return eth(bytes(28), ethertype=0x0806)


def ipv6():
    return eth(bytes.fromhex("6000000000083a40") + bytes(32) + bytes(8), ethertype=0x86DD)


def checksums_ok(frame):
    """True when the IPv4 header checksum and any TCP/UDP checksum verify."""
    off = 14
    et = struct.unpack("!H", frame[12:14])[0]
    if et == 0x8100:
        off = 18
        et = struct.unpack("!H", frame[16:18])[0]
    if et != 0x0800:
        return True
    ihl = (frame[off] & 15) * 4
    tot = struct.unpack("!H", frame[off + 2:off + 4])[0]
    if csum(frame[off:off + ihl]) != 0:
        return False
    frag = struct.unpack("!H", frame[off + 6:off + 8])[0]
    if frag & 0x3FFF:           # a fragment: its L4 checksum covers other fragments too
        return True
    proto = frame[off + 9]
    seg = frame[off + ihl:off + tot]
    src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    if proto == 6:
        return csum(pseudo + seg) == 0
    if proto == 17:
        if struct.unpack("!H", seg[6:8])[0] == 0:
            return True
        return csum(pseudo + seg) == 0
    return True
