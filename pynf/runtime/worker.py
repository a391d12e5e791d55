"""A worker: one stage replica, one pinned thread calling its compiled loop.

The loop runs a slice (SLICE_S) of bursts and returns to Python, where the
worker takes what the mailbox (pynf.runtime.mailbox) has for it: a control
change, a pause, a park. The loop's arguments (`args`) are the ones the
stage was compiled for (pynf.compiler.loops); A_STATES onward are the NFs'
states, which a control change may swap in place.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from pynf.compiler import loops
from pynf.packet.clock import rebase
from pynf.slots import A_DEADLINE

SLICE_S = 0.005          # a worker returns to Python this often


@dataclass
class Worker:
    stage: int
    replica: int
    core: int
    kind: tuple                 # (rx, tx): "nic" or "ring" each
    args: list = None
    loop: object = None
    ws: np.ndarray = None
    drops: np.ndarray = None
    nfstat: np.ndarray = None
    txstat: np.ndarray = None
    cache: object = None
    cap: object = None
    src: object = None
    dst: object = None
    upstream_done: np.ndarray = None
    flowcache: object = None    # the stage replica's flow cache (pynf.flowcache.ReplicaCache)
    states: list = None
    exited: bool = False
    error: BaseException = None
    counters: dict = None
    pending: list = field(default_factory=list)     # control changes to apply between bursts
    active: bool = True         # False: parked (a replica slot a stage may scale to)
    parked: bool = False        # (set by the worker itself, under the mailbox's lock)
    hold: object = None         # a pause request: (stopped Event, resume Event), Mailbox.pause
    unfused: object = None      # running unfused until fused (pynf.runtime.fuse.Unfused), or None

    @property
    def name(self):
        return f"s{self.stage}r{self.replica}"


def work(rt, w, began=None):
    """The thread body of worker w of runtime rt: pin, poll until the input
    ends or rt.stop_input, then give back cached buffers. An error is kept
    in w.error for the main thread and stops the input."""
    from pynf.shim import rdtsc
    mail = rt.mail
    try:
        if hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {w.core})
            except OSError:
                pass
        rt.io.thread_init()
        hw = None
        if rt.opts.counters:
            from pynf.measure.perf import ThreadCounters
            hw = ThreadCounters()
        slice_ticks = int(rt.hz * SLICE_S)
        clock = w.args[0].clock     # the batch's (pynf.packet.clock)
        if began is not None:
            began.set()
        while True:
            if not w.active:
                mail.park(w)
            args = w.args       # (the mailbox swaps states in it, or all of it: pynf.runtime.fuse)
            rebase(clock)
            args[A_DEADLINE] = np.uint64(rdtsc() + slice_ticks)
            rc = w.loop(*args)
            w.flowcache.step(rdtsc())
            if rc == loops.RC_FLUSH:
                flush_capture(rt, w)
            elif rc == loops.RC_DONE:
                break
            if w.pending:
                mail.take(w)
            if w.hold is not None:
                mail.held(w)
            if w.stage == 0 and rt.stop_input.is_set():
                break
        if hw is not None:
            w.counters = hw.read()
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        w.error = e
        rt.stop_input.set()
    finally:
        flush_capture(rt, w)
        rt.io.cache_flush(w.cache)
        rt.io.thread_exit()
        mail.retire(w)


def flush_capture(rt, w):
    """Write what worker w's capture buffer holds to the run's pcap (--pcap-out)."""
    if rt.writer is None or w.cap is None or w.cap.st[0] == 0:
        return
    n = int(w.cap.st[0])
    rec = w.cap.rec[:n]
    ts = rt.wall0_ns + ((rec[:, 2] - rt.tsc0) * 1e9 / rt.hz).astype(np.int64)
    with rt.writer_lock:
        rt.writer.write_many(w.cap.mem, rec[:, 0], rec[:, 1], ts)
    w.cap.st[0] = 0
    w.cap.st[1] = 0
