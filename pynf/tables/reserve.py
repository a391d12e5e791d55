"""Memory for tables that grow (pynf.tables.flowtable): address space
reserved for the cap at start, and faulted in ahead of the fast path.

A table that grows touches new memory as it splits its buckets. The first
touch of an anonymous page is a page fault (on a 2 MiB transparent huge
page, the kernel zeroes 2 MiB: a few hundred microseconds), and a worker
that takes it stops for that long. So the pages a table will need next
are faulted in by a thread of pynf's own (`pynf-prefault`, Python, asleep
between looks every PERIOD seconds) with madvise(MADV_POPULATE_WRITE)
(Linux 5.14): the region of the next doubling once the table's count has
gone AHEAD of the way to it (at once while it is under EAGER bytes), and
the active region at start. Faulting in
a page that the worker is writing at the same time is safe (the kernel
takes the fault once); nothing here writes the table's words. Where the
kernel refuses (older kernels, other systems), nothing is faulted in
ahead and the worker takes the faults itself.
"""
import ctypes
import mmap
import threading
import weakref

import numpy as np

MADV_POPULATE_WRITE = 23
PERIOD = 0.005
AHEAD = 0.75                # fault in the next level at 3/4 of the count that starts it,
EAGER = 16 << 20            # or at once while it is this small
HUGE = 1 << 21

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.madvise.restype = ctypes.c_int

_lock = threading.Lock()
_watched = []               # [_Watch]
_thread = None
_works = True               # False once the kernel refused MADV_POPULATE_WRITE


def mapped(n, align, huge=False):
    """n zeroed int64 words of anonymous memory starting on an `align`
    boundary (advised for transparent huge pages with huge), untouched:
    it costs memory as it is written. None where mmap refuses."""
    size = n * 8
    try:
        m = mmap.mmap(-1, size + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return None
    raw = np.frombuffer(m, dtype=np.uint8)
    skew = (-raw.ctypes.data) % align
    if huge and hasattr(mmap, "MADV_HUGEPAGE"):
        start = skew - skew % mmap.PAGESIZE
        try:
            m.madvise(mmap.MADV_HUGEPAGE, start, size + align - start)
        except (OSError, ValueError):
            pass
    return raw[skew:skew + size].view(np.int64)


def populate(arr, start, stop):
    """Fault in bytes [start, stop) of arr's memory; False where the kernel
    cannot (the pages then fault on first touch)."""
    global _works
    if not _works or stop <= start:
        return _works
    page = mmap.PAGESIZE
    a = arr.ctypes.data + start
    lo = a - a % page
    if _libc.madvise(lo, arr.ctypes.data + stop - lo, MADV_POPULATE_WRITE) != 0:
        _works = False
    return _works


class _Watch:
    def __init__(self, tab, info, want):
        self.tab = weakref.ref(tab)
        self.info = info
        self.want = want            # info -> bytes of tab the table will need soon
        self.done = 0


def watch(tab, info, want):
    """Keep tab's next `want(info)` bytes faulted in, from pynf-prefault,
    while tab lives; fault in what it needs now at once."""
    global _thread
    w = _Watch(tab, info, want)
    _step(w)
    with _lock:
        _watched.append(w)
        if _thread is None and _works:
            _thread = threading.Thread(target=_loop, name="pynf-prefault", daemon=True)
            _thread.start()


def _step(w):
    tab = w.tab()
    if tab is None:
        return False
    want = min(int(w.want(w.info)), tab.nbytes)
    if want > w.done:
        for start in range(w.done, want, HUGE):      # a huge page at a time: the GIL comes back between
            if not populate(tab, start, min(want, start + HUGE)):
                return False
        w.done = want
    return True


def _loop():
    global _thread
    stop = threading.Event()
    while True:
        with _lock:
            if not _watched or not _works:
                _watched.clear()
                _thread = None
                return
            ws = list(_watched)
        gone = [w for w in ws if not _step(w)]
        if gone:
            with _lock:
                _watched[:] = [w for w in _watched if w not in gone]
        stop.wait(PERIOD)
