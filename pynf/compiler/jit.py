"""Compile flags and fixed sizes: the one place they are set.

Kernels reach configuration as arguments or arrays, never as module globals
(Numba's cache freezes globals at compile time); what is here is truly fixed.
"""
import hashlib
import os

import numba
from numba import config as _numba_config
from numba import njit

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


_CACHE_DIR = None


def cache_dir():
    """Where generated stage modules live (Numba caches beside them):
    $PYNF_CACHE_DIR, else $XDG_CACHE_HOME/pynf or ~/.cache/pynf. One that
    cannot be made or written gets one line on stderr, and a temporary
    directory serves this process (compiled code is then not kept)."""
    global _CACHE_DIR
    if _CACHE_DIR is not None:
        return _CACHE_DIR
    d = os.environ.get("PYNF_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "pynf")
    try:
        os.makedirs(d, exist_ok=True)
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        import atexit
        import shutil
        import sys
        import tempfile
        tmp = tempfile.mkdtemp(prefix="pynf-cache-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        sys.stderr.write(f"pynf: warning: cache directory {d}: {e.strerror or e}; "
                         f"compiling into {tmp} for this run (set PYNF_CACHE_DIR)\n")
        d = tmp
    _CACHE_DIR = d
    return d


_KERNEL_MARKS = (b"@hot", b"@intrinsic", b"ExternalFunction", b"@nf(")
_ALWAYS = ("jit.py", "drops.py", "batch.py")


def _source_digest():
    """Hash of the sources compiled code depends on, and of Numba's version:
    every module of pynf/ (the NF library included) that defines kernels, intrinsics or shim
    calls, and the constants they read. (Cold-code modules such as the CLI
    are left out, so editing them does not throw the cache away.)"""
    h = hashlib.sha256(numba.__version__.encode())
    # Numba settings that change the generated code (NUMBA_BOUNDSCHECK=1 must
    # not load code compiled without bounds checks)
    for flag in ("BOUNDSCHECK", "OPT", "DEBUGINFO_DEFAULT", "FASTMATH"):
        h.update(f"{flag}={getattr(_numba_config, flag, None)}".encode())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for pkg in ("pynf",):
        d = os.path.join(root, pkg)
        for dp, dns, fs in os.walk(d):
            dns.sort()
            for f in sorted(fs):
                if not f.endswith((".py", ".h", ".c")):
                    continue
                with open(os.path.join(dp, f), "rb") as fh:
                    text = fh.read()
                if f in _ALWAYS or f.endswith((".h", ".c")) or any(m in text for m in _KERNEL_MARKS):
                    h.update(f.encode() + text)
    return h.hexdigest()[:16]


SOURCE_DIGEST = _source_digest()

# NB: Numba keys a cached function on its own file only, so a kernel that
# inlines an edited helper (pynf.packet.parse, pynf.tables.hashtable, ...) would load stale
# code. Caching under a digest of all of pynf's sources makes any edit a
# fresh cache. An explicit NUMBA_CACHE_DIR is left alone.
if not os.environ.get("NUMBA_CACHE_DIR"):
    _numba_config.CACHE_DIR = os.path.join(cache_dir(), "numba", SOURCE_DIGEST)
