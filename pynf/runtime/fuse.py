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
  3. compiles the fused loop in a child process while the chain runs
     (workers never wait for it; it goes on after a short run, for the
     next);
  4. swaps it in through the mailbox, each worker between two bursts: the
     same batch, rings, states and counters, only the loop and its
     arguments change, so no packet is lost or counted twice.

The fused loop (and, for `nf reload`, the edited NF) is compiled in a child
process into the shared compile cache, then loaded here: a compile in
this process would hold Python's GIL for ~0.1 s at a time, which the
workers take between slices (bench/RESULTS.md). Where the child fails,
the compile runs here.

An NF whose function returns a value cannot be called unfused; its stage
compiles fused first, as with --compile fused. Compile errors in an NF
are found in step 1, before anything runs.
"""
import functools
import os
import threading
import time

import numpy as np
from numba import typeof

from pynf import flowcache
from pynf.compiler import loops
from pynf.compiler import stage as stagemod
from pynf.compiler.intrinsics import address_of
from pynf.errors import RuntimeFailure
from pynf.slots import A_FLOWCACHE, A_STATES


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


def _sig(spec, b, live, st):
    """The argument types an NF's function is compiled for."""
    return (typeof(b), typeof(live[0]), typeof(st)) if spec.per_packet else \
        (typeof(b), typeof(live), typeof(np.int64(0)), typeof(st))


def _addresses(specs, w0, states=None):
    """Each NF's compiled address for worker w0's batch and states (compiled
    alone, or from the cache), or None when one returns a value."""
    b, live = w0.args[0], w0.args[1]
    addrs = []
    for spec, st in zip(specs, states or w0.states):
        addr, ret = address_of(spec.kernel, _sig(spec, b, live, st))
        if str(ret) != "none":
            return None
        addrs.append(np.int64(addr))
    return addrs


def _unfused_loop(rt, s, kind, states):
    """Stage s's unfused loop for workers of `kind` (its module named by the
    states' types; compiled at its first call, or from the cache)."""
    text = "; ".join(f"{type(st).__module__}.{type(st).__qualname__} {typeof(st)}" for st in states)
    base = sum(len(x) for x in rt.specs[:s])
    mod = stagemod.compile_stage(rt.specs[s], base, unfused=text)
    return getattr(loops.compile_loops(mod, 2 * len(rt.specs[s]), rt.io.loop_parts), loops.loop_name(*kind))


def _unfused_args(rt, w, fused_args, addrs):
    """An unfused loop's arguments: the fused loop's, without a flow cache,
    and the NFs' addresses. Returns (args, the cache standing in)."""
    fc = flowcache.ReplicaCache(0, 0, False, rt.ctx.flows, w.ws, w.nfstat, rt.hz)
    args = list(fused_args)
    args[A_FLOWCACHE] = fc.arg
    return args + list(addrs), fc


def start_unfused(rt, s, kind, progress_step):
    """Compile stage s's NFs alone and its unfused loop for workers of `kind`;
    point those workers at it (before the run). False (nothing changed)
    when an NF returns a value (it cannot be called through its address)."""
    ws = [w for w in rt.workers if w.stage == s and w.kind == kind]
    addrs = _addresses(rt.specs[s], ws[0])
    if addrs is None:
        return False
    loop = _unfused_loop(rt, s, kind, ws[0].states)
    for w in ws:
        args, fc = _unfused_args(rt, w, w.args, addrs)
        w.unfused = Unfused(loop, args, w.loop, w.args, w.flowcache)
        w.loop, w.args, w.flowcache = loop, args, fc
    progress_step(f"stage {s} unfused ({', '.join(sp.name for sp in rt.specs[s]) or 'dispatch'}) and its loop",
                  lambda: loop.compile(tuple(typeof(a) for a in ws[0].args)))
    return True


def _fresh(spec):
    """NF `spec` loaded anew from its edited source: a library NF's modules
    (a package's too) are reloaded, a file's NF re-read from its file."""
    import importlib
    import sys

    from pynf.nf import NFError, load
    mod = getattr(spec.forms[0].py_func, "__module__", "") or ""
    if mod.startswith("pynf.nfs."):
        top = ".".join(mod.split(".")[:3])
        try:
            for name in sorted((m for m in list(sys.modules) if m == top or m.startswith(top + ".")),
                               key=lambda m: -m.count(".")):
                importlib.reload(sys.modules[name])
        except Exception as e:  # noqa: BLE001 - the author's edit: any error is theirs
            raise NFError(f"nf reload {spec.name}: {type(e).__name__}: {e}") from None
        return load(spec.name)
    return load(f"{spec.source}:{spec.name}")


def reload_nf(rt, name, timeout=5.0):
    """`pynf ctl nf reload NAME`: NF NAME's edited code, compiled alone, runs
    from the next burst in every replica (through its stage's unfused
    loop), and its stage is fused again in the background. Its state is
    kept when its type (the state's layout) is unchanged, else made anew.
    Its files, verbs, settings and slow-path handler stay those it started
    with. Returns a line saying what happened."""
    from pynf.errors import UsageError
    places = [(s, j) for s, ss in enumerate(rt.specs) for j, sp in enumerate(ss) if sp.name == name]
    if not places:
        raise UsageError(f"nf reload: no NF {name!r} in this chain")
    if not rt.running:
        raise UsageError("nf reload: the chain is not running")
    t0 = time.perf_counter()
    old = rt.specs[places[0][0]][places[0][1]]
    new = _fresh(old)
    if new.drops != old.drops:
        raise UsageError(f"nf reload: {name}'s drop reasons changed ({', '.join(new.drops)}): restart pynf")
    kept = True
    for s, j in places:
        cfg = rt.configs[s][j]
        spec = new.chosen(cfg)
        if spec.per_packet != old.per_packet:
            raise UsageError(f"nf reload: {name} changed between per-packet and burst form: restart pynf")
        specs = list(rt.specs[s])
        specs[j] = spec
        ws = [w for w in rt.workers if w.stage == s]
        fresh = new.make_state(cfg)
        carried = {id(w): _carry(w.states[j], fresh) for w in ws}
        same = all(c is not None for c in carried.values())
        kept = kept and same
        states = {id(w): (carried[id(w)] if same else (fresh if w is ws[0] else new.make_state(cfg))) for w in ws}
        old_specs = rt.specs[s]
        rt.specs[s] = specs                     # (the fused stage to come is generated from these)
        try:
            jobs = _reload_jobs(rt, s, j, ws, states)
        except BaseException:
            rt.specs[s] = old_specs
            raise
        for w, job in jobs:
            rt.mail.each_worker([w], job, timeout)
    rt.fuser.start()
    ms = (time.perf_counter() - t0) * 1e3
    return (f"nf reload {name}: its new code runs in every replica ({ms:.0f} ms); its state "
            f"{'kept' if kept else 'made anew (its layout changed)'}; the stage is fused again in the background\n")


def _carry(old, fresh):
    """The running state `old` as the new code's state type (the same arrays
    in the new module's namedtuple class, where the fields and their types
    are the same), or None when the layout changed."""
    if typeof(old) == typeof(fresh):
        return old
    cls = type(fresh)
    if getattr(cls, "_fields", None) is not None and getattr(type(old), "_fields", None) == cls._fields:
        moved = cls(*old)
        if typeof(moved) == typeof(fresh):
            return moved
    return None


def _reload_jobs(rt, s, j, ws, states):
    """Per worker of stage s: the job that points it at the unfused loop
    with NF j's new code (and state), the fused loop to come recorded."""
    base = sum(len(x) for x in rt.specs[:s])
    fused_mod = stagemod.compile_stage(rt.specs[s], base, [sp.written(c) for sp, c in zip(rt.specs[s], rt.configs[s])],
                                       [sp.cacheable(c) and rt.opts.flow_cache[0] != 0
                                        for sp, c in zip(rt.specs[s], rt.configs[s])])
    fused_loops = loops.compile_loops(fused_mod, len(rt.specs[s]), rt.io.loop_parts)
    jobs = []
    loops_by_kind = {}
    w0, spec = ws[0], rt.specs[s][j]
    st0 = states[id(w0)]
    compile_in_child(rt, [("nf", _token(spec), spec.forms[0].name, _sig(spec, w0.args[0], w0.args[1], st0))],
                     _free_cores(rt))
    for w in ws:
        st = list(w.states)
        st[j] = states[id(w)]
        addrs = _addresses(rt.specs[s], w, st)
        if addrs is None:
            raise RuntimeFailure(f"nf reload: {rt.specs[s][j].name}'s function returns a value: restart pynf")
        if w.kind not in loops_by_kind:
            loops_by_kind[w.kind] = _unfused_loop(rt, s, w.kind, st)
        loop = loops_by_kind[w.kind]
        fused_args = list(w.unfused.fused_args if w.unfused is not None else w.args)
        fused_args[A_STATES + j] = st[j]
        fcache = flowcache.ReplicaCache(rt.opts.flow_cache[0], fused_mod.FC_VW, rt.opts.flow_cache[1], rt.ctx.flows,
                                        w.ws, w.nfstat, rt.hz)
        fused_args[A_FLOWCACHE] = fcache.arg
        args, fc = _unfused_args(rt, w, fused_args, addrs)
        loop.compile(tuple(typeof(a) for a in args))          # (before the swap: no worker waits)
        u = Unfused(loop, args, getattr(fused_loops, loops.loop_name(*w.kind)), fused_args, fcache)

        def job(x, u=u, fc=fc, new_state=st[j]):
            x.states[j] = new_state
            x.unfused = u
            x.loop, x.args, x.flowcache = u.loop, u.args, fc
        jobs.append((w, job))
    return jobs


# ---- compiling in a child process ----

def _free_cores(rt):
    """The CPUs this process may use that no worker polls, or None."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return set(os.sched_getaffinity(0)) - {w.core for w in rt.workers} or None


def _token(spec):
    """How a child process loads NF `spec`: its name (the library) or FILE:NAME."""
    mod = getattr(spec.forms[0].py_func, "__module__", "") or ""
    return spec.name if mod.startswith("pynf.nfs.") else f"{spec.source}:{spec.name}"


def compile_in_child(rt, jobs, cores=None):
    """Compile `jobs` in a child process into the compile cache: ("loop",
    generated module name, attribute, arg types) or ("nf", token, form
    name, arg types). True when the child compiled them all."""
    import pickle
    import subprocess
    import sys

    from pynf.compiler import cache
    tokens = sorted({_token(sp) for ss in rt.specs for sp in ss})
    try:
        blob = pickle.dumps(jobs)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False            # (types of a module since reloaded: compile here)
    head = {"path": list(sys.path), "tokens": tokens, "stages": os.path.join(cache.cache_dir(), "stages"),
            "cores": sorted(cores or ()), "jobs": blob}
    try:
        # its own session, output nowhere: it finishes (and fills the cache for
        # the next run) even when this run ends first, or is stopped by Ctrl-C
        p = subprocess.run([sys.executable, "-c", "from pynf.runtime.fuse import child; child()"],
                           input=pickle.dumps(head), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, timeout=600)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0


def child():
    """The child process of compile_in_child: reads its work on stdin."""
    import pickle
    import sys
    head = pickle.load(sys.stdin.buffer)
    sys.path[:] = head["path"] + [head["stages"]]
    if head["cores"] and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, head["cores"])
    import importlib

    from pynf.nf import load
    for t in head["tokens"]:
        load(t)                                 # (the NFs' modules: their classes are in the types)
    for kind, where, attr, sig in pickle.loads(head["jobs"]):
        if kind == "loop":
            getattr(importlib.import_module(where), attr).compile(sig)
        else:
            spec = load(where)
            next(f for f in spec.forms if f.name == attr).kernel.compile(sig)


class Fuser:
    """Compiles the fused loops of the stages that started unfused, in a
    background thread, and swaps each in as it is ready."""

    def __init__(self, rt, say=None):
        self.rt, self.say = rt, say or (lambda line: None)
        self.thread = None          # (None when no compile is at work: start() makes one)
        self.error = None
        self.swapped = []           # (stage, kind, compile seconds)
        self.over = False
        self.lock = threading.Lock()

    def pending(self):
        return [w for w in self.rt.workers if getattr(w, "unfused", None) is not None]

    def start(self):
        """Fuse what runs unfused, in a background thread (one at a time:
        a thread already at work takes what is new when it is done)."""
        with self.lock:
            if self.pending() and self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True, name="pynf-fuse")
                self.thread.start()

    def finish(self):
        """The run is over: it ends at once. A compile still going goes on in
        its child process and fills the cache for the next run."""
        self.over = True
        thread = self.thread
        if thread is not None and thread.is_alive():
            stages = sorted({w.stage for w in self.pending()})
            self.say(f"pynf: stage(s) {', '.join(map(str, stages))} ran unfused; their fused code goes on "
                     f"compiling in the background, for the next run")

    def _run(self):
        rt = self.rt
        failed = set()
        free = _free_cores(rt)
        if free:                            # compile beside the workers, not on their cores
            os.sched_setaffinity(0, free)
        while True:
            with self.lock:
                todo = [w for w in self.pending() if id(w.unfused.fused_loop) not in failed]
                if not todo or self.over:
                    self.thread = None          # (start() makes another when there is more)
                    return
            u = todo[0].unfused
            t0 = time.perf_counter()
            sig = tuple(typeof(a) for a in u.fused_args)
            mod = u.fused_loop.py_func.__module__
            try:
                if not (compile_in_child(rt, [("loop", mod, u.fused_loop.py_func.__name__, sig)], free)
                        and is_cached(u.fused_loop, sig)):
                    u.fused_loop.compile(sig)           # (here, then)
            except Exception as e:  # noqa: BLE001 - a background compile: said, and the stage stays unfused
                failed.add(id(u.fused_loop))
                self.error = e
                self.say(f"pynf: stage {todo[0].stage} stays unfused: its fused code does not compile ({e})")
                continue
            secs = time.perf_counter() - t0
            if self.over:
                continue
            loop = u.fused_loop
            group = [x for x in self.pending() if x.unfused.fused_loop is loop]
            rt.mail.each_worker(group, functools.partial(_swap, loop=loop))
            self.swapped.append((todo[0].stage, todo[0].kind, secs))
            self.say(f"pynf: stage {todo[0].stage} fused: compiled in {secs:.1f} s while running, "
                     f"swapped in between bursts")


def _swap(w, loop):
    u = w.unfused
    if u is None or u.fused_loop is not loop:       # (an nf reload came between)
        return
    w.loop, w.args, w.flowcache = u.fused_loop, u.fused_args, u.fused_cache
    w.unfused = None
