"""lb figures: stage cycles per packet, Maglev build time, disruption.

    .venv/bin/python -m bench.lb [--flows 1024] [--rounds 60] [--before FILE.py:NAME]

--before names another lb to measure in the same process (e.g. the
previous pynf/nfs/lb.py saved to a file with its NF renamed: `git show
REV:pynf/nfs/lb.py | sed 's/@nf("lb",/@nf("lb_before",/; s/^def lb(/def lb_before(/'`).
The two run alternately in short runs (2000 bursts of 32 x 64-byte frames
of built-in traffic each, as bench/harness.py writes and times them: the
whole stage, parse + lb + write-back) and the figure is the median of the
per-round ratios: this machine's speed drifts by 10-20 % over seconds, and
a ratio of neighbouring runs cancels most of that. Pin it to one core
(taskset -c 1) for steadier figures.
"""
import argparse
import json
import time

import numpy as np

from bench.harness import RING, SLOT, _run
from pynf.compiler.stage import compile_stage
from pynf.flowcache import table as flowcache
from pynf.io import feed
from pynf.nf import load
from pynf.nf.context import RunContext
from pynf.packet.batch import make_batch, make_live
from pynf.packet.drops import MAX_REASONS
from pynf.slots import NF_COLS
from pynf.tables import maglev

BURST = 32


def setup(token, flows):
    """A compiled stage of one NF over built-in traffic, warmed up."""
    specs = [load(token)]
    ctx = RunContext(flows=flows, seed=1)
    states = tuple(s.make_state(s.make_config(ctx)) for s in specs)
    mod = compile_stage(specs)
    f = feed.builtin(flows, 64, 1, 1)
    mem = np.zeros(RING * BURST * SLOT, dtype=np.uint8)
    nfstat = np.zeros((2, NF_COLS), dtype=np.int64)
    args = (mod.stage, states, mem, f.arena, f.t_off, f.t_copy, f.seqs[0], make_batch(mem), make_live(),
            np.zeros(MAX_REASONS, dtype=np.int64), nfstat, flowcache.make(0, 1))
    _run(*args, max(len(f.seqs[0]) // BURST + 1, 100), BURST)      # tables filled
    return args, nfstat


def cycles(tokens, flows, rounds, nbursts=2000):
    """Per token: rows of (stage, NF, parse + write-back) cycles per packet, one a round."""
    runs = {k: setup(t, flows) for k, t in tokens.items()}
    out = {k: [] for k in tokens}
    for _ in range(rounds):
        for k, (args, nfstat) in runs.items():
            nfstat[:] = 0
            c = _run(*args, nbursts, BURST) / (nbursts * BURST)
            out[k].append((c, nfstat[0, 3] / max(1, nfstat[0, 4]), nfstat[1, 3] / max(1, nfstat[1, 4])))
    return {k: np.array(v) for k, v in out.items()}


def build_ms(n, m=maglev.DEFAULT_M, repeats=5):
    bes = [(0x0A000000 + k + 1, 8080) for k in range(n)]
    maglev.build(bes, m)                      # compiled once
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        maglev.build(bes, m)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def disruption(n=8, m=maglev.DEFAULT_M, trials=10):
    """Mean and worst fraction of the other backends' table positions that
    move when one of n is removed (all n removals, `trials` backend sets)."""
    fr = []
    for t in range(trials):
        bes = [(0x0A000000 + (t << 8) + k + 1, 8080) for k in range(n)]
        full = maglev.build(bes, m)
        for r in range(n):
            rest = [k for k in range(n) if k != r]
            less = np.array(rest)[maglev.build([bes[k] for k in rest], m)]
            keep = full != r
            fr.append(float(np.mean(less[keep] != full[keep])))
    return float(np.mean(fr)), float(np.max(fr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--before", help="another lb to compare, FILE.py:NAME")
    a = ap.parse_args()
    out = {"maglev_build_ms": {n: round(build_ms(n), 2) for n in (8, 100)}}
    mean, worst = disruption()
    out["disruption_1_of_8"] = {"mean": round(mean, 5), "worst": round(worst, 5)}
    tokens = {"lb": "lb"}
    if a.before:
        tokens["before"] = a.before
    res = cycles(tokens, a.flows, a.rounds)
    for k, arr in res.items():
        out[k] = {"stage": round(float(np.median(arr[:, 0])), 1), "nf": round(float(np.median(arr[:, 1])), 1),
                  "parse+writeback": round(float(np.median(arr[:, 2])), 1),
                  "stage_p10": round(float(np.percentile(arr[:, 0], 10)), 1)}
    if a.before:
        r = res["lb"] / res["before"]
        out["ratio"] = {"stage": round(float(np.median(r[:, 0])), 3),
                        "stage_iqr": [round(float(np.percentile(r[:, 0], q)), 3) for q in (25, 75)],
                        "nf": round(float(np.median(r[:, 1])), 3),
                        "parse+writeback": round(float(np.median(r[:, 2])), 3)}
    out["flows"] = a.flows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
