"""Pipeline and hybrid execution: same packets as RTC, flows stay on one
replica in order, full rings, shutdown, the corpus."""
import collections
import struct

import pytest

from pynf.io import pcap
from pynf.tables import flowtable as conntrack

from support import conserved, corpus_runs, flow_frames, run_pynf, write_pcap

pytestmark = pytest.mark.jit

IO_KINDS = ["mem", pytest.param("dpdk", marks=pytest.mark.dpdk)]


def run(args, io_kind="mem"):
    return run_pynf(args, io_kind)





def by_flow(frames):
    """Output packets grouped by (src, sport, proto), which no NF rewrites, in order."""
    out = collections.defaultdict(list)
    for f in frames:
        src = f[26:30]
        proto = f[23]
        sport = f[34:36]
        out[(src, sport, proto)].append(struct.unpack("!H", f[18:20])[0])
    return out


@pytest.mark.parametrize("io_kind", IO_KINDS)
def test_models_give_same_packets_and_flow_order(tmp_path, io_kind):
    frames = flow_frames()
    pin = tmp_path / "in.pcap"
    write_pcap(pin, frames)
    results = {}
    for name, model in [("rtc", ["--rtc", "acl,lb,l3fwd"]), ("pl", ["--pl", "acl,lb,l3fwd"]),
                        ("hybrid", ["--stages", "acl|lb,l3fwd", "--replicas", "1,2"]),
                        ("hybrid2", ["--stages", "acl,lb|l3fwd", "--replicas", "2,1"])]:
        pout = tmp_path / f"{name}.pcap"
        rc, rep, err = run([*model, "--pcap-in", str(pin), "--pcap-out", str(pout)], io_kind)
        assert rc == 0, err
        assert rep["rx"] == len(frames) and conserved(rep)
        assert rep.get("buffers_in_use", 0) == 0 and rep.get("mbufs_in_use", 0) == 0
        c = pcap.read(str(pout))
        results[name] = [c.frame(i) for i in range(len(c))]
    base = results["rtc"]
    for name, got in results.items():
        assert sorted(got) == sorted(base), name
        flows = by_flow(got)
        for key, ids in flows.items():
            assert ids == sorted(ids), (name, key)       # per-flow order kept
    assert results["pl"] == base                          # one replica per stage: same order too


@pytest.mark.parametrize("policy", ["wait", "drop"])
@pytest.mark.parametrize("io_kind", IO_KINDS)
def test_tiny_rings_conserve(policy, io_kind):
    rc, rep, err = run(["--pl", "acl,lb,l3fwd", "--ring-size", "64", "--ring-full", policy,
                        "--packets", "200000"], io_kind)
    assert rc == 0, err
    assert conserved(rep) and rep["rx"] == 200000
    assert rep.get("buffers_in_use", 0) == 0 and rep.get("mbufs_in_use", 0) == 0
    assert all(r["size"] == 64 and r["fill_max"] <= 64 for r in rep["rings"])
    if policy == "wait":
        assert "ring_full" not in rep["drops"]
    else:
        # 3 workers on this machine's 2 cores with 64-entry rings: the first
        # stage outruns the others, so the drop path is exercised
        assert rep["drops"].get("ring_full", 0) > 0
    assert set(rep["drops"]) <= {"acl", "ring_full"}


def test_replicated_stage_owns_disjoint_flows():
    from pynf.io import feed
    from pynf.io.mem.backend import MemIO
    from pynf.nf.context import RunContext
    from pynf.packet.clock import tsc_hz
    from pynf.runtime.chain import parse
    from pynf.runtime.options import Options
    from pynf.runtime.report import report
    from pynf.runtime.runtime import Runtime
    plan = parse(stages="acl|lb,l3fwd", replicas="1,2")
    opts = Options(packets=60000, cores=[0, 1])
    rt = Runtime(plan, RunContext(flows=500), opts,
                 io=MemIO(feed.builtin(500, 64, 1, 1), opts.tx_ports, budget=60000, hz=tsc_hz()))
    rt.build()
    rt.compile()
    rt.run()
    rings_after = [r.count() for _, _, _, r in rt.rings]
    rt.close()
    rep = report(rt)
    assert conserved(rep) and rep["buffers_in_use"] == 0
    assert rings_after and not any(rings_after)          # shutdown drained every ring
    keys = []
    for w in (w for w in rt.workers if w.stage == 1):
        used = conntrack.entries(w.states[0].flows, w.states[0].ctl)
        keys.append({(int(a), int(b)) for a, b in used[used[:, 1] != 0][:, :2]})
        assert w.ws[0] > 0
    assert len(keys) == 2 and keys[0] and keys[1] and not keys[0] & keys[1]


@pytest.mark.parametrize("model", [["--pl", "acl,lb,l3fwd"], ["--stages", "acl,lb|l3fwd", "--replicas", "1,2"]],
                         ids=["pl", "hybrid"])
def test_corpus_through_pipeline(corpus_files, model, tmp_path):
    bad = []
    for path, frames in corpus_runs(corpus_files, tmp_path):
        rc, rep, err = run([*model, "--pcap-in", path])
        if rc != 0 or not conserved(rep) or rep["rx"] != frames or rep["buffers_in_use"]:
            bad.append((path, rc, err[-200:], rep and (rep["rx"], rep["tx"], rep["drops"])))
    assert not bad, bad[:5]
