"""LPM route table (pynf.tables.lpm): build time, lookup cycles, add/delete cost.

    .venv/bin/python -m bench.lpm [--routes 1000,1000000] [--lookups 1000000] [--repeats 5]

Routes have random prefixes and a length mix like a large routing table's:
60% /24, 33% /16../23, 5% /25../32, 2% /8../15. Destinations are random
addresses inside routes drawn uniformly (every lookup hits), or uniformly
random addresses (most miss with many routes, none with few). Lookups are
timed with the TSC inside a compiled loop, two ways: one after another (the
CPU overlaps independent misses as far as its window allows), and as an NF
does it, in bursts of 32: prefetch the burst's tbl24 entries, then look up.
Build is wall time for make_lpm + build; add and delete are per route on
the built table (numpy on the control path). Medians of --repeats runs.
"""
import argparse
import statistics
import time

import numpy as np
from numba import njit

from pynf.compiler.intrinsics import rdtsc
from pynf.packet.clock import tsc_hz
from pynf.tables import lpm

BURST = 32


@njit(nogil=True, _nrt=False)
def _one_by_one(t, ips):
    acc = 0
    t0 = rdtsc()
    for i in range(len(ips)):
        acc += lpm.lookup(t, ips[i])
    return rdtsc() - t0, acc


@njit(nogil=True, _nrt=False)
def _bursts(t, ips):
    acc = 0
    t0 = rdtsc()
    for b in range(0, len(ips) - BURST + 1, BURST):
        for i in range(b, b + BURST):
            lpm.prefetch(t, ips[i])
        for i in range(b, b + BURST):
            acc += lpm.lookup(t, ips[i])
    return rdtsc() - t0, acc


def make_routes(n, rng):
    kind = rng.choice(4, size=n, p=[0.60, 0.33, 0.05, 0.02])
    lengths = np.choose(kind, [np.full(n, 24), rng.integers(16, 24, n), rng.integers(25, 33, n),
                               rng.integers(8, 16, n)])
    return rng.integers(0, 1 << 32, n), lengths, np.arange(n) & lpm.ID_MASK


def destinations(p, lengths, count, rng):
    pick = rng.integers(0, len(p), count)
    host = rng.integers(0, 1 << 32, count) & ((1 << (32 - lengths[pick])) - 1)
    inside = ((p[pick] & ~((1 << (32 - lengths[pick])) - 1)) | host).astype(np.uint32)
    return {"inside routes": inside, "random": rng.integers(0, 1 << 32, count).astype(np.uint32)}


def cycles(fn, t, ips, repeats):
    fn(t, ips)                                         # compile, warm caches
    return statistics.median(fn(t, ips)[0] / len(ips) for _ in range(repeats))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", default="1000,1000000")
    ap.add_argument("--lookups", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    hz = tsc_hz()
    w = lpm.build(lpm.make_lpm(), *make_routes(100, rng))    # compile (or load) the kernels
    lpm.add(w, 1 << 24, 30, 1)
    lpm.delete(w, 1 << 24, 30)
    del w

    print(f"## pynf.tables.lpm, TSC {hz / 1e9:.2f} GHz\n")
    print("| routes | build s | tbl8 groups | MiB | add us | delete us | destinations | via tbl8 | hit "
          "| cycles/lookup one by one | cycles/lookup burst 32 + prefetch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in a.routes.split(",")):
        p, lengths, ids = make_routes(n, rng)
        builds = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            t = lpm.build(lpm.make_lpm(), p, lengths, ids)
            builds.append(time.perf_counter() - t0)
        # add then delete 1000 new routes of the same mix (host routes among them)
        q, ql, _ = make_routes(1000, rng)
        t0 = time.perf_counter()
        added = [(int(x), int(y)) for x, y in zip(q, ql) if lpm.add(t, int(x), int(y), 1)]
        t_add = (time.perf_counter() - t0) / len(q)
        t0 = time.perf_counter()
        for x, y in added:
            lpm.delete(t, x, y)
        t_del = (time.perf_counter() - t0) / max(1, len(added))
        head = (f"| {n:,} | {statistics.median(builds):.3f} | {lpm.tbl8_used(t):,} | "
                f"{lpm.lpm_bytes(t) / 2**20:.0f} | {t_add * 1e6:.0f} | {t_del * 1e6:.0f}")
        for name, ips in destinations(p, lengths, a.lookups, rng).items():
            out = np.empty(len(ips), dtype=np.int64)
            lpm.lookup_many(t, ips, out)
            ext = (t.tbl24[ips >> 8] & lpm.EXT) != 0
            print(f"{head} | {name} | {ext.mean():.1%} | {(out >= 0).mean():.1%} "
                  f"| {cycles(_one_by_one, t, ips, a.repeats):.1f} | {cycles(_bursts, t, ips, a.repeats):.1f} |")
            head = "| | | | | |"


if __name__ == "__main__":
    main()
