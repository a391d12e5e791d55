"""lb's flow table growing under new flows: the cost of a burst of 32 new
flows while the table grows (pynf.tables.flowtable: linear-hashing splits)
against the same burst on a table made big enough at start, and the memory
the grown table touched. Every burst is timed with the TSC; the longest
burst is the pause a resize can cause.

    .venv/bin/python -m bench.table_growth [--flows 1000000] [--rounds 3] [--rate 2e6]
"""
import argparse

import numpy as np

from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import hot
from pynf.nfs.lb.config import MAX_ENTRIES
from pynf.nfs.lb.fastpath import claim
from pynf.packet.clock import tsc_hz
from pynf.tables import flowtable as ct
from pynf.tables.hashing import hash5, key5

BURST = 32


@hot
def _fill(tab, info, cnt, n, seed, cycles, gap):
    """n new flows in bursts of BURST, a burst every `gap` TSC cycles at
    most; cycles[k]: burst k's TSC cycles."""
    t = rdtsc()
    for k in range(n // BURST):
        while rdtsc() - t < gap:
            pass
        t0 = rdtsc()
        t = t0
        for j in range(BURST):
            i = k * BURST + j
            src = (i * 2654435761 + seed) & 0xFFFFFFFF
            k0, k1 = key5(src, 0x0A000001, i & 0xFFFF, 80, 6)
            h = hash5(src, 0x0A000001, i & 0xFFFF, 80, 6)
            e, _ = claim(tab, info, h, k0, k1, 1, cnt, True)
            tab[e + 2] = i
            tab[e + 3] = 1 << ct.STATE_BITS
        cycles[k] = rdtsc() - t0


def _run(flows, start, seed, gap=0):
    tab, info = ct.make(start, 0, MAX_ENTRIES)
    info[ct.I_TMO:ct.I_TMO + 4] = 1 << 50
    cnt = np.zeros(2, dtype=np.int64)
    cycles = np.zeros(flows // BURST, dtype=np.int64)
    _fill(tab, info, cnt, flows, seed, cycles, gap)
    return cycles, ct.geometry(info), int(cnt[ct.C_EVICTED])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=2e6, help="new flows a second at most (0: as fast as it goes)")
    a = ap.parse_args(argv)
    _run(BURST * 64, 65536, 0)                  # compile
    us = 1e6 / tsc_hz()
    gap = int(BURST / a.rate * tsc_hz()) if a.rate else 0
    print(f"{a.flows:,} new flows, at most {a.rate:,.0f} a second, in bursts of {BURST}")
    print()
    print("| table | round | burst p50 us | p99 us | p99.99 us | longest burst us | total ms | entries "
          "(resizes) | MiB touched | evicted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in range(a.rounds):
        for label, start in (("grows from 65,536", 65536), ("made for all at start", 4 * a.flows)):
            cycles, geo, ev = _run(a.flows, start, r + 1, gap)
            q = np.percentile(cycles, [50, 99, 99.99])
            print(f"| {label} | {r + 1} | {q[0] * us:.2f} | {q[1] * us:.2f} | {q[2] * us:.1f} | "
                  f"{cycles.max() * us:.1f} | {cycles.sum() * us / 1e3:.0f} | {geo['entries']:,} "
                  f"({geo['resizes']}) | {geo['entries'] * ct.WORDS * 8 / 2**20:.0f} | {ev} |")


if __name__ == "__main__":
    main()
