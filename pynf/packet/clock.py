"""Time for NFs: `now(pkts)`, this burst's time in nanoseconds.

    from pynf.nf import SECOND, now
    t = now(pkts)                      # int64 ns, one reading per burst
    if t - st.last[k] > 2 * SECOND: ...

The clock is the host's monotonic clock (CLOCK_MONOTONIC), read on the fast
path through the TSC: a burst's first now() reads the TSC and converts
(a multiply), later calls in the same burst return the same value, and a
burst whose NFs never call now() pays one store. The worker re-anchors the
conversion to the monotonic clock between slices (every few ms), so it
never drifts, and never moves back. Under NUMBA_DISABLE_JIT the same
code runs (the "TSC" is then perf_counter's nanoseconds), and a test can
fix or advance the time (pynf.testing.Chain.set_time / advance).

The clock lives in each batch (`pkts.clock`, slots C_* below), so a
stage's NFs and their helpers need nothing else to read it.
"""
import time

import numpy as np

from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import NO_JIT, hot

SECOND = 1_000_000_000          # now() ticks per second

# pkts.clock slots
C_NOW = 0           # this burst's time (ns), or -1 before its first now()
C_FIXED = 1         # a test's fixed time (ns), or -1: the live clock
C_BASE_NS = 2       # monotonic ns at C_BASE_TSC
C_BASE_TSC = 3      # the TSC when re-anchored
C_FS_TICK = 4       # femtoseconds per TSC tick
CLOCK_SIZE = 8

_FS = 1_000_000     # femtoseconds per nanosecond

_HZ = None


def tsc_hz():
    """TSC ticks per second, measured once against the monotonic clock
    (nanoseconds' rate without the JIT, where rdtsc counts nanoseconds)."""
    global _HZ
    if _HZ is None:
        if NO_JIT:
            _HZ = 1e9
            return _HZ
        from pynf.shim import rdtsc as shim_rdtsc
        best = None
        for _ in range(3):
            c0, t0 = shim_rdtsc(), time.perf_counter()
            time.sleep(0.02)
            c1, t1 = shim_rdtsc(), time.perf_counter()
            hz = (c1 - c0) / (t1 - t0)
            best = hz if best is None else max(best, hz)
        _HZ = best
    return _HZ


def make_clock():
    c = np.full(CLOCK_SIZE, -1, dtype=np.int64)
    c[C_FS_TICK] = int(round(1e9 * _FS / tsc_hz()))
    rebase(c)
    return c


def _tsc():
    if NO_JIT:
        return int(rdtsc())
    from pynf.shim import rdtsc as shim_rdtsc
    return int(shim_rdtsc())


def rebase(c):
    """Re-anchor clock c to the monotonic clock (off the fast path: the
    worker between slices, pynf.testing per run), never moving it back."""
    tsc = _tsc()
    mono = time.monotonic_ns()
    c[C_BASE_TSC] = tsc
    c[C_BASE_NS] = max(mono, int(c[C_NOW]))     # (the last burst's reading, where it took one)


@hot(inline="always")
def now(pkts):
    """This burst's time in nanoseconds (SECOND a second): the same for
    every packet of the burst and every NF of the stage."""
    c = pkts.clock
    t = c[C_NOW]
    if t < 0:
        t = c[C_FIXED]
        if t < 0:
            t = c[C_BASE_NS] + (np.int64(rdtsc()) - c[C_BASE_TSC]) * c[C_FS_TICK] // _FS
        c[C_NOW] = t
    return t
