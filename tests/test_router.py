"""l3fwd in router mode: LPM routes, connected routes from --iface
addresses, neighbours, ICMP echo to pynf, the slow-path hand-over."""
import struct

import pytest

from pynf.control.host import Host, Iface
from pynf.control.neigh import NeighTable, arp_frame, parse_arp
from pynf.errors import ConfigError
from pynf.nf.context import RunContext
from pynf.testing import Chain

import packets as P

MAC0, MAC1 = 0x0A0000000001, 0x0B0000000001


def host():
    return Host([Iface("a", 0, P.ip("10.0.1.1"), 24, MAC0), Iface("b", 1, P.ip("10.0.2.1"), 24, MAC1)])


def chain(tmp_path=None, routes=None, h=None):
    path = None
    if routes is not None:
        path = tmp_path / "routes.txt"
        path.write_text(routes)
    return Chain(["l3fwd"], RunContext(files={"routes": str(path)} if path else {}, host=h), host=h is not None)


def echo(src, dst, ttl=64):
    body = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"ping" * 4
    body = body[:2] + struct.pack("!H", P.csum(body)) + body[4:]
    return P.eth(P.ipv4(src, dst, proto=1, l4=body, ttl=ttl))


def test_echo_reply_to_own_address():
    h = host()
    v, outs = chain(h=h).run([echo("10.0.1.7", "10.0.1.1", ttl=1), echo("10.0.1.7", "10.0.2.1")])
    assert v == [0, 0]                      # back out of the port it came in on (0)
    o = outs[0]
    assert o[0:6] == P.MAC_B and o[6:12] == MAC0.to_bytes(6, "big")
    ip = o[14:34]
    assert ip[12:16] == bytes((10, 0, 1, 1)) and ip[16:20] == bytes((10, 0, 1, 7)) and ip[8] == 64
    assert o[34] == 0 and P.checksums_ok(o) and P.csum(o[34:34 + 24]) == 0
    assert outs[1][26:30] == bytes((10, 0, 2, 1))


def test_neighbour_known_unknown_and_local():
    h = host()
    h.neigh.learn(P.ip("10.0.2.5"), 0x0C0000000005, 1, 0.0)
    v, outs = chain(h=h).run([P.udp(dst="10.0.2.5"), P.udp(dst="10.0.2.6"), P.udp(dst="10.9.9.9"),
                              P.udp(dst="10.0.1.1"), P.udp(dst="10.0.2.5", ttl=1)])
    assert v == [1, ("slowpath", "l3fwd", 0), "no_route", "local", "ttl"]
    assert outs[0][:12] == bytes.fromhex("0c0000000005") + MAC1.to_bytes(6, "big")
    # on its way to the slow path: TTL already decremented, port and next hop in eth_dst
    assert outs[1][:6] == (1 << 32 | P.ip("10.0.2.6")).to_bytes(6, "big") and outs[1][22] == 63
    assert P.checksums_ok(outs[0]) and P.checksums_ok(outs[1])


def test_lpm_routes_with_next_hops(tmp_path):
    h = host()
    h.neigh.learn(P.ip("10.0.2.9"), 0x0C0000000009, 1, 0.0)
    routes = "0.0.0.0/0 1 10.0.2.9\n192.168.0.0/16 0 10.0.1.9\n192.168.7.0/24 1 10.0.2.9\n10.5.0.1 0\n"
    v, outs = chain(tmp_path, routes, h).run(
        [P.udp(dst="8.8.8.8"), P.udp(dst="192.168.1.1"), P.udp(dst="192.168.7.7"), P.udp(dst="10.5.0.1")])
    assert v[0] == 1 and outs[0][:6] == bytes.fromhex("0c0000000009")
    assert v[1] == ("slowpath", "l3fwd", 0)
    assert outs[1][:6] == (0 << 32 | P.ip("10.0.1.9")).to_bytes(6, "big")
    assert v[2] == 1
    assert v[3] == ("slowpath", "l3fwd", 0)         # exact route: next hop is the destination


def test_prefix_routes_without_iface(tmp_path):
    v, _ = chain(tmp_path, "10.0.0.0/8 3\n").run([P.udp(dst="10.1.2.3"), P.udp(dst="11.0.0.1")])
    assert v == [("slowpath", "l3fwd", 0), "no_route"]     # no MAC is ever made up


@pytest.mark.parametrize("text", ["10.0.0.0/33 1\n", "10.0.0.1/8 1\n", "10.0.0.0/8 1 x\n",
                                  "10.0.0.0/8 1 0.0.0.0\n", "10.0.0.0/8\n", "10.0.0.1 1 10.0.0.2\n"])
def test_bad_prefix_route(tmp_path, text):
    p = tmp_path / "r.txt"
    p.write_text("10.0.0.0/8 0\n" + text)
    with pytest.raises(ConfigError) as e:
        Chain(["l3fwd"], RunContext(files={"routes": str(p)}))
    assert str(e.value).startswith(f"{p}:2: bad route")


def test_arp_punted_only_in_host_mode():
    h = host()
    arp = arp_frame(1, 0x0C0000000007, P.ip("10.0.1.7"), 0, P.ip("10.0.1.1"), eth_dst=0xFFFFFFFFFFFF)
    assert parse_arp(arp) == (1, 0x0C0000000007, P.ip("10.0.1.7"), P.ip("10.0.1.1"))
    assert chain(h=h).run([arp])[0] == [("slowpath", "pynf", 0)]
    assert chain(h=None).run([arp])[0] == ["not_ipv4"]


def test_neigh_table_lifecycle():
    t = NeighTable(capacity=4)
    e = t.learn(P.ip("10.0.0.1"), 0x0C0000000001, 0, 0.0)
    assert e is not None and t.mac(P.ip("10.0.0.1")) == 0x0C0000000001
    for k in range(2, 5):
        assert t.entry(P.ip(f"10.0.0.{k}"), 0.0) is not None
    assert t.entry(P.ip("10.0.0.9"), 0.0) is None and t.stats["full"] == 1
    t.invalidate(e, 0.0)
    assert t.mac(P.ip("10.0.0.1")) is None
    assert t.entry(P.ip("10.0.0.9"), 0.5) is None            # still within the grace time
    assert t.entry(P.ip("10.0.0.9"), 5.0) is not None        # the dead entry's slot is reused


def test_route_to_a_port_pynf_does_not_have(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("10.0.0.0/8 1\n10.9.0.0/16 2\n")
    with pytest.raises(ConfigError) as e:
        Chain(["l3fwd"], RunContext(files={"routes": str(p)}, host=host()))
    assert str(e.value).startswith(f"{p}:2: route") and "no port 2" in str(e.value)
