"""Benchmark harness: a compiled stage over in-memory bursts, timed with the TSC.

measure(nfs, flows, ...) runs the same generated stage that `pynf run`
runs, on bursts of built-in traffic (64-byte frames by default) written
into a rotation of buffers the way the in-memory NIC writes them, and times
only the stage call (parse, NFs, write-back) with the TSC. The refill of
the buffers is outside the timed region; one warm-up pass fills the flow
tables first so that steady state is measured.
"""
import numpy as np
from numba import njit

from pynf.compiler.intrinsics import copy, rdtsc
from pynf.compiler.stage import compile_stage
from pynf.flowcache import table as flowcache
from pynf.io import feed
from pynf.io.mem.pool import SLOT
from pynf.nf import load
from pynf.nf.context import RunContext
from pynf.packet.batch import make_batch, make_live
from pynf.packet.clock import tsc_hz
from pynf.packet.drops import MAX_REASONS
from pynf.slots import NF_COLS, NF_CYCLES, NF_TIMED

RING = 8            # bursts of buffers in rotation: a mempool cache reuses buffers LIFO


@njit(nogil=True, _nrt=False)
def _run(stage, states, mem, arena, t_off, t_copy, seq, b, live, drops, nfstat, fc, nbursts, burst):
    pos = 0
    tot = 0
    nseq = len(seq)
    for r in range(nbursts):
        base = (r % RING) * burst
        for i in range(burst):
            t = seq[pos]
            pos += 1
            if pos == nseq:
                pos = 0
            o = (base + i) * SLOT + 128
            copy(mem, o, arena, t_off[t], t_copy[t])
            b.off[i] = o
            b.len[i] = 60
        t0 = rdtsc()
        stage(b, live, burst, 1, drops, nfstat, fc, *states)   # flags: F_FIRST
        tot += rdtsc() - t0
    return tot


def measure(nfs, flows, frame_size=64, nbursts=20_000, burst=32, seed=1, repeats=7, settings=None,
            flow_cache=0, **context):
    """Median and minimum over `repeats` runs (this machine is shared and
    noisy: the minimum is the least disturbed run, the median the typical).
    flow_cache: entries (0, the default: off, so that the NFs themselves
    are measured). context: more RunContext fields (acl_rules=PATH, ...)."""
    specs = [load(n) for n in nfs]
    ctx = RunContext(flows=flows, seed=seed, settings=settings or {}, **context)
    configs = [s.make_config(ctx) for s in specs]
    states = tuple(s.make_state(c) for s, c in zip(specs, configs))
    mod = compile_stage(specs, writes=[s.written(c) for s, c in zip(specs, configs)],
                        cached=[flow_cache > 0 and s.cacheable(c) for s, c in zip(specs, configs)])
    fc = flowcache.make(flow_cache if mod.FC_VW else 0, mod.FC_VW)
    f = feed.builtin(flows, frame_size, seed, 1)
    mem = np.zeros(RING * burst * SLOT, dtype=np.uint8)
    b = make_batch(mem)
    live = make_live()
    drops = np.zeros(MAX_REASONS, dtype=np.int64)
    nfstat = np.zeros((len(specs) + 1, NF_COLS), dtype=np.int64)
    seq = f.seqs[0]
    args = (mod.stage, states, mem, f.arena, f.t_off, f.t_copy, seq, b, live, drops, nfstat, fc)
    _run(*args, max(len(seq) // burst + 1, 100), burst)          # warm-up: tables filled, code compiled
    pkts = nbursts * burst
    runs = []
    for _ in range(repeats):
        nfstat[:] = 0
        cycles = _run(*args, nbursts, burst)
        per_nf = {s.name: nfstat[k, NF_CYCLES] / max(1, nfstat[k, NF_TIMED]) for k, s in enumerate(specs)}
        per_nf["parse+writeback"] = nfstat[-1, NF_CYCLES] / max(1, nfstat[-1, NF_TIMED])
        runs.append((cycles / pkts, per_nf))
    runs.sort(key=lambda r: r[0])
    med = runs[len(runs) // 2]
    hz = tsc_hz()
    return {"cycles_per_packet": med[0], "cycles_min": runs[0][0],
            "mpps": hz / med[0] / 1e6, "per_nf": med[1], "per_nf_min": runs[0][1],
            "packets": pkts * repeats}
