"""Frames and captures for NF tests, built with Scapy (pip install 'pynf[test]').

    from pynf.testing import frames as F
    F.tcp("10.0.0.1", "10.0.0.2", 40000, 80, flags="S")     # bytes, checksums filled in
    F.udp("10.0.0.1", "10.0.0.2", 5353, 53, payload=b"...")
    F.dns_query("www.ads.example", src="10.0.0.1")
    F.write_pcap("syns.pcap", [F.tcp(...), ...])            # for pynf run --pcap-in

Each builder returns the frame's bytes (Ethernet, IPv4, L4, padded to the
60-byte minimum), with the IPv4 and L4 checksums correct; `vlan=` adds an
802.1Q tag. For anything else build the packet with Scapy itself and pass
bytes(pkt): pynf.testing takes any bytes.
"""
MAC_DST = "0a:00:00:00:00:01"
MAC_SRC = "0a:00:00:00:00:02"


def _scapy():
    try:
        from scapy.layers import dns, inet, l2
    except ImportError:
        raise ImportError("pynf.testing.frames builds frames with Scapy: pip install scapy "
                          "(or pynf[test])") from None
    return l2, inet, dns


def _frame(l3, vlan, mac_dst, mac_src):
    l2, _, _ = _scapy()
    eth = l2.Ether(dst=mac_dst, src=mac_src)
    pkt = eth / l2.Dot1Q(vlan=vlan) / l3 if vlan is not None else eth / l3
    b = bytes(pkt)
    return b + bytes(max(0, 60 - len(b)))


def ipv4(src, dst, l4, ttl=64, df=False, ident=1, vlan=None, mac_dst=MAC_DST, mac_src=MAC_SRC):
    """A frame of an IPv4 packet around `l4` (a Scapy layer, or bytes)."""
    _, inet, _ = _scapy()
    ip = inet.IP(src=src, dst=dst, ttl=ttl, id=ident, flags="DF" if df else 0)
    return _frame(ip / l4, vlan, mac_dst, mac_src)


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=80, flags="A", payload=b"", seq=1, ack=0,
        **kw):
    """A TCP segment; flags as Scapy spells them ("S" a SYN, "SA", "A", "FA", "R", "PA")."""
    _, inet, _ = _scapy()
    return ipv4(src, dst, inet.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload, **kw)


def udp(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=53, payload=b"", **kw):
    _, inet, _ = _scapy()
    return ipv4(src, dst, inet.UDP(sport=sport, dport=dport) / payload, **kw)


def dns_query(name, src="10.0.0.1", dst="10.0.0.53", sport=40000, qtype="A", ident=0, **kw):
    """A DNS query for `name` (UDP to port 53)."""
    _, inet, dns = _scapy()
    q = dns.DNS(id=ident, rd=1, qd=dns.DNSQR(qname=name, qtype=qtype))
    return ipv4(src, dst, inet.UDP(sport=sport, dport=53) / q, **kw)


def write_pcap(path, frames, gap_ns=1000):
    """Write frames to a pcap (microsecond, Ethernet), gap_ns apart."""
    from pynf.io.pcap import Writer
    w = Writer(str(path))
    try:
        for k, f in enumerate(frames):
            w.write(bytes(f), k * gap_ns)
    finally:
        w.close()
    return str(path)
