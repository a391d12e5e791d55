"""acl: rule parsing, edge cases, and the compiled classifier vs a linear scan."""
import random

import pytest

from pynf import classify
from pynf.context import RunContext
from pynf.errors import ConfigError
from pynf.testing import Chain

import packets as P
import reference as R


def rules_file(tmp_path, lines):
    p = tmp_path / "rules.txt"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def verdicts(tmp_path, lines, frames):
    ctx = RunContext(acl_rules=rules_file(tmp_path, lines))
    return Chain(["acl"], ctx).run(frames)[0]


def test_edge_rules(tmp_path):
    lines = [
        "# port ranges touching 0 and 65535, /32 and /0, wildcard proto, order",
        "@10.0.0.1/32 0.0.0.0/0 0 : 0 0 : 65535 0x11/0xff deny",
        "@0.0.0.0/0 0.0.0.0/0 65535 : 65535 0 : 65535 0x00/0x00 deny",
        "@0.0.0.0/0 192.168.0.0/16 0 : 65535 80 : 80 0x06/0xff allow",
        "@0.0.0.0/0 192.168.0.0/16 0 : 65535 0 : 65535 0x06/0xff deny",
        "@0.0.0.0/0 172.16.0.0/12 0 : 65535 1000 : 2000 0x00/0x00",
    ]
    frames = [
        P.udp("10.0.0.1", "1.1.1.1", sport=1),       # rule 0 needs sport 0: no; allowed
        P.eth(P.ipv4("10.0.0.1", "1.1.1.1", frag_off=5, df=False, payload=b"z" * 20)),  # ports 0: rule 0
        P.tcp("1.2.3.4", "5.6.7.8", sport=65535),     # rule 1
        P.tcp("1.2.3.4", "192.168.9.9", dport=80),    # allow (rule 2) before deny (3)
        P.tcp("1.2.3.4", "192.168.9.9", dport=81),    # rule 3
        P.udp("1.2.3.4", "192.168.9.9", dport=81),    # rule 3 is TCP only: allowed
        P.udp("1.2.3.4", "172.20.0.1", dport=1500),   # rule 4, default action deny
        P.udp("1.2.3.4", "172.20.0.1", dport=2001),   # no match: allow
        P.eth(P.ipv4("1.2.3.4", "172.20.0.1", proto=1, l4=b"\x08" + b"\0" * 27)),  # icmp ports 0: allow
    ]
    assert verdicts(tmp_path, lines, frames) == [0, "acl", "acl", 0, "acl", 0, "acl", 0, 0]


def test_slash0_and_empty_rule_set(tmp_path):
    assert verdicts(tmp_path, ["# nothing"], [P.udp()]) == [0]
    deny_all = ["@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00"]
    assert verdicts(tmp_path, deny_all, [P.udp(), P.tcp()]) == ["acl", "acl"]


def test_host_bits_and_proto_mask(tmp_path):
    lines = ["@10.1.2.3/8 0.0.0.0/0 0 : 65535 0 : 65535 0x10/0xf0 deny"]   # proto 16..31, net 10/8
    fr = [P.udp("10.9.9.9", "1.1.1.1"), P.tcp("10.9.9.9", "1.1.1.1"), P.udp("11.0.0.1", "1.1.1.1")]
    assert verdicts(tmp_path, lines, fr) == ["acl", 0, 0]


def test_classbench_flags_field_is_ignored(tmp_path):
    lines = ["@1.0.0.0/8\t2.0.0.0/8\t0 : 65535\t53 : 53\t0x11/0xFF\t0x0000/0x0200"]
    assert verdicts(tmp_path, lines, [P.udp("1.1.1.1", "2.2.2.2", dport=53)]) == ["acl"]


@pytest.mark.parametrize("line,msg", [
    ("10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff", "must start with '@'"),
    ("@10.0.0.0/33 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff", "prefix length"),
    ("@10.0.0.256/8 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff", "bad source prefix"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 70000 0 : 65535 0x06/0xff", "out of range"),
    ("@10.0.0.0/8 0.0.0.0/0 9 : 1 0 : 65535 0x06/0xff", "low above high"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 6", "bad protocol"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff maybe", "allow or deny"),
    ("@10.0.0.0/8 0.0.0.0/0 0 65535 0 : 65535 0x06/0xff", "want"),
])
def test_bad_rule_lines_name_file_and_line(tmp_path, line, msg):
    path = rules_file(tmp_path, ["# ok", "@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow", line])
    with pytest.raises(ConfigError) as e:
        classify.parse_rules(path)
    assert str(e.value).startswith(f"{path}:3: ") and msg in str(e.value)


def random_rules(rng, n):
    out = []
    for _ in range(n):
        def pfx():
            ln = rng.choice([0, 8, 16, 24, 28, 32])
            return f"{rng.choice([10, 172, 192])}.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(256)}/{ln}"
        def rng_():
            lo = rng.choice([0, 0, 53, 80, 1024, rng.randrange(65536)])
            return lo, rng.choice([lo, 65535, min(65535, lo + rng.randrange(3000))])
        (a, b), (c, d) = rng_(), rng_()
        proto = rng.choice(["0x06/0xff", "0x11/0xff", "0x00/0x00", "0x10/0xf0"])
        out.append(f"@{pfx()} {pfx()} {a} : {b} {c} : {d} {proto} {rng.choice(['allow', 'deny'])}")
    return out


@pytest.mark.parametrize("nrules", [5, 70, 300])
def test_random_rules_match_linear_scan(tmp_path, nrules):
    rng = random.Random(nrules)
    lines = random_rules(rng, nrules)
    rules = [classify.parse_rule(t) for t in lines]
    frames = []
    for _ in range(400):
        src = f"{rng.choice([10, 172, 192])}.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(256)}"
        dst = f"{rng.choice([10, 172, 192])}.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(256)}"
        sp = rng.choice([0, 53, 80, 1024, 65535, rng.randrange(65536)])
        dp = rng.choice([0, 53, 80, 1024, 65535, rng.randrange(65536)])
        frames.append(rng.choice([P.udp, P.tcp])(src, dst, sport=sp, dport=dp))
    got = verdicts(tmp_path, lines, frames)
    want = [0 if R.acl(rules, R.parse(f)[1]) else "acl" for f in frames]
    assert got == want


def test_default_rules_deny_one_flow_in_sixteen():
    from pynf.flows import make_flows
    from pynf.traffic import frame_bytes
    fs = make_flows(160, 1)
    frames = [frame_bytes(fs, 64, i) for i in range(160)]
    got = Chain(["acl"]).run(frames)[0]
    assert [i for i, v in enumerate(got) if v == "acl"] == [i for i in range(160) if i % 16 == 7]
