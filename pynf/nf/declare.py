"""What an NF declares besides its packet function: the files it reads, the
`pynf ctl` commands it answers, and the changes those commands make.

    @nf("l3fwd", ...,
        files=[File("--routes", "routes: a.b.c.d/len PORT [NEXTHOP] or a.b.c.d PORT",
                    reload="route load")],
        verbs=[Verb("route add", "PREFIX PORT [NEXTHOP]", "add or replace a route", route_add),
               Verb("route list", "", "the routes in force", route_list), ...])

From these the framework wires everything the NF would otherwise have to
edit framework files for: `pynf run --routes FILE` (and its --help line),
the path in the NF's configuration context (`ctx.file("routes")`), the
`pynf ctl route ...` commands with their usage and `pynf ctl help`, and
SIGHUP / `pynf ctl reload` (the file's `reload` verb, given the path).

A verb's function gets an NFControl (pynf.control.commands: the NF's
configuration, its replicas' states, `read` between bursts) and the words
after the verb, already checked against the verb's arguments. It checks
and builds everything the change needs, off the fast path, and returns
either text (a query) or a Change: the one way a command changes an NF.
The framework hands the Change to every replica between bursts and returns
once all have it; a verb that raises UsageError (or ConfigError) changed
nothing.
"""
from dataclasses import dataclass

# pynf ctl's own commands (pynf.control.commands): no NF verb may begin with one
FRAMEWORK = (("help", "", "this list"),
             ("stats", "[--json]", "the report, live, with the last second's rates"),
             ("set", "NF.KEY=VALUE", "a setting that may change while running"),
             ("reload", "", "re-read the NFs' files given at start (as SIGHUP)"),
             ("scale", "STAGE REPLICAS", "change a stage's replicas (room: run --scale-max N)"),
             ("nf", "reload NAME", "run NF NAME's edited code from the next burst, its state kept where "
                                   "its layout is unchanged"))


@dataclass(frozen=True)
class File:
    """An input file: `pynf run FLAG FILE`; `ctx.file(key)` is its path
    (key: the flag without dashes, '-' as '_'); `reload`, the words of the
    NF's verb that re-reads it (given the path), or None: read at start only."""
    flag: str
    help: str
    reload: str = None

    @property
    def key(self):
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Verb:
    """A `pynf ctl` command: `words` (the noun first: "route add"), its
    arguments as usage shows them ("PREFIX PORT [NEXTHOP]": [X] optional,
    X... one or more, [X...] any number), one line of help, and
    run(nfctl, args) -> Change or text."""
    words: str
    args: str
    help: str
    run: object

    @property
    def usage(self):
        return f"{self.words} {self.args}".strip()

    def arity(self):
        """(fewest, most) argument words the usage allows (most: None, no limit)."""
        return arity(self.args)


@dataclass
class Change:
    """A checked, prepared change, applied between bursts in every replica:
    `each(state)` changes a replica's state in place, or `new(state)`
    returns the state that replaces it (the same Numba types: tables may
    differ in size); `config`, the NF's configuration from then on (what
    `set`, reload and queries read); `text`, what to say once applied."""
    text: str
    each: object = None
    new: object = None
    config: object = None


def arity(args):
    """(fewest, most) words of a usage string; most None for no limit."""
    lo = hi = 0
    unbounded = False
    depth = 0
    for tok in args.split():
        opens, closes = tok.count("["), tok.count("]")
        word = tok.strip("[]")
        optional = depth > 0 or opens > 0
        if word:
            if word.endswith("..."):
                unbounded = True
                if not optional:
                    lo += 1
            else:
                hi += 1
                if not optional:
                    lo += 1
        depth += opens - closes
    if unbounded:
        return lo, None
    return lo, max(lo, hi)
