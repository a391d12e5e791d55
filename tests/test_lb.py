"""lb: flow affinity, capacity, rewrites with valid checksums, against the reference."""
import random

import packets as P
import reference as R
from pynf.context import RunContext
from pynf.testing import Chain

BACKENDS = [(P.ip("192.168.0.1"), 8080), (P.ip("192.168.0.2"), 8081), (P.ip("192.168.0.3"), 9000)]


def lb_chain(tmp_path, capacity=None, extra=None):
    p = tmp_path / "backends.txt"
    p.write_text("# backends\n192.168.0.1:8080\n192.168.0.2:8081\n\n192.168.0.3:9000\n")
    settings = {"lb": {}}
    if capacity is not None:
        settings["lb"]["capacity"] = str(capacity)
    settings["lb"].update(extra or {})
    return Chain(["lb"], RunContext(backends=str(p), settings=settings))


def flows(rng, n):
    return [(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}", "1.2.3.4",
             rng.randrange(1, 65536), rng.choice([80, 443]), rng.choice([P.udp, P.tcp])) for _ in range(n)]


def frame(fl, **kw):
    src, dst, sp, dp, mk = fl
    return mk(src, dst, sport=sp, dport=dp, **kw)


def test_matches_reference_and_checksums(tmp_path):
    rng = random.Random(5)
    fls = flows(rng, 50)
    frames = [frame(rng.choice(fls)) for _ in range(500)]
    frames.append(P.udp(udp_csum=False))                     # UDP checksum 0 stays 0
    frames.append(P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=1, l4=b"\x08" + b"\0" * 27)))  # ICMP: passes
    frames.append(P.eth(P.ipv4("1.1.1.1", "2.2.2.2", mf=True, df=False)))   # fragment: passes
    ch = lb_chain(tmp_path)
    got_v, got_f = ch.run(frames)
    ref = R.ChainRef(["lb"], backends=BACKENDS)
    for f, v, o in zip(frames, got_v, got_f):
        rv, ro = ref(f)
        assert (v, o) == (rv, ro)
        assert P.checksums_ok(o)
    assert got_f[-3][40:42] == b"\0\0"          # UDP checksum field still 0
    assert got_f[-2] == frames[-2] and got_f[-1] == frames[-1]


def test_same_flow_same_backend_across_bursts(tmp_path):
    rng = random.Random(9)
    fls = flows(rng, 40)
    ch = lb_chain(tmp_path)
    seen = {}
    for _ in range(10):
        batch = [frame(rng.choice(fls)) for _ in range(32)]
        _, outs = ch.run(batch)
        for f, o in zip(batch, outs):
            key = f[26:38]
            seen.setdefault(key, set()).add(o[30:34] + o[36:38])
    assert all(len(v) == 1 for v in seen.values())


def test_nearly_full_then_full_table(tmp_path):
    rng = random.Random(11)
    fls = flows(rng, 60)
    ch = lb_chain(tmp_path, capacity=50)
    first, _ = ch.run([frame(f) for f in fls[:49]])          # nearly full: all admitted
    assert all(v == 0 for v in first)
    _, before = ch.run([frame(f) for f in fls[:49]])
    v, _ = ch.run([frame(f) for f in fls[49:]])               # 1 fits, 10 do not
    assert v[0] == 0 and v[1:] == ["lb_full"] * 10
    v, after = ch.run([frame(f) for f in fls[:50]])           # old flows still work, same backends
    assert v == [0] * 50 and after[:49] == before
    assert ch.drop_counts() == {"lb_full": 10}


def test_on_full_hash_and_non_l4_drop(tmp_path):
    rng = random.Random(2)
    fls = flows(rng, 5)
    ch = lb_chain(tmp_path, capacity=2, extra={"on_full": "hash", "non_l4": "drop"})
    v, outs = ch.run([frame(f) for f in fls] + [P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=47, l4=b"\0" * 8))])
    assert v == [0] * 5 + ["lb_non_l4"]
    ref = R.ChainRef(["lb"], backends=BACKENDS, lb_capacity=2, on_full="hash", non_l4="drop")
    assert outs[:5] == [ref(frame(f))[1] for f in fls]
