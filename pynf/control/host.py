"""The ports' own addresses: `--iface NAME[=IP/LEN]`.

Each --iface is one port (numbered in the order given). A port with an
address answers ARP for it and ICMP echo to it (pynf.control.neigh, l3fwd),
sends ARP requests from it, and has a connected route for its subnet (l3fwd
adds it). The MAC address is the interface's own, read when the port opens.
"""
import os
from dataclasses import dataclass, field

from pynf.errors import UsageError, is_decimal, parse_ipv4


@dataclass
class Iface:
    name: str
    port: int
    ip: int = 0          # 0: no address
    plen: int = 0
    mac: int = 0         # filled in when the port opens

    @property
    def subnet(self):
        mask = (0xFFFFFFFF << (32 - self.plen)) & 0xFFFFFFFF if self.plen else 0
        return self.ip & mask, mask


def parse_iface(text, port):
    """`NAME[=IP/LEN]` -> Iface; UsageError naming the flag."""
    name, eq, addr = text.partition("=")
    if not name or len(name) > 15 or "/" in name or not os.path.isdir(f"/sys/class/net/{name}"):
        raise UsageError(f"--iface {text}: no such network interface {name!r}")
    if not eq:
        return Iface(name, port)
    ip, slash, plen = addr.partition("/")
    v = parse_ipv4(ip)
    if v is None or not slash or not is_decimal(plen) or not 1 <= int(plen) <= 32 or v == 0:
        raise UsageError(f"--iface {text}: want NAME=a.b.c.d/len (len 1..32)")
    return Iface(name, port, v, int(plen))


@dataclass
class Host:
    """The ports pynf owns and their addresses, shared by l3fwd and the slow
    path; `neigh` is the neighbour table (pynf.control.neigh)."""
    ifaces: list
    neigh: object = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        names = [i.name for i in self.ifaces]
        for n in names:
            if names.count(n) > 1:
                raise UsageError(f"--iface {n}: given twice")
        if self.neigh is None:
            from pynf.control.neigh import NeighTable
            self.neigh = NeighTable()

    def port(self, p):
        for i in self.ifaces:
            if i.port == p:
                return i
        return None

    def addresses(self):
        return [(i.ip, i.port) for i in self.ifaces if i.ip]
