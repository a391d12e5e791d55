"""Hardware performance counters through perf_event_open(2), where the
machine has them (many VMs do not: then `probe()` says why, in one line).

Counters are opened per worker thread (pid 0, any CPU) for the thread's
whole run: cycles, instructions, L1d read misses, LLC misses.
"""
import ctypes
import os
import struct

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}.get(os.uname().machine)
PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE = 0, 3
EVENTS = {
    "cycles": (PERF_TYPE_HARDWARE, 0),
    "instructions": (PERF_TYPE_HARDWARE, 1),
    # cache id | (op read << 8) | (result miss << 16)
    "l1d_misses": (PERF_TYPE_HW_CACHE, 0 | (0 << 8) | (1 << 16)),
    "llc_misses": (PERF_TYPE_HARDWARE, 3),
}
ATTR_SIZE = 112                  # PERF_ATTR_SIZE_VER5
FLAG_EXCLUDE_KERNEL = 1 << 5
FLAG_EXCLUDE_HV = 1 << 6

_libc = ctypes.CDLL(None, use_errno=True)


def _open(kind, config):
    if _NR_PERF_EVENT_OPEN is None:
        raise OSError(0, "perf_event_open: unknown syscall number on this architecture")
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, kind, ATTR_SIZE, config)
    struct.pack_into("<Q", attr, 40, FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV)
    buf = (ctypes.c_char * ATTR_SIZE).from_buffer(attr)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, buf, 0, -1, -1, 0)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def probe():
    """None if counters work here, else a one-line reason."""
    try:
        fd = _open(*EVENTS["cycles"])
    except OSError as e:
        return f"no hardware performance counters here (perf_event_open: {e.strerror})"
    os.close(fd)
    return None


class ThreadCounters:
    """The calling thread's counters, from open() to read()."""

    def __init__(self):
        self.fds = {}
        for name, (kind, cfg) in EVENTS.items():
            try:
                self.fds[name] = _open(kind, cfg)
            except OSError:
                pass

    def read(self):
        out = {}
        for name, fd in self.fds.items():
            try:
                out[name] = struct.unpack("<Q", os.read(fd, 8))[0]
            except OSError:
                pass
            os.close(fd)
        self.fds = {}
        return out
