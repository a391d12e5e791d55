"""acl: rule parsing, edge cases, and the compiled classifier vs a linear scan."""
import random

import pytest

from pynf.errors import ConfigError
from pynf.nf.context import RunContext
from pynf.tables import classifier as classify
from pynf.tables import rules as aclrules
from pynf.testing import Chain

import packets as P
import reference as R


def rules_file(tmp_path, lines):
    p = tmp_path / "rules.txt"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def verdicts(tmp_path, lines, frames):
    ctx = RunContext(files={"acl_rules": rules_file(tmp_path, lines)})
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
        aclrules.parse_rules(path)
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


@pytest.mark.parametrize("nrules", [5, 70, 300, classify.BITVECTOR_MAX + 500])
def test_random_rules_match_linear_scan(tmp_path, nrules):
    rng = random.Random(nrules)
    lines = random_rules(rng, nrules)
    rules = [aclrules.parse_rule(t) for t in lines]
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
    from pynf.traffic.flows import make_flows
    from pynf.traffic.templates import frame_bytes
    fs = make_flows(160, 1)
    frames = [frame_bytes(fs, 64, i) for i in range(160)]
    got = Chain(["acl"]).run(frames)[0]
    assert [i for i, v in enumerate(got) if v == "acl"] == [i for i in range(160) if i % 16 == 7]


def _index_linear(rules, t):
    return next((k for k, r in enumerate(rules) if r.matches(*t)), len(rules))


def _tuples(rng, n):
    out = []
    for _ in range(n):
        ip = lambda: (rng.choice([10, 172, 192]) << 24 | rng.randrange(4) << 16
                      | rng.randrange(4) << 8 | rng.randrange(256))
        out.append((ip(), ip(), rng.choice([0, 53, 80, 1024, 65535, rng.randrange(65536)]),
                    rng.choice([0, 53, 80, 1024, 65535, rng.randrange(65536)]),
                    rng.choice([6, 17, 1, 16, 0])))
    return out


@pytest.mark.parametrize("nrules,kind", [(n, k) for n in (1, 63, 64, 65, 300, 1500)
                                          for k in (classify.KIND_BITVECTOR, classify.KIND_CHUNKED)]
                         + [(5000, classify.KIND_CHUNKED)])
def test_both_classifiers_match_linear_scan(nrules, kind):
    """Either algorithm on the same rules: the first match of a linear scan.
    Chunk and word edges (63, 64, 65 rules; 1,500 rules are 24 chunks in
    four groups; 5,000 rules need two summary words, so whole words are
    skipped) and rules that no packet meets are covered."""
    rng = random.Random(nrules * 7 + kind)
    rules = [aclrules.parse_rule(t) for t in random_rules(rng, nrules)]
    c = classify.build(aclrules.RuleSet.of(rules), kind)
    assert c.hdr[classify.H_KIND] == kind
    for t in _tuples(rng, 300):
        assert classify.first_match(c, *t) == _index_linear(rules, t), t


def test_rule_count_chooses_the_algorithm(tmp_path):
    rs = aclrules.RuleSet.of([aclrules.parse_rule("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00")])
    assert classify.build(rs).hdr[classify.H_KIND] == classify.KIND_BITVECTOR
    n = classify.BITVECTOR_MAX + 1
    path = rules_file(tmp_path, [f"@10.{k >> 8 & 255}.{k & 255}.0/24 0.0.0.0/0 0 : 65535 "
                                 f"{k % 1000} : {k % 1000 + 9} 0x06/0xff" for k in range(n)])
    many = aclrules.parse_rules(path)
    assert len(many) == n and classify.build(many).hdr[classify.H_KIND] == classify.KIND_CHUNKED


def test_bulk_reader_agrees_with_line_by_line(tmp_path):
    """parse_rules reads the common spelling in bulk and hands every other
    line to parse_rule: the rules are the same either way."""
    lines = [
        "# comment line", "",
        "@10.0.0.0/8 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xff allow",
        "  @1.2.3.4/32\t5.6.7.8/32 1:2 3:4 0x11/0xFF deny   # trailing comment",
        "@1.2.3.4/32 5.6.7.8/32 0x10 : 0x20 3 : 4 0x11/0xff ALLOW",       # hex ports: line by line
        "@ 1.2.3.4/32 5.6.7.8/32 1 : 2 3 : 4 0x11/0xff",                   # blank after '@'
        "@1.0.0.0/8\t2.0.0.0/8\t0 : 65535\t53 : 53\t0x11/0xFF\t0x0000/0x0200",
        "@1.0.0.0/8 2.0.0.0/8 0 : 65535 53 : 53 0x11/0xFF 0x0000/0x0200 Allow",
        "@001.2.3.4/032 5.6.7.8/8 000080 : 81 0 : 0 17/255",               # leading zeros, decimal proto
        "@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x0/0x0",
    ]
    path = rules_file(tmp_path, lines)
    bulk = aclrules.parse_rules(path)
    one = [aclrules.parse_rule(t.split("#")[0], path, no) for no, t in enumerate(lines, 1)
           if t.split("#")[0].strip()]
    assert list(bulk) == one
    assert [r.line for r in bulk] == [3, 4, 5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("line,msg", [
    ("@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff allow extra", "unexpected"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x106/0xff", "out of range"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff 0x0/0x0allow", "unexpected"),
    ("@10.0.0.0/8 0.0.0.0/0 0 : 6553\u00b2 0 : 65535 0x06/0xff", "bad source port"),
])
def test_bad_lines_after_many_good_ones(tmp_path, line, msg):
    good = [f"@10.{k >> 8}.{k & 255}.0/24 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff" for k in range(3000)]
    path = rules_file(tmp_path, good + [line] + good[:5])
    with pytest.raises(ConfigError) as e:
        aclrules.parse_rules(path)
    assert str(e.value).startswith(f"{path}:3001: ") and msg in str(e.value), str(e.value)
