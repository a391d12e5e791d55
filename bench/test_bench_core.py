"""Core benchmarks (issue 2): per NF and fused chain, start-up, 2 cores vs 1.

Run:  .venv/bin/python -m pytest bench/test_bench_core.py --benchmark-only -s
Each test prints its figures and records them in the benchmark's extra_info.
The compile run is excluded: each harness call warms up first.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from bench.harness import measure

CHAINS = [["acl"], ["lb"], ["l3fwd"], ["acl", "lb", "l3fwd"]]


@pytest.mark.parametrize("flows", [1024, 100_000])
@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: "+".join(c))
def test_stage_cycles(benchmark, chain, flows):
    res = benchmark.pedantic(measure, args=(chain, flows), kwargs={"repeats": 5}, rounds=1, iterations=1)
    benchmark.extra_info.update(cycles_per_packet=round(res["cycles_per_packet"], 1),
                                cycles_min=round(res["cycles_min"], 1), mpps=round(res["mpps"], 2),
                                per_nf={k: round(float(v), 1) for k, v in res["per_nf"].items()})
    print(f"\n{'+'.join(chain)} {flows} flows: {res['cycles_per_packet']:.1f} cycles/pkt "
          f"(min {res['cycles_min']:.1f}), {res['mpps']:.2f} Mpps, per NF "
          + ", ".join(f"{k} {float(v):.1f}" for k, v in res["per_nf"].items()))


def pynf(*args, env=None):
    cmd = [sys.executable, "-m", "pynf.cli.main", "run", *args, "--json", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_startup(benchmark):
    def both():
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PYNF_CACHE_DIR=d)
            cold = pynf("--rtc", "acl,lb,l3fwd", "--packets", "1000", env=env)["startup_s"]
            warm = pynf("--rtc", "acl,lb,l3fwd", "--packets", "1000", env=env)["startup_s"]
        return cold, warm
    cold, warm = benchmark.pedantic(both, rounds=1, iterations=1)
    benchmark.extra_info.update(cold_s=cold, warm_s=warm)
    print(f"\nstart-up to first packet: cold cache {cold:.2f} s, warm cache {warm:.2f} s")


def test_two_cores(benchmark):
    def ratio():
        one = pynf("--rtc", "acl,lb,l3fwd", "--io", "mem", "--cores", "1", "--duration", "3")
        two = pynf("--rtc", "acl,lb,l3fwd", "--io", "mem", "--cores", "2", "--duration", "3")
        return one["mpps"], two["mpps"]
    one, two = benchmark.pedantic(ratio, rounds=1, iterations=1)
    benchmark.extra_info.update(mpps_1=one, mpps_2=two, ratio=round(two / one, 2))
    print(f"\n--cores 1: {one:.2f} Mpps, --cores 2: {two:.2f} Mpps, ratio {two / one:.2f}")
