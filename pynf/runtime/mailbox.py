"""The control mailbox: every change to running workers goes through here,
and is made between bursts, so the fast path never sees half a change and
takes no lock.

  control(nf, fn)          fn(state) on NF nf's state in every replica
  replace_state(nf, make)  swap each replica's state for make(old), built here
  states(nf)               each replica's state, to read on the control path
  pause(workers) / resume(workers)
  scale(stage, replicas)   pynf.runtime.scale

A change is posted to each worker (its `pending` list, W_CONTROL set so its
loop returns after the burst); the worker takes it (take) when its loop
returns and the caller waits until every replica has it. A worker not in
its loop (not started, parked, exited) gets it applied here, at once.
"""
import threading
import time
from dataclasses import dataclass

from numba import typeof

from pynf.errors import RuntimeFailure, UsageError
from pynf.slots import A_STATES, W_CONTROL


@dataclass
class _Replacement:
    state: object


class Mailbox:
    def __init__(self, workers, specs):
        self.workers = workers      # the runtime's list (filled by its build)
        self.specs = specs          # per stage: the NFs' specs
        self.lock = threading.Lock()
        self.open = False           # the workers run (Runtime.run)

    # ---- for control ----

    def control(self, nf_name, fn, timeout=5.0):
        """Apply fn(state) to NF nf_name's state in every replica, between
        bursts: each worker runs it on its own replica's state when its loop
        next returns (within a few ms). Blocks until all replicas have it.
        fn changes the state in place (what it returns is ignored)."""
        self._post([(w, j, fn) for w, j in self._places(nf_name)], timeout)

    def replace_state(self, nf_name, make, timeout=5.0):
        """Swap NF nf_name's state in every replica for make(old state), built
        here, off the fast path; each worker takes its new state between
        bursts. The new state must have the old one's Numba type (same
        namedtuple, array dtypes and dimensions; sizes may differ), so the
        compiled stage runs it without recompiling."""
        jobs = []
        for w, j in self._places(nf_name):
            new = make(w.states[j])
            if typeof(new) != typeof(w.states[j]):
                raise RuntimeFailure(f"control: {nf_name}'s new state has another type "
                                     f"({typeof(new)}) than the running one")
            rep = _Replacement(new)
            jobs.append((w, j, lambda st, rep=rep: rep))
        self._post(jobs, timeout)

    def states(self, nf_name):
        """NF nf_name's state in each replica (to read on the control path)."""
        return [w.states[j] for w, j in self._places(nf_name)]

    def pause(self, workers, timeout=5.0):
        """Stop these workers between bursts (parked ones too) and keep them
        stopped until resume(); returns once all have stopped. Nothing is
        lost: a paused stage's input waits in its rings or its NIC queues."""
        held = []
        for w in workers:
            if w.exited:
                continue
            h = (threading.Event(), threading.Event())
            w.hold = h
            w.ws[W_CONTROL] = 1
            held.append((w, h))
        for w, (stopped, _) in held:
            if not stopped.wait(timeout) and not w.exited:
                self.resume([x for x, _ in held])
                raise RuntimeFailure(f"pause: worker {w.name} did not stop within {timeout} s")
        return held

    def resume(self, workers):
        for w in workers:
            h = w.hold
            if h is not None:
                h[1].set()
        for w in workers:
            w.ws[W_CONTROL] = 0

    def each_worker(self, workers, fn, timeout=5.0):
        """fn(worker) on each of these workers, in its own thread between
        bursts (or here, where it is not in its loop): what changes a
        worker's loop or arguments (pynf.runtime.fuse)."""
        self._post([(w, None, fn) for w in workers], timeout)

    def scale(self, stage, replicas, timeout=5.0):
        """Scale a stage to `replicas` replicas; a line saying what moved."""
        from pynf.runtime.scale import scale
        return scale(self, stage, replicas, timeout)

    # ---- for the workers (pynf.runtime.worker), from their threads ----

    def take(self, w):
        """Apply what is posted to worker w (its loop has returned)."""
        with self.lock:
            todo, w.pending = w.pending, []
            w.ws[W_CONTROL] = 0
        for job in todo:
            self._apply(w, *job)

    def held(self, w):
        """Worker w is paused: say so and wait for resume()."""
        stopped, resume = w.hold
        stopped.set()
        resume.wait()
        w.hold = None

    def park(self, w):
        """An inactive replica slot waits here (its state and rings idle)
        until scaled to, or until its upstream is done, when it runs once
        more to see its (empty) rings and exit."""
        with self.lock:
            w.parked = True
        try:
            while not w.active and not w.upstream_done[0]:
                if w.hold is not None:
                    self.held(w)
                time.sleep(0.002)
        finally:
            with self.lock:
                w.parked = False
            if w.pending:
                self.take(w)

    def retire(self, w):
        """Worker w has left its loop: apply what is left for it (so no
        control() waits forever) and, once its whole stage has exited, tell
        the next stage that its upstream is done."""
        with self.lock:
            w.exited = True
            for job in w.pending:
                self._apply(w, *job)
            w.pending = []
            s = w.stage
            if all(x.exited for x in self.workers if x.stage == s):
                for x in self.workers:
                    if x.stage == s + 1:
                        x.upstream_done[0] = 1

    # ----

    def _places(self, nf_name):
        """(worker, index in its stage) of each replica of NF nf_name."""
        out = [(w, j) for w in self.workers for j, spec in enumerate(self.specs[w.stage])
               if spec.name == nf_name]
        if not out:
            raise UsageError(f"control: no NF {nf_name!r} in this chain")
        return out

    def _post(self, jobs, timeout):
        waits, errs = [], []
        for w, j, fn in jobs:
            done = threading.Event()
            with self.lock:
                if w.exited or w.parked or not self.open:     # not in its loop: apply here
                    self._apply(w, j, fn, done, errs)
                    continue
                w.pending.append((j, fn, done, errs))
                w.ws[W_CONTROL] = 1             # the loop returns after its burst
            waits.append(done)
        for done in waits:
            if not done.wait(timeout):
                raise RuntimeFailure(f"control: a worker did not apply the change within {timeout} s")
        if errs:
            raise errs[0]

    @staticmethod
    def _apply(w, j, fn, done, errs):
        """Run one control change on worker w's state of its NF j: fn(state)
        changes the state in place, or returns a _Replacement (from
        replace_state) whose state the loop gets from its next call."""
        try:
            if j is None:
                fn(w)
                return
            new = fn(w.states[j])
            if isinstance(new, _Replacement):
                w.states[j] = new.state
                w.args[A_STATES + j] = new.state
                if w.unfused is not None:           # (and the fused loop's, to come)
                    w.unfused.fused_args[A_STATES + j] = new.state
        except Exception as e:  # noqa: BLE001 - handed to control()'s caller
            errs.append(e)
        finally:
            w.flowcache.invalidate()       # (a refused change may have done part of its work)
            done.set()
