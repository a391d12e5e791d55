"""The NF API: what an NF author imports.

    from pynf.nf import DROP, drop, nf, slowpath
    from pynf.nf import File, Verb, Change     # files it reads, `pynf ctl` verbs
    from pynf.nf import SECOND, now            # the burst's time, in ns

pynf.nf.spec holds the decorator and the registry; pynf.nf.declare the
files and control verbs an NF declares; pynf.nf.context what a
configuration may depend on; pynf.nf.access bounds-checked byte access.
"""
from pynf.nf.declare import Change, File, Verb
from pynf.nf.spec import (
    DROP,
    MAX_PORT,
    SLOWPATH,
    WRITABLE,
    NFError,
    NFSpec,
    apply_settings,
    available,
    cache_hook,
    drop,
    fields_used,
    kernel,
    load,
    nf,
    registered,
    slowpath,
)
from pynf.packet.clock import SECOND, now

__all__ = ["DROP", "MAX_PORT", "SECOND", "SLOWPATH", "WRITABLE", "Change", "File", "NFError", "NFSpec", "Verb",
           "apply_settings", "available", "cache_hook", "drop", "fields_used", "kernel", "load", "nf",
           "now", "registered", "slowpath"]
