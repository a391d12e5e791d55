"""The runtime: workers that run stage replicas, for RTC, pipeline and hybrid.

A Plan (pynf.runtime.chain) says which NFs form which stage and how many replicas
each stage has. The runtime builds one state per NF per replica (so a flow
table is never shared between cores), compiles each stage once, wires the
first stage to the NIC's receive queues (one per replica: RSS), later
stages to the rings from the stage before, and the last stage to the
NIC's transmit side; then runs one pinned thread per worker, each calling
its compiled loop (no GIL held while it runs).

Shutdown drains in order: the first stage stops receiving, every later
stage runs until its upstream has exited and its input rings are empty,
then every worker gives its cached buffers back, so that at the end no
packet sits in a ring and every buffer is back in its pool.
"""
import functools
import os
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from numba import typeof
from numba.core.errors import NumbaError

from pynf import flowcache
from pynf.compiler import loops
from pynf.compiler import stage as stagemod
from pynf.compiler.jit import NO_JIT
from pynf.errors import RuntimeFailure, UsageError
from pynf.nf import NFError, load
from pynf.packet.batch import BURST_MAX, make_batch, make_live
from pynf.packet.drops import MAX_REASONS, NAMES
from pynf.packet.parse import F_FIRST, F_HOST
from pynf.runtime.report import process_age, tsc_hz
from pynf.slots import A_DEADLINE, A_STATES, NF_COLS, W_CONTROL, W_INJ_SENT, W_RX, W_TX, WS_SIZE

SLICE_S = 0.005          # a worker returns to Python this often


@dataclass
class Options:
    io: str = "mem"
    burst: int = 32
    duration: float = None
    packets: int = None
    flows: int = 1024
    frame_size: int = 64
    rate: float = None          # Gbps, wire rate, whole run
    pps: float = None           # packets a second, whole run
    seed: int = 1
    pcap_in: str = None
    pcap_out: str = None
    rx_ports: list = field(default_factory=lambda: [0])
    tx_ports: list = field(default_factory=lambda: [0, 1])
    ring_size: int = 1024
    ring_full: str = "wait"
    cores: list = None          # CPU ids to pin to; None: this process's affinity
    eal_args: list = field(default_factory=list)
    counters: bool = False      # hardware counters per worker (pynf.measure.perf), where available
    ifaces: list = None         # --iface ports (pynf.control.host.Iface), or None
    iface_driver: str = "af_packet"
    host: bool = False          # ports have addresses: ARP goes to the slow path
    flow_cache: tuple = None    # (entries per stage replica: -1 sized to the flows, 0 off; auto:
                                # kept while faster), pynf.cli.flags.flow_cache; None: $PYNF_FLOW_CACHE, else auto
    # set by Runtime.build from the plan, for the backend's sizing:
    n_workers: int = 0
    n_tx_queues: int = 0
    ring_slots: int = 0


@dataclass
class Worker:
    stage: int
    replica: int
    core: int
    kind: tuple
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
    parked: bool = False        # (set by the worker itself, under capture_lock)
    hold: object = None         # a pause request: (stopped Event, resume Event), see pause()


def numba_message(err):
    """The lines of a Numba error that say what and where, without colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    what = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File", ">>>", "^"))]
    where = [ln for ln in lines if ln.startswith("During: lowering") or ln.startswith("File")]
    return "; ".join((what[:1] or lines[:1]) + where[:1])


def nf_compile_error(spec, err):
    """One readable line for a Numba failure inside an NF."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    where = f"{spec.source}:{spec.line}"
    for m in re.finditer(r'File "([^"]+)", line (\d+)', text):
        if os.path.realpath(m.group(1)) == os.path.realpath(spec.source):
            where = f"{spec.source}:{m.group(2)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = next((ln for ln in lines if not ln.startswith(("Failed in", "During:", "File", ">>>"))),
               lines[0] if lines else type(err).__name__)
    if "Only accept returning of array" in text or "NRT required" in text:
        msg = ("allocates memory in its hot function (NRT, Numba's allocator, is off for NF "
               "code): preallocate the array in the NF's state")
    return f"NF {spec.name} ({where}) does not compile: {msg}"


@dataclass
class _Replacement:
    state: object


class Runtime:
    def __init__(self, plan, ctx, opts, io=None):
        self.plan, self.ctx, self.opts = plan, ctx, opts
        self.stop_input = threading.Event()
        self.hz = tsc_hz()
        self.specs = [[load(t) for t in s.tokens] for s in plan.stages]
        # Configs are validated once, before anything is allocated for packets.
        self.configs = [[sp.make_config(ctx) for sp in ss] for ss in self.specs]
        # each NF in the form its configuration runs (pynf.nf.spec.Form)
        self.specs = [[sp.chosen(cfg) for sp, cfg in zip(ss, cs)] for ss, cs in zip(self.specs, self.configs)]
        self.io = io
        self.workers = []
        self.rings = []          # (stage boundary, producer, consumer, Ring)
        self.capture_lock = threading.Lock()
        self.writer = None
        self.elapsed = 0.0
        self.startup_s = None
        self.running = False

    # ---- set-up ----

    def cores(self):
        if self.opts.cores:
            return list(self.opts.cores)
        return sorted(os.sched_getaffinity(0))

    def build(self):
        if NO_JIT:
            raise RuntimeFailure("the runtime needs the Numba JIT (unset NUMBA_DISABLE_JIT)")
        plan, opts, io = self.plan, self.opts, self.io
        cores = self.cores()
        self.modules = []           # per stage: its generated stage module
        self.loop_modules = []      # ... and its worker loops for this backend
        base = 0
        if opts.flow_cache is None:
            try:
                opts.flow_cache = flowcache.setting_default()
            except ValueError as e:
                raise UsageError(str(e)) from None
        fc_entries, fc_auto = opts.flow_cache
        for ss, cs in zip(self.specs, self.configs):
            writes = [sp.written(cfg) for sp, cfg in zip(ss, cs)]
            cached = [fc_entries != 0 and sp.cacheable(cfg) for sp, cfg in zip(ss, cs)]
            self.modules.append(stagemod.compile_stage(ss, base, writes, cached))
            self.loop_modules.append(loops.compile_loops(self.modules[-1], len(ss), io.loop_parts))
            base += len(ss)
        first_reps = plan.stages[0].replicas
        opts.n_workers = sum(sp.slots for sp in plan.stages)
        opts.n_tx_queues = plan.stages[-1].slots
        opts.ring_slots = sum(a.slots * b.slots for a, b in zip(plan.stages, plan.stages[1:])) \
            * opts.ring_size
        io.open(first_reps, opts)
        # the NFs' states (a million routes, flow tables) are made while the
        # backend finishes opening (pynf.io.backend: ready)
        states = [[[spec.make_state(cfg) for spec, cfg in zip(self.specs[s], self.configs[s])]
                   for _ in range(sp.slots)] for s, sp in enumerate(plan.stages)]
        io.ready()
        self.slow = None
        flat = [sp for ss in self.specs for sp in ss]
        host = getattr(self.ctx, "host", None)
        if io.slowpath and (host is not None or any(sp.slow for sp in flat)):
            from pynf.control.slowpath import SlowPath
            self.slow = SlowPath(io, flat, host)
        # rings between consecutive stages: ring[s][u][d]
        ring_addrs = []
        for s in range(len(plan.stages) - 1):
            up, down = plan.stages[s].slots, plan.stages[s + 1].slots
            grid = [[None] * down for _ in range(up)]
            for u in range(up):
                for d in range(down):
                    r = io.make_ring(opts.ring_size)
                    grid[u][d] = r
                    self.rings.append((s, u, d, r))
            ring_addrs.append(grid)
        policy = 0 if opts.ring_full == "wait" else 1
        k = 0
        last = len(plan.stages) - 1
        for s, sp in enumerate(plan.stages):
            for r in range(sp.slots):
                flags = (F_FIRST if s == 0 else 0) | (F_HOST if opts.host else 0)
                rx = "nic" if s == 0 else "ring"
                tx = "nic" if s == last else "ring"
                w = Worker(stage=s, replica=r, core=cores[k % len(cores)], kind=(rx, tx),
                           active=r < sp.replicas)
                k += 1
                w.ws = np.zeros(WS_SIZE, dtype=np.int64)
                w.drops = np.zeros(MAX_REASONS, dtype=np.int64)
                w.nfstat = np.zeros((len(self.specs[s]) + 1, NF_COLS), dtype=np.int64)
                w.txstat = np.zeros((max(list(opts.tx_ports) + list(getattr(io, "tx_ports", []))) + 1, 2),
                                    dtype=np.int64)
                w.cache = self.io.make_cache()
                w.cap = self.io.make_capture(opts.pcap_out is not None and s == last)
                w.src = io.rx_queue(r) if s == 0 else \
                    io.ring_in([ring_addrs[s - 1][u][r] for u in range(plan.stages[s - 1].slots)])
                if s != last:
                    w.dst = io.ring_out([ring_addrs[s][r][d] for d in range(plan.stages[s + 1].slots)],
                                        policy, plan.stages[s + 1].replicas)
                elif self.slow is not None:
                    w.dst = io.tx_queue(r, self.slow.punt_ring(), self.slow.inject.addr if r == 0 else 0)
                else:
                    w.dst = io.tx_queue(r)
                w.upstream_done = np.zeros(1, dtype=np.int64)
                w.states = states[s][r]
                w.flowcache = flowcache.ReplicaCache(fc_entries, self.modules[s].FC_VW, fc_auto, self.ctx.flows,
                                                     w.ws, w.nfstat, self.hz)
                w.loop = getattr(self.loop_modules[s], loops.loop_name(rx, tx))
                b = make_batch(self.io.mem(), BURST_MAX)
                w.args = [b, make_live(), np.zeros(BURST_MAX, dtype=np.uint64), w.src, w.dst,
                          io.pool_arg(), w.cache, self.io.txmap, w.txstat, w.cap, w.ws, w.drops,
                          w.nfstat, np.uint64(0), np.int64(opts.burst), np.int64(flags), w.upstream_done,
                          w.flowcache.arg, *w.states]
                self.workers.append(w)
        if plan.workers > len(cores):
            self.oversubscribed = True
        else:
            self.oversubscribed = False

    def compile(self, progress=None):
        """Compile every stage's NFs and loop; NF errors name the NF and line.
        progress(what, seconds), where given, follows each step (a step the
        cache serves takes milliseconds)."""
        def step(what, fn):
            t = time.perf_counter()
            fn()
            if progress is not None:
                progress(what, time.perf_counter() - t)
        done = set()
        for w in self.workers:
            key = (w.stage, w.kind)
            if key in done:
                continue
            done.add(key)
            b, live = w.args[0], w.args[1]
            for spec, st in zip(self.specs[w.stage], w.states):
                try:
                    sig = (typeof(b), typeof(live[0]), typeof(st)) if spec.per_packet else \
                        (typeof(b), typeof(live), typeof(np.int64(0)), typeof(st))
                    step(f"NF {spec.name}", functools.partial(spec.kernel.compile, sig))
                except NumbaError as e:
                    raise NFError(nf_compile_error(spec, e)) from None
            sig = tuple(typeof(a) for a in w.args)
            try:
                step(f"stage {w.stage} ({', '.join(sp.name for sp in self.specs[w.stage]) or 'dispatch'}) "
                     f"and its loop", functools.partial(w.loop.compile, sig))
            except NumbaError as e:
                raise RuntimeFailure(f"stage {w.stage} does not compile: {numba_message(e)}") from None

    # ---- running ----

    def _work(self, w, began=None):
        try:
            if hasattr(os, "sched_setaffinity"):
                try:
                    os.sched_setaffinity(0, {w.core})
                except OSError:
                    pass
            self.io.thread_init()
            hw = None
            if self.opts.counters:
                from pynf.measure.perf import ThreadCounters
                hw = ThreadCounters()
            slice_ticks = int(self.hz * SLICE_S)
            from pynf.shim import rdtsc
            args = w.args           # _apply_pending swaps states in place
            if began is not None:
                began.set()
            while True:
                if not w.active:
                    self._park(w)
                args[A_DEADLINE] = np.uint64(rdtsc() + slice_ticks)
                rc = w.loop(*args)
                w.flowcache.step(rdtsc())
                if rc == loops.RC_FLUSH:
                    self._flush_capture(w)
                elif rc == loops.RC_DONE:
                    break
                if w.pending:
                    self._apply_pending(w)
                if w.hold is not None:
                    self._held(w)
                if w.stage == 0 and self.stop_input.is_set():
                    break
            if hw is not None:
                w.counters = hw.read()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            w.error = e
            self.stop_input.set()
        finally:
            self._flush_capture(w)
            self.io.cache_flush(w.cache)
            self.io.thread_exit()
            self._exit(w)

    def _park(self, w):
        """An inactive replica slot waits here (its state and rings idle)
        until scaled to, or until its upstream is done, when it runs once
        more to see its (empty) rings and exit."""
        with self.capture_lock:
            w.parked = True
        try:
            while not w.active and not w.upstream_done[0]:
                if w.hold is not None:
                    self._held(w)
                time.sleep(0.002)
        finally:
            with self.capture_lock:
                w.parked = False
            if w.pending:
                self._apply_pending(w)

    def _held(self, w):
        stopped, resume = w.hold
        stopped.set()
        resume.wait()
        w.hold = None

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
                raise RuntimeFailure(f"pause: worker s{w.stage}r{w.replica} did not stop within {timeout} s")
        return held

    def resume(self, workers):
        for w in workers:
            h = w.hold
            if h is not None:
                h[1].set()
        for w in workers:
            w.ws[W_CONTROL] = 0

    def _apply_pending(self, w):
        with self.capture_lock:
            todo, w.pending = w.pending, []
            w.ws[W_CONTROL] = 0
        for job in todo:
            self._apply(w, *job)

    @staticmethod
    def _apply(w, j, fn, done, errs):
        """Run one control change on worker w's state of its NF j: fn(state)
        changes the state in place, or returns a _Replacement (from
        replace_state) whose state the loop gets from its next call."""
        try:
            new = fn(w.states[j])
            if isinstance(new, _Replacement):
                w.states[j] = new.state
                w.args[A_STATES + j] = new.state
        except Exception as e:  # noqa: BLE001 - handed to control()'s caller
            errs.append(e)
        finally:
            w.flowcache.invalidate()       # (a refused change may have done part of its work)
            done.set()

    def _places(self, nf_name):
        """(worker, index in its stage) of each replica of NF nf_name."""
        out = [(w, j) for w in self.workers for j, spec in enumerate(self.specs[w.stage])
               if spec.name == nf_name]
        if not out:
            raise UsageError(f"control: no NF {nf_name!r} in this chain")
        return out

    def control(self, nf_name, fn, timeout=5.0):
        """Apply fn(state) to NF nf_name's state in every replica, between
        bursts: each worker runs it on its own replica's state when its loop
        next returns (within a few ms), so the fast path never sees a half
        change and no lock is taken on it. Blocks until all replicas have it.
        fn changes the state in place (what it returns is ignored)."""
        self._dispatch([(w, j, fn) for w, j in self._places(nf_name)], timeout)

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
        self._dispatch(jobs, timeout)

    def states(self, nf_name):
        """NF nf_name's state in each replica (to read on the control path)."""
        return [w.states[j] for w, j in self._places(nf_name)]

    def _dispatch(self, jobs, timeout):
        waits, errs = [], []
        for w, j, fn in jobs:
            done = threading.Event()
            with self.capture_lock:
                if w.exited or w.parked or not self.running:     # not in its loop: apply here
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

    def _exit(self, w):
        with self.capture_lock:
            w.exited = True
            for job in w.pending:       # exiting: apply what is left, unblock control()
                self._apply(w, *job)
            w.pending = []
            s = w.stage
            if all(x.exited for x in self.workers if x.stage == s):
                for x in self.workers:
                    if x.stage == s + 1:
                        x.upstream_done[0] = 1

    def _flush_capture(self, w):
        if self.writer is None or w.cap is None or w.cap.st[0] == 0:
            return
        n = int(w.cap.st[0])
        rec = w.cap.rec[:n]
        ts = self.wall0_ns + ((rec[:, 2] - self.tsc0) * 1e9 / self.hz).astype(np.int64)
        with self.capture_lock:
            self.writer.write_many(w.cap.mem, rec[:, 0], rec[:, 1], ts)
        w.cap.st[0] = 0
        w.cap.st[1] = 0

    def run(self, progress=None, started=None):
        """Run until the duration, the packet count or the input ends.
        started(), where given, is called once the slow path runs and every
        worker is about to poll (what "running" may be said after)."""
        from pynf.io import pcap
        from pynf.shim import rdtsc
        opts = self.opts
        if opts.pcap_out:
            self.writer = pcap.Writer(opts.pcap_out)
        self.tsc0, self.wall0_ns = rdtsc(), time.time_ns()
        began = [threading.Event() for _ in self.workers]
        threads = [threading.Thread(target=self._work, args=(w, e), daemon=True,
                                    name=f"pynf-s{w.stage}r{w.replica}") for w, e in zip(self.workers, began)]
        self.t0 = t0 = time.perf_counter()
        self.running = True
        if self.slow is not None:
            self.slow.start()
        for t in threads:
            t.start()
        for e, t in zip(began, threads):
            while not e.wait(0.05) and t.is_alive():
                pass
        self.startup_s = process_age()
        if started is not None:
            started()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.1)
                    break
                el = time.perf_counter() - t0
                if opts.duration is not None and el >= opts.duration:
                    self.stop_input.set()
                if progress is not None:
                    progress(self, el)
        except KeyboardInterrupt:
            self.stop_input.set()
            for t in threads:
                t.join()
        self.elapsed = time.perf_counter() - t0
        if self.slow is not None:
            self.slow.stop()
        with self.capture_lock:
            self.running = False
        if self.writer is not None:
            self.writer.close()
        errs = [w.error for w in self.workers if w.error is not None]
        if self.slow is not None and self.slow.error is not None:
            errs.append(self.slow.error)
        if errs:
            raise RuntimeFailure(f"worker failed: {type(errs[0]).__name__}: {errs[0]}")

    def live_elapsed(self):
        """Seconds run so far (the final figure once the run is over)."""
        return time.perf_counter() - self.t0 if self.running else self.elapsed

    def request_stop(self):
        self.stop_input.set()

    def close(self):
        """Release rings and the I/O backend (ports, pools); safe to call twice."""
        if getattr(self, "slow", None) is not None:
            self.slow.stop()         # (the report still reads its counters)
            self.slow.close()
        if self.io is not None:
            self.io.close()
        for _, _, _, r in self.rings:
            close = getattr(r, "close", None)
            if close:
                close()

    # ---- results ----

    def reason_names(self, stage):
        """Drop code -> reason name in a stage (NF codes are per stage)."""
        names = dict(NAMES)
        for per_nf in stagemod.reason_codes(self.specs[stage]):
            for name, code in per_nf:
                names[code] = name
        return names

    def totals(self):
        """Live totals (may be read while workers run)."""
        first = [w for w in self.workers if w.stage == 0]
        last_s = len(self.plan.stages) - 1
        last = [w for w in self.workers if w.stage == last_s]
        rx = sum(int(w.ws[W_RX]) for w in first)
        tx = sum(int(w.ws[W_TX]) + int(w.ws[W_INJ_SENT]) for w in last)
        drops = sum(int(w.drops.sum()) for w in self.workers)
        if getattr(self, "slow", None) is not None:
            drops += sum(self.slow.drops.values())
        return rx, tx, drops
