"""The runtime: workers that run stage replicas, for RTC, pipeline and hybrid.

A Plan (pynf.runtime.chain) says which NFs form which stage and how many replicas
each stage has. The runtime builds one state per NF per replica (so a flow
table is never shared between cores), compiles each stage once, wires the
first stage to the NIC's receive queues (one per replica: RSS), later
stages to the rings from the stage before, and the last stage to the
NIC's transmit side; then runs one pinned thread per worker, each calling
its compiled loop (no GIL held while it runs).

This file wires and compiles (build, compile), starts and stops (run,
close) and sums up (totals). A worker's thread is pynf.runtime.worker;
every change to running workers (control, pause, scale) goes through
the mailbox, pynf.runtime.mailbox; what a run is asked to do is
pynf.runtime.options.

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
from pynf.packet.clock import tsc_hz
from pynf.packet.drops import MAX_REASONS, NAMES
from pynf.packet.keys import K_FLOW, K_GLOBAL, stage_key
from pynf.packet.parse import F_FIRST, F_HOST
from pynf.runtime import fuse
from pynf.runtime.mailbox import Mailbox
from pynf.runtime.report import process_age
from pynf.runtime.worker import Worker, work
from pynf.slots import NF_COLS, RO_KEY, W_INJ_SENT, W_RX, W_TX, WS_SIZE


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


class Runtime:
    def __init__(self, plan, ctx, opts, io=None):
        self.plan, self.ctx, self.opts = plan, ctx, opts
        self.stop_input = threading.Event()
        self.hz = tsc_hz()
        self.specs = [[load(t) for t in s.tokens] for s in plan.stages]
        # Configs are validated once, before anything is allocated for packets.
        self.configs = [[sp.make_config(ctx.for_stage(st.replicas)) for sp in ss]
                        for ss, st in zip(self.specs, plan.stages)]
        # each NF in the form its configuration runs (pynf.nf.spec.Form)
        self.specs = [[sp.chosen(cfg) for sp, cfg in zip(ss, cs)] for ss, cs in zip(self.specs, self.configs)]
        self.keys = [self._stage_key(s) for s in range(len(plan.stages))]
        self.io = io
        self.workers = []
        self.rings = []          # (stage boundary, producer, consumer, Ring)
        self.mail = Mailbox(self.workers, self.specs)    # control, pause, scale (pynf.runtime.mailbox)
        self.writer = None          # --pcap-out (pynf.runtime.worker.flush_capture)
        self.writer_lock = threading.Lock()
        self.elapsed = 0.0
        self.startup_s = None
        self.running = False
        self.fuser = fuse.Fuser(self)   # (its say: set by the caller to print its lines)

    # ---- set-up ----

    def _stage_key(self, s):
        """What stage s steers by (pynf.packet.keys), checked against its
        replicas: a per-key state needs every packet of a key on one replica."""
        ss, sp = self.specs[s], self.plan.stages[s]
        keyed = [x for x in ss if x.key is not None]
        try:
            k = stage_key([x.key for x in ss])
        except ValueError as e:
            raise UsageError(f"stage {s}: {', '.join(f'{x.name} (key={x.key})' for x in keyed)}: {e}; "
                             f"put them in stages of their own (--stages \"A|B\")") from None
        if sp.slots > 1 and keyed:
            x = next(x for x in keyed if x.key != "flow") if k != K_FLOW else keyed[0]
            if k == K_GLOBAL:
                raise UsageError(f"NF {x.name} keeps one state for all packets (key=global): "
                                 f"its stage runs one replica, not {sp.slots}")
            if s == 0 and k != K_FLOW:
                chain = ",".join(self.plan.tokens)
                raise UsageError(f"NF {x.name} keeps its state per {x.key}, but {sp.slots} replicas read the "
                                 f"NIC's queues, spread by 5-tuple: put a dispatch stage in front "
                                 f"(--stages \"|{chain}\")")
        return k

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
                    w.dst.opts[RO_KEY] = self.keys[s + 1]
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
        cache serves takes milliseconds). With opts.compile "fast", a stage
        whose fused loop is not cached starts unfused (pynf.runtime.fuse)."""
        def step(what, fn):
            t = time.perf_counter()
            fn()
            if progress is not None:
                progress(what, time.perf_counter() - t)
        if self.workers:            # what a worker calls as it exits, compiled now too
            self.io.cache_flush(self.workers[0].cache)
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
                if self.opts.compile == "fast" and not fuse.is_cached(w.loop, sig) and \
                        fuse.start_unfused(self, w.stage, w.kind, step):
                    continue                # (fused later: self.fuser)
                step(f"stage {w.stage} ({', '.join(sp.name for sp in self.specs[w.stage]) or 'dispatch'}) "
                     f"and its loop", functools.partial(w.loop.compile, sig))
            except NumbaError as e:
                raise RuntimeFailure(f"stage {w.stage} does not compile: {numba_message(e)}") from None

    # ---- running ----

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
        threads = [threading.Thread(target=work, args=(self, w, e), daemon=True,
                                    name=f"pynf-{w.name}") for w, e in zip(self.workers, began)]
        self.t0 = t0 = time.perf_counter()
        self.running = self.mail.open = True
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
        self.fuser.start()          # stages that started unfused: fused in the background
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
        with self.mail.lock:
            self.running = self.mail.open = False
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
        self.fuser.finish()
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
