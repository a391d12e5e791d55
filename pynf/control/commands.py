"""`pynf ctl` commands: what the control socket runs against a live Runtime.

A command is a list of words (`route add 10.0.0.0/8 1`). The framework's
own are here: stats, set, reload and scale; the rest belong to the NF that
declares the noun (`@nf(ctl={"route": handler})`, e.g. nfs/l3fwd.py): the
handler gets an NFControl and the words after the noun, and returns text
(a query) or a Change: the checked, prepared change and what to say once it
is applied.

Every change follows one rule: check and build everything first, off the
fast path (parse the file, compile the rule set, size the tables), and only
then hand the change to the workers, who apply it between bursts
(Runtime.control / replace_state) in every replica; the command returns when
all have it. A bad command or file raises UsageError / ConfigError before
anything is handed over, so the running state stays as it was. Replicas hold
the same control state, so a change that can still fail in a worker (a full
table) fails alike in each and leaves each as it was. One command runs at a
time (a lock), so two operators cannot interleave halves of two changes.
"""
import json
import threading
from dataclasses import dataclass

from pynf.errors import UsageError

# the files a run may be given, and the command that reloads each (SIGHUP, `reload`)
RELOADS = (("acl_rules", ("acl", "load")), ("routes", ("route", "load")), ("backends", ("lb", "load")))


class NFControl:
    """What an NF's ctl handler may do to its NF in a running chain."""

    def __init__(self, rt, name):
        self.rt, self.name = rt, name
        self.spec = next(sp for ss in rt.specs for sp in ss if sp.name == name)

    @property
    def ctx(self):
        return self.rt.ctx

    @property
    def config(self):
        for ss, cs in zip(self.rt.specs, self.rt.configs):
            for sp, cfg in zip(ss, cs):
                if sp.name == self.name:
                    return cfg
        return None

    def set_config(self, cfg):
        """Record the configuration now in force (what `list`, `set` and reload read)."""
        for ss, cs in zip(self.rt.specs, self.rt.configs):
            for j, sp in enumerate(ss):
                if sp.name == self.name:
                    cs[j] = cfg

    def states(self):
        return self.rt.states(self.name)

    def control(self, fn):
        self.rt.control(self.name, fn)

    def replace(self, make):
        self.rt.replace_state(self.name, make)


@dataclass
class Change:
    """A prepared change: apply() hands it to the workers; text says what it did."""
    apply: object
    text: str


def words(args, lo, hi, usage):
    """args if lo <= len(args) <= hi, else UsageError naming the usage."""
    if not lo <= len(args) <= hi:
        raise UsageError(f"usage: {usage}")
    return args


class Commands:
    """The command table of one running chain."""

    def __init__(self, rt, rates=None):
        self.rt = rt
        self.rates = rates
        self.lock = threading.Lock()
        self.nouns = {}
        for ss in rt.specs:
            for sp in ss:
                for noun, fn in (sp.ctl or {}).items():
                    self.nouns[noun] = (sp.name, fn)

    def run(self, argv):
        """Run one command; returns its text (stats --json: JSON)."""
        if not argv:
            raise UsageError("want a command: " + ", ".join(self.names()))
        noun, rest = argv[0], list(argv[1:])
        with self.lock:
            if noun == "stats":
                return self.stats(rest)
            if noun == "set":
                return self.set(rest)
            if noun == "reload":
                words(rest, 0, 0, "reload")
                return self.reload()
            if noun == "scale":
                return self.scale(rest)
            if noun in self.nouns:
                name, fn = self.nouns[noun]
                res = fn(NFControl(self.rt, name), rest)
                if isinstance(res, Change):
                    res.apply()
                    return res.text
                return res
        raise UsageError(f"unknown command {noun!r} (commands: {', '.join(self.names())})")

    def names(self):
        return ["stats", "set", "reload", "scale", *sorted(self.nouns)]

    def stats(self, args):
        from pynf.runtime.report import report
        words(args, 0, 1, "stats [--json]")
        if args and args[0] != "--json":
            raise UsageError("usage: stats [--json]")
        rep = report(self.rt)
        rep["rates"] = self.rates.rates() if self.rates is not None else {}
        if args:
            return json.dumps(rep)
        import io

        from pynf.cli.ui import print_rates, print_report
        out = io.StringIO()
        print_report(rep, out, width=110)
        print_rates(rep["rates"], out)
        return out.getvalue()

    def scale(self, args):
        from pynf.control.scale import scale
        from pynf.errors import is_decimal
        words(args, 2, 2, "scale STAGE REPLICAS")
        if not all(is_decimal(a) for a in args):
            raise UsageError("usage: scale STAGE REPLICAS (numbers; STAGE as in the report's stages, 0 first)")
        return scale(self.rt, int(args[0]), int(args[1]))

    def set(self, args):
        from pynf.nf import apply_settings
        words(args, 1, 1, "set NF.KEY=VALUE")
        key, eq, text = args[0].partition("=")
        name, dot, k = key.partition(".")
        if not eq or not dot:
            raise UsageError("usage: set NF.KEY=VALUE")
        ctl = self._nf(name)
        live = ctl.spec.live or {}
        if k not in live:
            which = ", ".join(sorted(live)) or "none"
            raise UsageError(f"set {name}.{k}: not a setting that changes while running "
                             f"({name}'s live settings: {which})")
        new = apply_settings(name, ctl.config, {k: text})
        ctl.control(lambda st: live[k](st, new))
        ctl.set_config(new)
        return f"{name}.{k} = {getattr(new, k)!r}\n"

    def reload(self):
        """Re-read the files given at start (as each NF's `load`); every file is
        checked before any is applied, and one that fails changes nothing."""
        todo = []
        for field, cmd in RELOADS:
            path = getattr(self.rt.ctx, field, None)
            if path and cmd[0] in self.nouns:
                todo.append((path, cmd))
        if not todo:
            return "nothing to reload (no rules, routes or backends file was given)\n"
        changes = []
        for path, (noun, verb) in todo:        # check every file first
            name, fn = self.nouns[noun]
            changes.append(fn(NFControl(self.rt, name), [verb, path]))
        for c in changes:
            c.apply()
        return "".join(c.text for c in changes)

    def _nf(self, name):
        for ss in self.rt.specs:
            for sp in ss:
                if sp.name == name:
                    return NFControl(self.rt, name)
        raise UsageError(f"no NF {name!r} in this chain")
