"""`pynf ctl` commands: what the control socket runs against a live Runtime.

A command is a list of words (`route add 10.0.0.0/8 1`). The framework's
own are here: help, stats, set, reload and scale; the rest are the verbs
the chain's NFs declare (pynf.nf.declare.Verb, e.g. pynf/nfs/l3fwd.py's
"route add"): the longest verb whose words begin the command runs, with
the words after it, checked against its usage. It gets an NFControl and
returns text (a query) or a Change.

Every change follows one rule: check and build everything first, off the
fast path (parse the file, compile the rule set, size the tables), and only
then hand the change to the workers, who apply it between bursts
(pynf.runtime.mailbox: control / replace_state) in every replica; the command returns when
all have it. A bad command or file raises UsageError / ConfigError before
anything is handed over, so the running state stays as it was. Replicas hold
the same control state, so a change that can still fail in a worker (a full
table) fails alike in each and leaves each as it was. One command runs at a
time (a lock), so two operators cannot interleave halves of two changes.
"""
import json
import textwrap
import threading

from pynf.errors import UsageError
from pynf.nf.declare import FRAMEWORK, Change


class NFControl:
    """What an NF's verbs may do to their NF in a running chain."""

    def __init__(self, rt, name):
        self.rt, self.name = rt, name
        self.spec = next(sp for ss in rt.specs for sp in ss if sp.name == name)

    @property
    def ctx(self):
        return self.rt.ctx

    @property
    def config(self):
        """The NF's configuration in force."""
        for ss, cs in zip(self.rt.specs, self.rt.configs):
            for sp, cfg in zip(ss, cs):
                if sp.name == self.name:
                    return cfg
        return None

    def states(self):
        """The replicas' states (read them; change them only through a Change)."""
        return self.rt.mail.states(self.name)

    def read(self, fn):
        """fn(state) in every replica, between bursts (a consistent read)."""
        self.rt.mail.control(self.name, fn)

    def apply(self, change):
        """Hand a Change to every replica, between bursts; returns its text."""
        if change.new is not None:
            self.rt.mail.replace_state(self.name, change.new)
        if change.each is not None:
            self.rt.mail.control(self.name, change.each)
        if change.config is not None:
            for ss, cs in zip(self.rt.specs, self.rt.configs):
                for j, sp in enumerate(ss):
                    if sp.name == self.name:
                        cs[j] = change.config
        return change.text


def words(args, lo, hi, usage):
    """args if lo <= len(args) <= hi (hi None: no limit), else UsageError naming the usage."""
    if len(args) < lo or (hi is not None and len(args) > hi):
        raise UsageError(f"usage: {usage}")
    return args


def help_text(verbs, width=30, columns=80):
    """`pynf ctl help`: the framework's commands, then (nf, Verb) pairs, in
    `columns` (a usage too long for its column gets a line of its own)."""
    rows = [(f"{w} {a}".strip(), h) for w, a, h in FRAMEWORK]
    rows += [(v.usage, f"{name}: {v.help}") for name, v in verbs]
    out = ["pynf ctl [--socket PATH] COMMAND"]
    for usage, h in rows:
        lines = textwrap.wrap(h, columns - width - 3, break_on_hyphens=False) or [""]
        if len(usage) > width:
            out.append(f"  {usage}")
            lines = [""] + lines[:]
            out += [f"  {'':<{width}s} {t}" for t in lines[1:]]
            continue
        out.append(f"  {usage:<{width}s} {lines[0]}")
        out += [f"  {'':<{width}s} {t}" for t in lines[1:]]
    return "\n".join(out) + "\n"


class Commands:
    """The command table of one running chain."""

    def __init__(self, rt, rates=None):
        self.rt = rt
        self.rates = rates
        self.lock = threading.Lock()
        self.verbs = {}             # words tuple -> (nf name, Verb)
        for ss in rt.specs:
            for sp in ss:
                for v in sp.verbs:
                    self.verbs[tuple(v.words.split())] = (sp.name, v)

    def run(self, argv):
        """Run one command; returns its text (stats --json: JSON)."""
        if not argv:
            raise UsageError("want a command: " + ", ".join(self.names()))
        noun, rest = argv[0], list(argv[1:])
        with self.lock:
            if noun == "help":
                words(rest, 0, 0, "help")
                return help_text([self.verbs[k] for k in sorted(self.verbs)])
            if noun == "stats":
                return self.stats(rest)
            if noun == "set":
                return self.set(rest)
            if noun == "reload":
                words(rest, 0, 0, "reload")
                return self.reload()
            if noun == "scale":
                return self.scale(rest)
            if noun == "nf":
                words(rest, 2, 2, "nf reload NAME")
                if rest[0] != "reload":
                    raise UsageError("usage: nf reload NAME")
                from pynf.runtime.fuse import reload_nf
                return reload_nf(self.rt, rest[1])
            verb = self._verb(argv)
            if verb is not None:
                (name, v), args = verb
                return self._run_verb(name, v, args)
        raise UsageError(f"unknown command {noun!r} (commands: {', '.join(self.names())})")

    def _verb(self, argv):
        """((nf, Verb), the words after it) of the longest verb that begins
        argv; None if none does. A known noun with no matching verb is a
        UsageError listing that noun's verbs."""
        for k in range(len(argv), 0, -1):
            if tuple(argv[:k]) in self.verbs:
                return self.verbs[tuple(argv[:k])], list(argv[k:])
        same = [v.usage for key, (_, v) in sorted(self.verbs.items()) if key[0] == argv[0]]
        if same:
            raise UsageError("usage: " + " | ".join(same))
        return None

    def _run_verb(self, name, v, args):
        lo, hi = v.arity()
        words(args, lo, hi, v.usage)
        ctl = NFControl(self.rt, name)
        res = v.run(ctl, args)
        return ctl.apply(res) if isinstance(res, Change) else res

    def names(self):
        return [w for w, _, _ in FRAMEWORK] + sorted({k[0] for k in self.verbs})

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
        from pynf.errors import is_decimal
        words(args, 2, 2, "scale STAGE REPLICAS")
        if not all(is_decimal(a) for a in args):
            raise UsageError("usage: scale STAGE REPLICAS (numbers; STAGE as in the report's stages, 0 first)")
        return self.rt.mail.scale(int(args[0]), int(args[1]))

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
        return ctl.apply(Change(f"{name}.{k} = {getattr(new, k)!r}\n", each=lambda st: live[k](st, new),
                                config=new))

    def reload(self):
        """Re-read the files given at start (each through the verb its NF
        declares for it); every file is checked before any is applied, and
        one that fails changes nothing."""
        todo = []
        for ss in self.rt.specs:
            for sp in ss:
                for f in sp.files:
                    path = self.rt.ctx.file(f.key)
                    if path and f.reload:
                        todo.append((sp.name, next(v for v in sp.verbs if v.words == f.reload), path))
        if not todo:
            return "nothing to reload (no NF was given a file it reloads)\n"
        prepared = []
        for name, v, path in todo:        # check every file first
            ctl = NFControl(self.rt, name)
            prepared.append((ctl, v.run(ctl, [path])))
        return "".join(ctl.apply(c) for ctl, c in prepared)

    def _nf(self, name):
        for ss in self.rt.specs:
            for sp in ss:
                if sp.name == name:
                    return NFControl(self.rt, name)
        raise UsageError(f"no NF {name!r} in this chain")
