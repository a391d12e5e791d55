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
import dataclasses
import importlib
import importlib.util
import inspect
import math
import os
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
class NFSpec:
    name: str
    kernel: object              # the Numba dispatcher (a plain function without the JIT)
    py_func: object             # the undecorated Python function
    drops: tuple = ()
    config: type = None         # frozen dataclass with from_context(ctx), or None
    state: object = None        # config -> tuple of arrays, or None
    source: str = ""            # file the NF is defined in
    line: int = 0
    doc: str = ""
    reads: frozenset = frozenset()
    writes: frozenset = frozenset()
    slow: object = None         # slow-path handler (sp, frame, code), or None
    writes_for: object = None   # config -> the fields written under it (None: all of `writes`)
    ctl: dict = None            # `pynf ctl` nouns -> handler(nfctl, words) (pynf.control.commands)
    live: dict = None           # settings that may change while running -> apply(state, config)
    stats: object = None        # [replica states] -> {name: number}, for `stats` and /metrics
    migrate: object = None      # (from state, to state, bucket mask) -> entries moved (scaling)
    per_packet: bool = False    # fn(pkts, i, state) on each live packet; the stage writes the loop
    cache: object = None        # pynf.flowcache.Cacheable, or None: never served from the flow cache

    def written(self, config):
        """The header fields this NF may write under `config`: what its
        `writes=` declares for it, never more than the source analysis found."""
        if self.writes_for is None or config is None:
            return self.writes
        w = self.writes_for(config)
        return self.writes if w is None else self.writes & frozenset(w)

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
        cfg = maker(ctx) if maker is not None else self.config()
        return apply_settings(self.name, cfg, settings)     # (validates, settings or not)

    def make_state(self, config):
        if self.state is None:
            return ()
        return self.state(config) if self.config is not None else self.state()


_REGISTRY = {}


def nf(name, drops=(), config=None, state=None, slow=None, writes=None, ctl=None, live=None,
       stats=None, migrate=None, per_packet=False, cache=None):
    """Register the decorated burst function as NF `name` (the CLI token).

    writes: a function config -> the header fields the NF writes under that
    configuration (None: every field the source analysis found), for an NF
    with modes that write different fields, so that a stage writes back only
    what the mode in use can change.

    slow: a Python function (sp, frame, code) that receives the packets the
    NF hands over with `slowpath(code)`; see pynf.control.slowpath.

    ctl: {noun: handler(nfctl, words) -> text}: the NF's `pynf ctl NOUN ...`
    commands (pynf.control.commands has the NFControl they get).
    live: {setting: apply(state, new_config)}: the settings `pynf ctl set`
    may change while the NF runs; apply makes a replica's state follow.
    stats: [the states of all replicas] -> {name: number}, read live on the
    control path (names ending in _total are counters, others gauges), for
    the report's nfs.<nf>.state, `pynf ctl stats` and /metrics
    (pynf_<nf>_<name>).

    per_packet: the function is fn(pkts, i, state), called for each live
    packet i (the stage writes the loop over the burst and inlines it):
    simpler for NFs that treat each packet alone; an NF that prefetches
    across a burst (lb, l3fwd) keeps the burst form.

    cache: a pynf.flowcache.Cacheable: what the NF does to a packet depends
    only on its flow key and the NF's state (changed only by `pynf ctl`),
    so the stage's flow cache may apply its recorded effect instead of
    running it (pynf.flowcache has the contract).

    migrate: (from state, to state, moving) -> entries moved: an NF that
    keeps state per flow moves the entries of the flows whose steering
    bucket (hash5 of the packet's 5-tuple & (BUCKETS - 1), pynf.io.ring)
    is set in the bool array `moving`, when `pynf ctl scale` moves those
    buckets from one replica to another (both paused, between bursts)."""
    if not _NAME.match(name):
        raise NFError(f"NF name {name!r} must be snake_case")
    for r in drops:
        if not _NAME.match(r):
            raise NFError(f"NF {name}: drop reason {r!r} must be snake_case")

    def wrap(fn):
        params = list(inspect.signature(fn).parameters)
        want = ("pkts, i, state", 3) if per_packet else ("pkts, live, n, state", 4)
        if len(params) != want[1]:
            raise NFError(f"NF {name}: the function must take ({want[0]}), "
                          f"not ({', '.join(params)})")
        src = inspect.getsourcefile(fn) or ""
        line = inspect.getsourcelines(fn)[1] if src else 0
        reads, wrote = fields_used(fn)
        kern = hot(inline="always")(fn) if per_packet else hot(fn)
        spec = NFSpec(name=name, kernel=kern, py_func=fn, drops=tuple(drops), per_packet=per_packet,
                      config=config, state=state, slow=slow, writes_for=writes,
                      ctl=dict(ctl or {}), live=dict(live or {}), stats=stats, migrate=migrate, cache=cache,
                      source=src, line=line,
                      doc=inspect.getdoc(sys.modules.get(fn.__module__)) or "",
                      reads=frozenset(reads), writes=frozenset(wrote))
        prev = _REGISTRY.get(name)
        if prev is not None and os.path.realpath(prev.source) != os.path.realpath(src):
            raise NFError(f"NF {name!r} is defined twice: {prev.source} and {src}")
        _REGISTRY[name] = spec
        return spec
    return wrap


def registered():
    return dict(_REGISTRY)


def kernel(name):
    """The compiled function of a registered NF (used by generated stages)."""
    return _REGISTRY[name].kernel


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
    d = os.path.dirname(nfs.__file__)
    return [f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")]
