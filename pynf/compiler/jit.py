"""Compile flags: the one place they are set.

Kernels reach configuration as arguments or arrays, never as module globals
(Numba's cache freezes globals at compile time); what is here is truly fixed.
"""
from numba import config as _numba_config
from numba import njit

from pynf.compiler import cache

# True under NUMBA_DISABLE_JIT=1: kernels run as plain Python.
NO_JIT = bool(_numba_config.DISABLE_JIT)

# Hot kernels: no GIL, cached on disk, no bounds checks.
HOT = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy", _nrt=False)



def hot(fn=None, **extra):
    """Decorator for fast-path kernels: @njit with pynf's flags."""
    opts = dict(HOT, **extra)
    if fn is None:
        return lambda f: njit(**opts)(f)
    return njit(**opts)(fn)


# Compiled code is cached on disk, stale exactly when a source it depends on
# changes (pynf.compiler.cache).
cache.install()
