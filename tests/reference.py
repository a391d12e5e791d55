"""Plain-Python reference semantics of parsing and of acl, lb and l3fwd
(docs/design.md), written from the spec over bytes, independently of pynf's
kernels, to compare them against."""
import struct

from lb_reference import Lb  # noqa: F401 - the lb reference (Maglev), used by ChainRef

REASONS_PARSE = ("runt", "vlan_stack", "not_ipv4", "ip_truncated", "ip_version", "ip_ihl",
                 "ip_len", "l4_truncated", "tcp_doff")


def parse(f):
    """(None, fields) or (reason, None)."""
    n = len(f)
    if n < 14:
        return "runt", None
    et = struct.unpack("!H", f[12:14])[0]
    l3 = 14
    if et in (0x8100, 0x88A8):
        if n < 18:
            return "runt", None
        et = struct.unpack("!H", f[16:18])[0]
        l3 = 18
        if et in (0x8100, 0x88A8):
            return "vlan_stack", None
    if et != 0x0800:
        return "not_ipv4", None
    if n < l3 + 20:
        return "ip_truncated", None
    if f[l3] >> 4 != 4:
        return "ip_version", None
    ihl = (f[l3] & 15) * 4
    if ihl < 20:
        return "ip_ihl", None
    if l3 + ihl > n:
        return "ip_truncated", None
    tot = struct.unpack("!H", f[l3 + 2:l3 + 4])[0]
    if tot < ihl or l3 + tot > n:
        return "ip_len", None
    fragw = struct.unpack("!H", f[l3 + 6:l3 + 8])[0]
    proto = f[l3 + 9]
    l4 = l3 + ihl
    sport = dport = 0
    nonfirst = (fragw & 0x1FFF) != 0
    fragment = nonfirst or (fragw & 0x2000) != 0
    if not nonfirst:
        pay = tot - ihl
        if proto == 6:
            if pay < 20:
                return "l4_truncated", None
            doff = (f[l4 + 12] >> 4) * 4
            if doff < 20 or doff > pay:
                return "tcp_doff", None
            sport, dport = struct.unpack("!HH", f[l4:l4 + 4])
        elif proto == 17:
            if pay < 8:
                return "l4_truncated", None
            sport, dport = struct.unpack("!HH", f[l4:l4 + 4])
    src, dst = struct.unpack("!II", f[l3 + 12:l3 + 20])
    return None, dict(l3=l3, l4=l4, proto=proto, ttl=f[l3 + 8], src=src, dst=dst, sport=sport,
                      dport=dport, nonfirst=nonfirst, fragment=fragment)


def acl(rules, h):
    """True when allowed: the first matching rule decides; none allows."""
    for r in rules:
        if r.matches(h["src"], h["dst"], h["sport"], h["dport"], h["proto"]):
            return r.allow
    return True


class L3fwd:
    def __init__(self, routes, default_port=-1):
        self.routes = dict(routes)
        self.default = default_port

    def __call__(self, h):
        """port or a drop reason."""
        if h["ttl"] <= 1:
            return "ttl"
        p = self.routes.get(h["dst"], self.default)
        return "no_route" if p < 0 else p


def ipv4_ok(f, l3):
    """The IPv4 header's checksum is right (RFC 1071)."""
    n = (f[l3] & 0xF) * 4
    s = sum((f[l3 + k] << 8) | f[l3 + k + 1] for k in range(0, n, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def _inc(ck, old, new):
    """RFC 1624 eqn. 3 on one 16-bit word."""
    s = (~ck & 0xFFFF) + (~old & 0xFFFF) + new
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def rewrite(f, h, dst=None, dport=None, ttl=None, eth_src=None, eth_dst=None):
    """The frame with fields changed and checksums updated."""
    f = bytearray(f)
    l3, l4 = h["l3"], h["l4"]
    ipck = struct.unpack("!H", f[l3 + 10:l3 + 12])[0]
    l4words = []          # (old, new) 16-bit words covered by the L4 checksum
    if ttl is not None and ttl != f[l3 + 8]:
        ipck = _inc(ipck, (f[l3 + 8] << 8) | f[l3 + 9], (ttl << 8) | f[l3 + 9])
        f[l3 + 8] = ttl
    if dst is not None:
        old = struct.unpack("!I", f[l3 + 16:l3 + 20])[0]
        if old != dst:
            for o, n in ((old >> 16, dst >> 16), (old & 0xFFFF, dst & 0xFFFF)):
                ipck = _inc(ipck, o, n)
                l4words.append((o, n))
            f[l3 + 16:l3 + 20] = struct.pack("!I", dst)
    f[l3 + 10:l3 + 12] = struct.pack("!H", ipck)
    l4ok = h["proto"] in (6, 17) and not h["nonfirst"]
    if dport is not None and l4ok:
        old = struct.unpack("!H", f[l4 + 2:l4 + 4])[0]
        if old != dport:
            l4words.append((old, dport))
            f[l4 + 2:l4 + 4] = struct.pack("!H", dport)
    if l4words and l4ok:
        pos = l4 + (16 if h["proto"] == 6 else 6)
        ck = struct.unpack("!H", f[pos:pos + 2])[0]
        if not (h["proto"] == 17 and ck == 0):
            for o, n in l4words:
                ck = _inc(ck, o, n)
            if h["proto"] == 17 and ck == 0:
                ck = 0xFFFF
            f[pos:pos + 2] = struct.pack("!H", ck)
    if eth_dst is not None:
        f[0:6] = eth_dst.to_bytes(6, "big")
    if eth_src is not None:
        f[6:12] = eth_src.to_bytes(6, "big")
    return bytes(f)


class ChainRef:
    """acl, lb, l3fwd in any order/subset, on whole frames."""

    def __init__(self, names, rules=(), backends=(), lb_capacity=1 << 20, routes=(),
                 default_port=-1, on_full="drop", non_l4="pass", verify_ip_csum=False):
        self.names = names
        self.verify = verify_ip_csum
        self.rules = list(rules)
        self.lb = Lb(backends, lb_capacity, on_full, non_l4)
        self.l3 = L3fwd(routes, default_port)

    def __call__(self, f):
        """(verdict, frame after): verdict is a port or a drop reason."""
        reason, h = parse(f)
        if reason:
            return reason, None
        port = 0
        for name in self.names:
            if name == "acl":
                if not acl(self.rules, h):
                    return "acl", None
            elif name == "lb":
                r = self.lb(h)
                if isinstance(r, str):
                    return r, None
                if r is not None:
                    f = rewrite(f, h, dst=r[0], dport=r[1])
                    h = dict(h, dst=r[0], dport=r[1] if h["proto"] in (6, 17) else h["dport"])
            elif name == "l3fwd":
                if self.verify and not ipv4_ok(f, h["l3"]):
                    return "ip_csum", None
                r = self.l3(h)
                if isinstance(r, str):
                    return r, None
                port = r
                f = rewrite(f, h, ttl=h["ttl"] - 1, eth_src=0x020000000000 + r,
                            eth_dst=0x020000000100 + r)
                h = dict(h, ttl=h["ttl"] - 1)
        return port, f
