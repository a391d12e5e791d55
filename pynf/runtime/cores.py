"""Cores for a run's workers, shared fairly between pynf instances on one host.

Each worker polls without sleeping, so two instances that pin their workers
to the same core halve each other while another core idles. An instance
claims the cores it pins to with a lock file per core (`cpuN.lock` in the
runtime directory, flock(2): the kernel drops a claim when its process
exits, however it exits) and skips cores another instance holds. With too
few free cores it shares the ones taken, and says which and by whom.
"""
import fcntl
import os


class Claim:
    """The cores picked for a run (`cores`, in the order workers get them),
    a line saying what was shared (`note`, or None), and the held locks
    (released by close(), or when the process exits)."""

    def __init__(self, cores, note, fds):
        self.cores, self.note, self._fds = cores, note, fds

    def close(self):
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _try_lock(path):
    """An fd holding path's lock, or (None, the holder's pid text)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        return None, holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, None


def claim(want, cpus, directory):
    """Claim up to `want` of `cpus` (in order) in `directory`. Free cores
    first; if fewer than `want` are free, the rest are taken ones, shared.
    A directory that cannot be used claims nothing and picks cpus[:want]."""
    want = max(1, min(want, len(cpus)))
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as e:
        return Claim(list(cpus[:want]), f"cannot claim cores in {directory} ({e.strerror}): "
                                        f"using {_fmt(cpus[:want])} unchecked", [])
    free, taken, fds = [], {}, []
    for c in cpus:
        if len(free) == want:
            break
        try:
            fd, holder = _try_lock(os.path.join(directory, f"cpu{c}.lock"))
        except OSError:
            fd, holder = None, "?"
        if fd is None:
            taken[c] = holder
        else:
            free.append(c)
            fds.append(fd)
    note = None
    cores = list(free)
    if len(cores) < want:
        shared = [c for c in cpus if c in taken][:want - len(cores)]
        cores += shared
        who = ", ".join(f"{c} (pid {taken[c]})" for c in shared)
        note = (f"cores {who} are taken by another pynf: its workers and this run's share them"
                if shared else None)
    elif taken:
        note = f"cores {_fmt(sorted(taken))} are taken by another pynf: using {_fmt(cores)}"
    return Claim(cores, note, fds)


def _fmt(cs):
    return ",".join(map(str, cs))
