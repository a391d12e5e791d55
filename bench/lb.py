"""lb figures: stage cycles per packet, Maglev build time, disruption.

    .venv/bin/python -m bench.lb [--flows 1024] [--rounds 5] [--before FILE.py:NAME]

--before names another lb (e.g. the previous nfs/lb.py saved to a file
with its NF renamed) to measure in the same process, alternating with the
current one round by round: this machine is noisy, so compare the ratio.
Cycles are the harness's (bench/harness.py): the whole stage (parse, lb,
write-back) per packet, median of each round's runs, over built-in traffic.
"""
import argparse
import json
import time

import numpy as np

from bench.harness import measure
from pynf import maglev


def stage_cycles(token, flows, repeats=5, nbursts=20_000):
    r = measure([token], flows, nbursts=nbursts, repeats=repeats)
    nf = next(k for k in r["per_nf"] if k != "parse+writeback")
    return r["cycles_per_packet"], float(r["per_nf"][nf]), float(r["per_nf"]["parse+writeback"])


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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", help="another lb to compare, FILE.py:NAME")
    a = ap.parse_args()
    out = {"maglev_build_ms": {n: round(build_ms(n), 2) for n in (8, 100)}}
    mean, worst = disruption()
    out["disruption_1_of_8"] = {"mean": round(mean, 5), "worst": round(worst, 5)}
    tokens = {"lb": "lb"}
    if a.before:
        tokens["before"] = a.before
    runs = {k: [] for k in tokens}
    for _ in range(a.rounds):
        for k, tok in tokens.items():
            runs[k].append(stage_cycles(tok, a.flows))
    for k, rs in runs.items():
        arr = np.array(rs)
        out[k] = {"stage": round(float(np.median(arr[:, 0])), 1), "nf": round(float(np.median(arr[:, 1])), 1),
                  "parse+writeback": round(float(np.median(arr[:, 2])), 1),
                  "stage_rounds": [round(x, 1) for x in arr[:, 0]]}
    if a.before:
        out["ratio_stage"] = round(out["lb"]["stage"] / out["before"]["stage"], 3)
        out["ratio_nf"] = round(out["lb"]["nf"] / out["before"]["nf"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
