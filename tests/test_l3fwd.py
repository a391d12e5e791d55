"""l3fwd: TTL edge cases, routes, misses, MACs, checksums."""
import pytest

from pynf.errors import ConfigError
from pynf.nf.context import RunContext
from pynf.testing import Chain

import packets as P
import reference as R

ROUTES = "# routes\n10.0.0.2 1\n10.0.0.3 2\n10.0.0.3 3\n"


def chain(tmp_path, **settings):
    p = tmp_path / "routes.txt"
    p.write_text(ROUTES)
    return Chain(["l3fwd"], RunContext(files={"routes": str(p)}, settings={"l3fwd": settings} if settings else {}))


@pytest.mark.parametrize("ttl,want", [(0, "ttl"), (1, "ttl"), (2, 1), (255, 1)])
def test_ttl(tmp_path, ttl, want):
    v, outs = chain(tmp_path).run([P.udp(dst="10.0.0.2", ttl=ttl)])
    assert v == [want]
    if want == 1:
        ip = outs[0][14:34]
        assert ip[8] == ttl - 1 and P.checksums_ok(outs[0])


def test_routes_miss_macs_and_reference(tmp_path):
    frames = [P.udp(dst="10.0.0.2"), P.tcp(dst="10.0.0.3"), P.udp(dst="10.0.0.9"),
              P.eth(P.ipv4("1.1.1.1", "10.0.0.2", options=b"\x01" * 4)),
              P.eth(P.ipv4("1.1.1.1", "10.0.0.3"), vlan=7),
              P.eth(P.ipv4("1.1.1.1", "10.0.0.2", frag_off=3, df=False, payload=b"q" * 16))]
    v, outs = chain(tmp_path).run(frames)
    assert v == [1, 3, "no_route", 1, 3, 1]
    assert outs[0][:12] == bytes.fromhex("020000000101") + bytes.fromhex("020000000001")
    ref = R.ChainRef(["l3fwd"], routes=[(P.ip("10.0.0.2"), 1), (P.ip("10.0.0.3"), 3)])
    for f, o in zip(frames, outs):
        if o is not None:
            # the VLAN frame's MACs and TTL are rewritten the same way
            assert o == ref(f)[1]
            assert P.checksums_ok(o)


def test_default_port(tmp_path):
    v, _ = chain(tmp_path, default_port="2").run([P.udp(dst="10.9.9.9")])
    assert v == [2]


@pytest.mark.parametrize("text", ["10.0.0.1\n", "10.0.0.1 x\n", "10.0.0 1\n", "10.0.0.1 1 2\n", "10.0.0.1 5000\n"])
def test_bad_route_line(tmp_path, text):
    p = tmp_path / "r.txt"
    p.write_text("10.0.0.5 0\n" + text)
    with pytest.raises(ConfigError) as e:
        Chain(["l3fwd"], RunContext(files={"routes": str(p)}))
    assert str(e.value).startswith(f"{p}:2: bad route")


@pytest.mark.parametrize("where", [10, 11, 12, 19, 22])     # the checksum itself, an address, an option
def test_bad_ipv4_header_checksum_dropped(tmp_path, where):
    """RFC 1812 5.2.2: a router drops a packet whose IPv4 header checksum is
    wrong (verify_ip_csum, on by default in router mode); exact-match mode
    forwards it by default, as the paper's L3FWD and DPDK's l3fwd do."""
    good = P.eth(P.ipv4("1.1.1.1", "10.0.0.2", options=b"\x01" * 4 if where == 22 else b""))
    bad = bytearray(good)
    bad[14 + where] ^= 0x40
    v, outs = chain(tmp_path, verify_ip_csum="1").run([good, bytes(bad)])
    assert v == [1, "ip_csum"]
    ref = R.ChainRef(["l3fwd"], routes=[(P.ip("10.0.0.2"), 1)], verify_ip_csum=True)
    assert ref(bytes(bad))[0] == "ip_csum"
    v, _ = chain(tmp_path).run([bytes(bad)])          # an address bit flipped: maybe no route
    assert v[0] != "ip_csum" and v == [R.ChainRef(["l3fwd"], routes=[(P.ip("10.0.0.2"), 1)])(bytes(bad))[0]]
    p = tmp_path / "prefixes.txt"
    p.write_text("10.0.0.0/24 1\n")
    router = Chain(["l3fwd"], RunContext(files={"routes": str(p)}))
    v, _ = router.run([bytes(bad)])
    assert v == ["ip_csum"]
