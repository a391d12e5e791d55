"""Fast start: run a stage unfused while its fused code compiles, then swap.

A fused stage (pynf.compiler.stage) is one compiled function with its NFs
inlined: the fastest code, and the slowest to compile (5-10 s a stage
here), and an edit to any of its NFs compiles it anew. When the fused
loop of a stage is not in the compile cache, the runtime (with
--compile fast, the default) instead:

  1. compiles each NF of the stage on its own (about a second each, and
     only the edited ones: the others come from the cache);
  2. runs the stage's *unfused* loop: the same parsing, counting and
     write-back, calling each NF through its address (pynf.compiler.
     intrinsics.call_nf3/4). Its code does not depend on the NFs' code, so
     it is compiled once and cached until pynf itself changes;
  3. compiles the fused loop in a background thread while the chain runs
     (workers never wait for the compile: their loop calls take no lock);
  4. swaps it in through the mailbox, each worker between two bursts: the
     same batch, rings, states and counters, only the loop and its
     arguments change, so no packet is lost or counted twice.

An NF whose function returns a value cannot be called unfused; its stage
compiles fused first, as with --compile fused. Compile errors in an NF
are found in step 1, before anything runs.
"""
import threading
import time

import numpy as np
from numba import typeof
from numba.core.errors import NumbaError

from pynf import flowcache
from pynf.compiler import loops
from pynf.compiler import stage as stagemod
from pynf.compiler.intrinsics import address_of
from pynf.slots import A_FLOWCACHE


def is_cached(dispatcher, sig):
    """True when `dispatcher` has `sig` compiled or in its disk cache (then
    loaded, as compile(sig) would, so compiling it costs nothing more)."""
    from numba.core.compiler_lock import global_compiler_lock
    sig = tuple(sig)
    if sig in dispatcher.overloads:
        return True
    cache = getattr(dispatcher, "_cache", None)
    if cache is None:
        return False
    with global_compiler_lock:
        cres = cache.load_overload(sig, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
        dispatcher.add_overload(cres)
    return True


class Unfused:
    """A stage replica's unfused loop, and what it swaps back when fused."""

    def __init__(self, loop, args, fused_loop, fused_args, fused_cache):
        self.loop, self.args = loop, args
        self.fused_loop, self.fused_args, self.fused_cache = fused_loop, fused_args, fused_cache


def start_unfused(rt, s, kind, progress_step):
    """Compile stage s's NFs alone and its unfused loop for workers of `kind`;
    point those workers at it. False (nothing changed) when an NF returns a
    value (it cannot be called through its address)."""
    ws = [w for w in rt.workers if w.stage == s and w.kind == kind]
    specs = rt.specs[s]
    w0 = ws[0]
    b, live = w0.args[0], w0.args[1]
    addrs = []
    for spec, st in zip(specs, w0.states):
        sig = (typeof(b), typeof(live[0]), typeof(st)) if spec.per_packet else \
            (typeof(b), typeof(live), typeof(np.int64(0)), typeof(st))
        addr, ret = address_of(spec.kernel, sig)
        if str(ret) != "none":
            return False
        addrs.append(np.int64(addr))
    base = sum(len(x) for x in rt.specs[:s])
    states = "; ".join(f"{type(st).__module__}.{type(st).__qualname__} {typeof(st)}" for st in w0.states)
    mod = stagemod.compile_stage(specs, base, unfused=states)
    lmod = loops.compile_loops(mod, 2 * len(specs), rt.io.loop_parts)
    loop = getattr(lmod, loops.loop_name(*kind))
    for w in ws:
        fc = flowcache.ReplicaCache(0, 0, False, rt.ctx.flows, w.ws, w.nfstat, rt.hz)
        args = list(w.args)
        args[A_FLOWCACHE] = fc.arg              # (the unfused stage has no flow cache)
        w.unfused = Unfused(loop, args + addrs, w.loop, w.args, w.flowcache)
        w.loop, w.args, w.flowcache = loop, w.unfused.args, fc
    progress_step(f"stage {s} unfused ({', '.join(sp.name for sp in specs) or 'dispatch'}) and its loop",
                  lambda: loop.compile(tuple(typeof(a) for a in w0.args)))
    return True


class Fuser:
    """Compiles the fused loops of the stages that started unfused, in a
    background thread, and swaps each in as it is ready."""

    def __init__(self, rt, say=None):
        self.rt, self.say = rt, say or (lambda line: None)
        self.thread = None
        self.error = None
        self.swapped = []           # (stage, kind, compile seconds)
        self.over = False

    def pending(self):
        return [w for w in self.rt.workers if getattr(w, "unfused", None) is not None]

    def start(self):
        if self.pending():
            self.thread = threading.Thread(target=self._run, daemon=True, name="pynf-fuse")
            self.thread.start()

    def finish(self):
        """The run is over: a background compile still going is left
        unfinished (nothing of it is cached; the next run starts unfused
        and compiles it again), so that a short run ends at once."""
        self.over = True
        if self.thread is not None and self.thread.is_alive():
            stages = sorted({w.stage for w in self.pending()})
            self.say(f"pynf: stage(s) {', '.join(map(str, stages))} ran unfused: the run ended before "
                     f"their fused code compiled")

    def _run(self):
        rt = self.rt
        done = set()
        for w in self.pending():
            key = (w.stage, w.kind)
            if key in done:
                continue
            done.add(key)
            t0 = time.perf_counter()
            u = w.unfused
            try:
                u.fused_loop.compile(tuple(typeof(a) for a in u.fused_args))
            except NumbaError as e:
                self.error = e
                self.say(f"pynf: stage {w.stage} stays unfused: its fused code does not compile ({e})")
                continue
            secs = time.perf_counter() - t0
            if self.over:
                return
            group = [x for x in self.pending() if (x.stage, x.kind) == key]
            rt.mail.each_worker(group, _swap)
            self.swapped.append((w.stage, w.kind, secs))
            self.say(f"pynf: stage {w.stage} fused: compiled in {secs:.1f} s while running, "
                     f"swapped in between bursts")


def _swap(w):
    u = w.unfused
    w.loop, w.args, w.flowcache = u.fused_loop, u.fused_args, u.fused_cache
    w.unfused = None
