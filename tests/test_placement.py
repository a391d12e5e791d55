"""The planner (pynf.measure.placement): its model on made-up profiles, where the
best placement is known, and `pynf plan` / `run --auto` end to end."""
import io
import json

import pytest

from pynf.cli import main as cli
from pynf.measure.placement import Profile, groupings, predict, rank


def prof(fused, alone=None, io_=20.0, hop=20.0):
    names = list(fused)
    return Profile(names, dict(fused), io_, hop, 1e9, alone=dict(alone) if alone else None)


def test_every_grouping_and_replica_count():
    assert len(list(groupings(["a", "b", "c", "d"]))) == 8
    p = prof({"a": 10, "b": 10, "c": 10})
    ranked = rank(p, 4)
    assert all(x.cores <= 4 for x in ranked)
    # groupings of 3 NFs into k stages, replicas summing to <= 4: k=1: 4, k=2: 2*6, k=3: 1*4
    assert len(ranked) == 4 + 12 + 4


def test_rtc_wins_when_nothing_is_gained_by_splitting():
    p = prof({"a": 100, "b": 10, "c": 10})
    best = rank(p, 4)[0]
    assert best.args() == ["--rtc", "a,b,c", "--cores", "4"]
    assert best.predicted_mpps == pytest.approx(4 * 1e9 / (20 + 120) / 1e6, rel=1e-3)


def test_pipeline_wins_when_fused_state_thrashes():
    # fused, each NF costs 3x what it costs alone (its state fights the other's for the cache)
    p = prof({"a": 150, "b": 150}, alone={"a": 50, "b": 50})
    best = rank(p, 2)[0]
    assert best.args() == ["--pl", "a,b"]
    assert best.predicted_mpps == pytest.approx(1e9 / 70 / 1e6, rel=1e-3)


def test_replicas_go_to_the_bottleneck():
    p = prof({"a": 300, "b": 300, "c": 5}, alone={"a": 100, "b": 100, "c": 5}, hop=10)
    best = rank(p, 5)[0]
    assert best.stages == [["a"], ["b"], ["c"]] and best.replicas == [2, 2, 1]
    mpps, rates = predict(p, best.stages, best.replicas)
    assert mpps == min(rates)


def test_fewer_cores_first_among_equals():
    p = prof({"a": 10}, io_=10)
    ranked = rank(p, 3)
    assert [x.cores for x in ranked] == [3, 2, 1]     # more replicas, more Mpps
    p2 = prof({"a": 1000, "b": 1}, alone={"a": 1000, "b": 1}, io_=1, hop=1)
    best = rank(p2, 3)[0]
    assert best.predicted_mpps == max(x.predicted_mpps for x in rank(p2, 3))


@pytest.mark.jit
@pytest.mark.slow
def test_plan_json_and_verify():
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["plan", "acl,lb,l3fwd", "--cores", "2", "--io", "mem", "--duration", "0.5",
                   "--verify", "--json", "--top", "3"], out, err)
    assert rc == 0, err.getvalue()
    res = json.loads(out.getvalue())
    ps = res["placements"]
    assert len(ps) == 3 and ps[0]["predicted_mpps"] >= ps[-1]["predicted_mpps"]
    assert all(p["cores"] <= 2 for p in ps) and ps[0]["args"][0] in ("--rtc", "--pl", "--stages")
    v = res["verify"]
    assert len(v["rows"]) == 3 and all(r["measured_mpps"] > 0 for r in v["rows"])
    assert v["mean_abs_error"] is not None


@pytest.mark.jit
@pytest.mark.slow
def test_run_auto_says_what_it_chose():
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["run", "--auto", "acl,lb,l3fwd", "--cores", "2", "--io", "mem", "--duration", "0.5",
                   "--json", "--quiet", "--control", "off"], out, err)
    assert rc == 0, err.getvalue()
    rep = json.loads(out.getvalue())
    assert rep["rx"] == rep["tx"] + sum(rep["drops"].values())
    chose = [ln for ln in err.getvalue().splitlines() if "--auto chose" in ln]
    assert len(chose) == 1 and "predicted" in chose[0] and "bottleneck" in chose[0]


def test_plan_needs_cores():
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["plan", "acl"], out, err) == 2
    assert cli.main(["run", "--auto", "acl", "--rtc", "acl"], out, err) == 2


def test_replicas_hold_fewer_flows():
    # at 1M flows the NF costs 200 cycles, at 250K (what 4 replicas each hold) 100
    p = prof({"a": 200.0}, io_=0.0)
    p.flows, p.fewer = 1_000_000, (250_000, {"a": 100.0})
    assert predict(p, [["a"]], [1])[0] == pytest.approx(1e9 / 200 / 1e6)
    assert predict(p, [["a"]], [4])[0] == pytest.approx(4 * 1e9 / 100 / 1e6)
    two = predict(p, [["a"]], [2])[0]              # 500K each: half way on the log scale
    assert two == pytest.approx(2 * 1e9 / 150 / 1e6)
