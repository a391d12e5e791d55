"""The NF API: one decorated function per NF, a registry, drop verdicts.

An NF is a burst function over a pynf.packet.batch.Batch:

    from pynf.nf import nf, DROP

    @nf("ttl_guard", drops=("ttl_low",))
    def ttl_guard(pkts, live, n, state):
        for j in range(n):
            i = live[j]              # only packets still alive are listed
            if pkts.ttl[i] < 8:
                pkts.port[i] = DROP  # counted as 'ttl_low'

`live[:n]` lists the indices of the packets that no earlier NF dropped.
Set `pkts.port[i]` to an output port (>= 0) or to `drop(k)` (DROP is
drop(0)) to drop it under the NF's k-th declared reason. Change header
fields in place; the stage writes them back with correct checksums.

State is preallocated before the first packet: `config` is a frozen
dataclass whose `from_context(ctx)` builds it from the run (files, traffic);
`state(config)` returns a tuple of arrays (a namedtuple is best) that is
passed as `state`. The function itself is compiled by Numba (nogil, no
Python objects, no allocation); run it under NUMBA_DISABLE_JIT=1 to test
it as plain Python.

NFs live in pynf/nfs/<name>.py; `pynf run --rtc acl,path/to/mine.py:counter`
loads one from any file.
"""
import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import math
import os
import pkgutil
import re
import sys
import textwrap
from dataclasses import dataclass

from pynf.compiler.jit import hot
from pynf.errors import UsageError

DROP = -1

# Verdicts >= 0: an output port (MAX_PORT at most); SLOWPATH .. SLOWPATH+255:
# hand the packet to the NF's slow path (see `slowpath`). A stage turns the
# latter into a punt code (pynf.packet.drops.punt_code) that names the NF.
MAX_PORT = 1023
SLOWPATH = 0x4000


@hot(inline="always")
def drop(k):
    """Verdict that drops a packet under the NF's k-th declared reason."""
    return -1 - k


@hot(inline="always")
def slowpath(k):
    """Verdict that hands a packet to the NF's slow-path handler (Python,
    off the fast path) with a small code k (0..255) saying why."""
    return SLOWPATH + k


def apply_settings(name, cfg, settings):
    """--set NF.KEY=VALUE overrides on a frozen config dataclass; the result
    is validated (its validate(), where it has one) either way."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, text in settings.items():
        if key not in fields:
            raise UsageError(f"--set {name}.{key}: no such setting "
                             f"(settings: {', '.join(sorted(fields))})")
        cur = getattr(cfg, key)
        try:
            if isinstance(cur, bool):
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(text)
                val = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(cur, int):
                val = int(text, 0)
            elif isinstance(cur, float):
                val = float(text)
                if not math.isfinite(val):
                    raise ValueError(text)
            else:
                val = text
        except ValueError:
            kind = "finite float" if isinstance(cur, float) else type(cur).__name__
            raise UsageError(f"--set {name}.{key}={text}: want a {kind}") from None
        changes[key] = val
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Header fields the stage writes back when an NF changes them.
WRITABLE = ("eth_dst", "eth_src", "src_ip", "dst_ip", "ttl", "sport", "dport")


def fields_used(fn, arg=0, seen=None):
    """(read, written) Batch fields of an NF function, from its source.

    The stage compiler specialises parsing and write-back to these, so a
    stage whose NFs never change the MACs never compares them. The batch
    handed to a helper function of the NF's module (a plain or @hot
    function, defined before the NF: the analysis runs at decoration) is
    followed into it; anything else the analysis cannot see
    through (the batch handed elsewhere, a field array taken as a whole)
    counts as read and written, so it is conservative: at worst a field is
    written back that did not change.
    """
    everything = (set(WRITABLE), set(WRITABLE))
    seen = set() if seen is None else seen
    fn = getattr(fn, "py_func", fn)
    if fn in seen:
        return set(), set()
    seen.add(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return everything
    func = tree.body[0]
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(func.args.args) <= arg:
        return everything
    pk = func.args.args[arg].arg
    parents = {}
    for node in ast.walk(func):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    reads, writes = set(), set()
    for node in ast.walk(func):
        if not (isinstance(node, ast.Name) and node.id == pk) or node is func.args.args[arg]:
            continue
        attr = parents.get(node)
        call = attr if isinstance(attr, ast.Call) and node in attr.args else None
        if call is not None and isinstance(call.func, ast.Name):
            helper = getattr(fn, "__globals__", {}).get(call.func.id)
            if helper is not None and callable(getattr(helper, "py_func", helper)):
                r, w = fields_used(helper, call.args.index(node), seen)
                reads |= r
                writes |= w
                continue
        if not isinstance(attr, ast.Attribute):
            return everything                        # the batch escapes
        sub = parents.get(attr)
        if isinstance(sub, ast.Subscript) and sub.value is attr:
            (writes if isinstance(sub.ctx, ast.Store) else reads).add(attr.attr)
        else:
            reads.add(attr.attr)
            writes.add(attr.attr)                    # aliased: may be written
    return reads, writes & set(WRITABLE)


class NFError(Exception):
    """A bad NF definition or an NF that fails to compile; says which NF."""


@dataclass
class Form:
    """One compiled form of an NF: its packet function and what it touches.
    An NF has a default form and may add others for configurations that
    need other code (`@spec.form(name, when=...)`), so that a stage runs
    and compiles only the code of the configuration in use."""
    name: str
    kernel: object              # the Numba dispatcher (a plain function without the JIT)
    py_func: object             # the undecorated Python function
    per_packet: bool            # fn(pkts, i, state) on each live packet; else fn(pkts, live, n, state)
    reads: frozenset
    writes: frozenset
    when: object = None         # config -> bool: this form serves it (None: the default form)
    line: int = 0


@dataclass
class NFSpec:
    name: str
    forms: list                 # [Form]: the default first
    drops: tuple = ()
    config: type = None         # frozen dataclass with from_context(ctx), or None
    state: object = None        # config -> tuple of arrays, or None
    source: str = ""            # file the NF is defined in
    line: int = 0
    doc: str = ""
    slow: object = None         # slow-path handler (sp, frame, code), or None
    writes_for: object = None   # config -> the fields written under it (None: all of the form's writes)
    files: tuple = ()           # pynf.nf.declare.File: the input files it reads
    verbs: tuple = ()           # pynf.nf.declare.Verb: its `pynf ctl` commands
    live: dict = None           # settings that may change while running -> apply(state, config)
    stats: object = None        # [replica states] -> {name: number}, for `stats` and /metrics
    migrate: object = None      # (from state, to state, bucket mask) -> entries moved (scaling)
    cache: object = None        # pynf.flowcache.Cacheable, or None: never served from the flow cache
    counters: tuple = ()        # names of state.counters[k], summed over replicas into the stats
    key: str = None             # what its state is keyed by (pynf.packet.keys), or None: no per-key state

    # the default form's parts (what a single-form NF is)
    kernel = property(lambda self: self.forms[0].kernel)
    py_func = property(lambda self: self.forms[0].py_func)
    per_packet = property(lambda self: self.forms[0].per_packet)
    reads = property(lambda self: frozenset().union(*(f.reads for f in self.forms)))
    writes = property(lambda self: frozenset().union(*(f.writes for f in self.forms)))

    def form(self, name, when):
        """Decorator: another form of this NF, for the configurations `when`
        (config -> bool) accepts; the first form that accepts serves."""
        if not _NAME.match(name) or any(f.name == name for f in self.forms):
            raise NFError(f"NF {self.name}: form name {name!r} must be snake_case and new")

        def wrap(fn):
            f = _form(self.name, name, fn, when, ndrops=len(self.drops))
            self.forms.append(f)
            return f
        return wrap

    def form_for(self, config):
        """The form that runs under `config`."""
        for f in self.forms[1:]:
            if config is not None and f.when(config):
                return f
        return self.forms[0]

    def chosen(self, config):
        """This NF as it runs under `config`: its one form there (what a
        stage compiles and calls); everything else as declared."""
        f = self.form_for(config)
        return self if len(self.forms) == 1 else dataclasses.replace(self, forms=[f])

    def written(self, config):
        """The header fields this NF may write under `config`: what its
        form's source analysis found (narrowed by `writes=`, where given)."""
        w = self.form_for(config).writes
        if self.writes_for is None or config is None:
            return w
        narrowed = self.writes_for(config)
        return w if narrowed is None else w & frozenset(narrowed)

    def cacheable(self, config):
        """May the flow cache stand in for this NF under `config`?"""
        return self.cache is not None and self.cache.applies(config)

    def make_config(self, ctx):
        settings = dict(getattr(ctx, "settings", {}).get(self.name, {}))
        if self.config is None:
            if settings:
                raise UsageError(f"--set {self.name}.{next(iter(settings))}: NF {self.name} has no settings")
            return None
        maker = getattr(self.config, "from_context", None)
        with _one_line(self, "configuration"):
            cfg = maker(ctx) if maker is not None else self.config()
            return apply_settings(self.name, cfg, settings)     # (validates, settings or not)

    def make_state(self, config):
        if self.state is None:
            return ()
        with _one_line(self, "state"):
            st = self.state(config) if self.config is not None else self.state()
        if self.counters:
            c = getattr(st, "counters", None)
            if not (hasattr(c, "dtype") and c.dtype.kind == "i" and c.ndim == 1 and len(c) >= len(self.counters)):
                raise NFError(f"NF {self.name}: declares counters={self.counters!r}, so its state wants a field "
                              f"'counters': an int64 array of {len(self.counters)}")
        return st

    def stats_of(self, states):
        """{name: number} for the report, `pynf ctl stats` and /metrics, from
        the states of all replicas: what stats= computes, each declared
        counter (NAME_total, summed), and each map in the state
        (pynf.nf.blocks: FIELD_entries, FIELD_expired_total, ...)."""
        from pynf.nf.blocks import MapState, map_stats
        out = {}
        fields = getattr(states[0], "_fields", ()) if states else ()
        for f in fields:
            if isinstance(getattr(states[0], f), MapState):
                for st in states:
                    for k, v in map_stats(getattr(st, f)).items():
                        out[f"{f}_{k}"] = out.get(f"{f}_{k}", 0) + v
        for k, name in enumerate(self.counters):
            out[f"{name}_total"] = sum(int(st.counters[k]) for st in states)
        if self.stats is not None:
            out.update(self.stats(states))
        return out


@contextlib.contextmanager
def _one_line(spec, what):
    """An error raised by an NF's own set-up code (from_context, validate(),
    the state function) becomes one line naming the NF (NFError: exit 2);
    pynf's own errors (a bad file's line, a bad --set) pass as they are."""
    from pynf.errors import ConfigError
    try:
        yield
    except (UsageError, NFError, ConfigError):
        raise
    except Exception as e:  # noqa: BLE001 - the NF author's code: any error is theirs
        msg = str(e) or type(e).__name__
        if not isinstance(e, ValueError):
            msg = f"{type(e).__name__}: {msg}"
        raise NFError(f"NF {spec.name}: {what}: {msg}") from None


def _check_uses(nf_name, fn, ndrops, line, fields):
    """What can be checked of an NF's function before it compiles: every
    pkts.X it uses is a Batch field, and every drop(k) with k known here (a
    number or a module constant) and every DROP is one of its declared
    reasons. (A k computed at run time that is out of range is counted as
    `bad_verdict`.)"""
    from pynf.packet.batch import Batch
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    unknown = sorted(set(fields) - set(Batch._fields))
    if unknown:
        at = next((n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == unknown[0]), 1)
        raise NFError(f"NF {nf_name} ({inspect.getsourcefile(fn)}:{line + at - 1}): pkts.{unknown[0]} is not "
                      f"a batch field (fields: {', '.join(Batch._fields)})")
    _check_raw(nf_name, fn, 0, line)
    names = getattr(fn, "__globals__", {})
    for node in ast.walk(tree):
        k = None
        if isinstance(node, ast.Name) and node.id == "DROP" and names.get("DROP") is DROP:
            k = 0
        elif (isinstance(node, ast.Call) and len(node.args) == 1
              and getattr(node.func, "id", getattr(node.func, "attr", None)) == "drop"):
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                k = arg.value
            elif isinstance(arg, ast.Name) and arg.id in names:
                k = names[arg.id]
            if not isinstance(k, int) or isinstance(k, bool):
                continue
        if k is not None and not 0 <= k < ndrops:
            said = f"drop({k})" if not isinstance(node, ast.Name) else "DROP (drop(0))"
            raise NFError(f"NF {nf_name} ({inspect.getsourcefile(fn)}:{line + node.lineno - 1}): {said} "
                          f"but it declares {ndrops} drop reason(s)"
                          + ("; name them in @nf(drops=(...))" if ndrops == 0 else f" (drop(0)..drop({ndrops - 1}))"))


RAW = ("mem", "off", "clock")       # batch fields an NF reaches only through helpers


def _check_raw(nf_name, fn, arg, line, seen=None):
    """Refuse pkts.mem / pkts.off / pkts.clock in an NF outside pynf's
    library and in the helpers of its own module it hands the batch to
    (pynf.nf.access and pynf.nf.now are how an NF reads bytes and time)."""
    fn = getattr(fn, "py_func", fn)
    mod = getattr(fn, "__module__", "") or ""
    seen = set() if seen is None else seen
    if mod.startswith("pynf.") or fn in seen:
        return
    seen.add(fn)
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef) or len(func.args.args) <= arg:
        return
    pk = func.args.args[arg].arg
    for node in ast.walk(func):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == pk \
                and node.attr in RAW:
            helper = "now(pkts)" if node.attr == "clock" else "pynf.nf.access (load8, payload, byte, equal, ...)"
            raise NFError(f"NF {nf_name} ({inspect.getsourcefile(fn)}:{first + node.lineno - 1}): "
                          f"pkts.{node.attr} is not part of the NF API: use {helper}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            for k, a in enumerate(node.args):
                if isinstance(a, ast.Name) and a.id == pk:
                    helper = getattr(fn, "__globals__", {}).get(node.func.id)
                    if helper is not None and getattr(getattr(helper, "py_func", helper), "__module__", None) == mod:
                        _check_raw(nf_name, helper, k, line, seen)


def _form(nf_name, name, fn, when, per_packet=None, ndrops=0):
    """A Form of function fn: its signature says burst or per packet."""
    params = list(inspect.signature(fn).parameters)
    if per_packet is not None and len(params) != (3 if per_packet else 4):
        want = "pkts, i, state" if per_packet else "pkts, live, n, state"
        raise NFError(f"NF {nf_name}: the function must take ({want}), not ({', '.join(params)})")
    if len(params) not in (3, 4):
        raise NFError(f"NF {nf_name}: the function must take (pkts, live, n, state) for a burst, "
                      f"or (pkts, i, state) per packet; not ({', '.join(params)})")
    per_packet = len(params) == 3
    reads, wrote = fields_used(fn)
    line = inspect.getsourcelines(fn)[1] if inspect.getsourcefile(fn) else 0
    _check_uses(nf_name, fn, ndrops, line, reads | wrote)
    kern = hot(inline="always")(fn) if per_packet else hot(fn)
    return Form(name, kern, fn, per_packet, frozenset(reads), frozenset(wrote), when, line)


_REGISTRY = {}


def nf(name, drops=(), config=None, state=None, slow=None, writes=None, files=(), verbs=(), live=None,
       stats=None, migrate=None, cache=None, per_packet=None, counters=(), key=None):
    """Register the decorated function as NF `name` (the CLI token).

    The function is fn(pkts, live, n, state) over a burst (live[:n] lists
    the packets no earlier NF dropped), or fn(pkts, i, state) for each live
    packet i (the stage writes the loop over the burst and inlines it:
    simpler for NFs that treat each packet alone; one that prefetches
    across a burst, as lb and l3fwd do, takes the burst). per_packet=True
    or False, where given, says which, and is checked.

    drops: its drop reasons, in drop(k) order. config: a frozen dataclass
    (its from_context(ctx) builds it from the run; --set overrides fields);
    state: config -> the tuple of arrays passed as `state`.

    files, verbs: the input files it reads and the `pynf ctl` commands it
    answers (pynf.nf.declare: File, Verb, Change); the framework makes the
    flags, the commands, their help and reload from them.
    live: {setting: apply(state, new_config)}: the settings `pynf ctl set`
    may change while the NF runs; apply makes a replica's state follow.
    key: what its state is keyed by: "flow" (5-tuple), "src", "dst", a
    header field ("dport", "proto", "in_port", "vlan") or "global"; pynf
    steers packets with the same key to the same replica (pynf.packet.keys).
    None (the default): the NF keeps no state that packets must meet.
    counters: names of the NF's own counters: its state has a field
    `counters` (int64 array) and the NF adds to counters[k] for the k-th
    name; they show as NAME_total with no more code, summed over replicas.
    Maps in the state (pynf.nf.blocks.LruMap) show their entries too.
    stats: [the states of all replicas] -> {name: number}, read live on the
    control path (names ending in _total are counters, others gauges), for
    the report's nfs.<nf>.state, `pynf ctl stats` and /metrics
    (pynf_<nf>_<name>).

    slow: a Python function (sp, frame, code) that receives the packets the
    NF hands over with `slowpath(code)`; see pynf.control.slowpath.

    cache: a pynf.flowcache.Cacheable: what the NF does to a packet depends
    only on its flow key and the NF's state (changed only by `pynf ctl`),
    so the stage's flow cache may apply its recorded effect instead of
    running it (pynf.flowcache has the contract).

    migrate: (from state, to state, moving) -> entries moved: an NF that
    keeps state per flow moves the entries of the flows whose steering
    bucket (hash5 of the packet's 5-tuple & (BUCKETS - 1), pynf.io.ring)
    is set in the bool array `moving`, when `pynf ctl scale` moves those
    buckets from one replica to another (both paused, between bursts).

    writes: config -> the header fields the NF writes under it (None: what
    the source analysis found): for one function whose modes write
    different fields; an NF with a form per mode needs none.

    Forms: `@spec.form("router", when=lambda cfg: cfg.router)` on another
    function gives the NF other code for the configurations `when` accepts
    (each compiled only where used; l3fwd's exact-match and router forms)."""
    if not _NAME.match(name):
        raise NFError(f"NF name {name!r} must be snake_case")
    for r in (*drops, *counters):
        if not _NAME.match(r):
            raise NFError(f"NF {name}: drop reason or counter {r!r} must be snake_case")
    _check_declared(name, files, verbs)
    from pynf.packet.keys import KEYS
    if key is not None and key not in KEYS:
        raise NFError(f"NF {name}: key={key!r}: want one of {', '.join(KEYS)}")

    def wrap(fn):
        src = inspect.getsourcefile(fn) or ""
        form = _form(name, "default", fn, None, per_packet, len(drops))
        spec = NFSpec(name=name, forms=[form], drops=tuple(drops),
                      config=config, state=state, slow=slow, writes_for=writes,
                      files=tuple(files), verbs=tuple(verbs), live=dict(live or {}), stats=stats,
                      migrate=migrate, cache=cache, counters=tuple(counters), key=key, source=src, line=form.line,
                      doc=inspect.cleandoc(sys._getframe(1).f_globals.get("__doc__") or ""))
        prev = _REGISTRY.get(name)
        if prev is not None and os.path.realpath(prev.source) != os.path.realpath(src):
            raise NFError(f"NF {name!r} is defined twice: {prev.source} and {src}")
        _REGISTRY[name] = spec
        return spec
    return wrap


def _check_declared(name, files, verbs):
    from pynf.nf.declare import FRAMEWORK, File, Verb
    said = set()
    for v in verbs:
        if not isinstance(v, Verb) or not v.words.split() or not callable(v.run):
            raise NFError(f"NF {name}: verbs= wants pynf.nf.Verb(words, args, help, run), not {v!r}")
        if v.words in said or v.words.split()[0] in [w for w, _, _ in FRAMEWORK]:
            raise NFError(f"NF {name}: verb {v.words!r} is declared twice or is one of pynf ctl's own")
        said.add(v.words)
    for f in files:
        if not isinstance(f, File) or not re.fullmatch(r"--[a-z][a-z0-9-]*", f.flag):
            raise NFError(f"NF {name}: files= wants pynf.nf.File('--flag', help, reload), not {f!r}")
        if f.reload is not None and f.reload not in said:
            raise NFError(f"NF {name}: file {f.flag} reloads through {f.reload!r}, which is not one of its verbs")


def registered():
    return dict(_REGISTRY)


def kernel(name, form="default"):
    """The compiled function of a registered NF's form (used by generated stages)."""
    return next(f.kernel for f in _REGISTRY[name].forms if f.name == form)


def cache_hook(name, hook):
    """An NF's flow-cache hook (guard, replay, version; used by generated stages)."""
    return getattr(_REGISTRY[name].cache, hook)


def load(token):
    """Resolve a chain token: 'acl' (pynf/nfs/acl.py) or 'path/to/file.py:name'."""
    if ":" in token or token.endswith(".py"):
        path, _, attr = token.rpartition(":") if ":" in token else (token, "", "")
        if not os.path.isfile(path):
            raise NFError(f"{token}: no such NF file {path!r}")
        modname = "pynf_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except NFError:
            raise
        except Exception as e:
            raise NFError(f"{path}: cannot load NF file: {type(e).__name__}: {e}") from None
        found = [v for v in vars(mod).values() if isinstance(v, NFSpec)]
        if attr:
            obj = getattr(mod, attr, None)
            if not isinstance(obj, NFSpec):
                obj = next((s for s in found if s.name == attr), None)
            if obj is None:
                raise NFError(f"{token}: {path} defines no NF {attr!r}")
            return obj
        if len(found) != 1:
            raise NFError(f"{token}: {path} defines {len(found)} NFs; name one as FILE:NAME")
        return found[0]
    if not _NAME.match(token):
        raise NFError(f"unknown NF {token!r}")
    if token not in _REGISTRY:
        try:
            importlib.import_module(f"pynf.nfs.{token}")
        except ModuleNotFoundError as e:
            if e.name == f"pynf.nfs.{token}":
                known = ", ".join(sorted(available()))
                raise NFError(f"unknown NF {token!r} (known: {known})") from None
            raise
    if token not in _REGISTRY:
        raise NFError(f"pynf/nfs/{token}.py registers no NF named {token!r}")
    return _REGISTRY[token]


def available():
    """Names of the NFs in the library (pynf/nfs/)."""
    from pynf import nfs
    return [m.name for m in pkgutil.iter_modules(nfs.__path__) if not m.name.startswith("_")]
