"""The chain-wide flow cache: a flow's net effect, recorded once, applied
with one lookup (SpeedyBox's consolidated actions, OVS's flow cache).

An NF declares `@nf(..., cache=Cacheable(...))` when what it does to a
packet (its verdict, drop reason and header rewrites) depends only on the
packet's key and on its own state, which changes only on the control path
(pynf.runtime.mailbox: control and replace_state). The key is what the stage
received: the 5-tuple, TTL, fragment class, VLAN tag, input port and (in a
later pipeline stage) the verdict the previous stage gave. An NF that also
reads something else (payload bytes, a checksum) says so with a `guard`:
packets it refuses run the NF itself and are not recorded.

In a stage, consecutive cacheable NFs form a segment. A packet whose key
is in the table with the current epoch is a hit: each segment's NFs are
skipped for it and their recorded effect applied in their place (a drop is
counted under the NF and reason that made it, through the same `settle`
as a real one); NFs that are not cacheable (lb: it touches its flow entry
on every packet) run on every packet. A segment after such an NF also
records the fields that NF may have written (and the verdict): if they
differ this time, the packet runs the segment's NFs and the entry is
recorded again from there. A miss runs the NFs and its effect is written
into the table at the end of the burst (2-way set associative, random
replacement: a cache, so a lost entry costs a miss, never a wrong packet).

Exactness: every control change bumps the stage's epoch (pynf.runtime.runtime),
which invalidates every entry; an NF whose state also changes elsewhere
(l3fwd's neighbour table, learnt by the slow path) adds a `version` to the
epoch. What an NF does per packet beyond its effect (acl's per-rule hits,
l3fwd marking a neighbour used) it does in `replay`, from a tag it left in
`pkts.tag[i]`. Packets handed to the slow path are never recorded.

Whether it pays is measured, not assumed (`--flow-cache auto`, the
default: Adapt): a lookup costs 25-60 cycles, so it pays only where the NFs
it stands in for cost more and the table stays in the CPU's caches.

The package: `declare` (Cacheable, what an NF declares), `table` (the
table and the kernels a stage calls), `layout` (what an entry keeps
where), `codegen` (the stage compiler's entry point: the cache's part of a
generated stage), `adapt` (--flow-cache auto), and here ReplicaCache, the
runtime's entry point: one per stage replica. Counters: table.FC_*; per
NF, nfstat[k, NF_CACHED] counts the packets whose effect came from the
table.
"""
import argparse
import os

from pynf.flowcache.adapt import Adapt
from pynf.flowcache.declare import Cacheable
from pynf.flowcache.table import ENTRIES_DEFAULT, ENTRIES_MAX, FC_CAPACITY, FC_REPORT, entries_for, invalidate, make

__all__ = ["Cacheable", "ReplicaCache", "report", "setting", "setting_default", "ENTRIES_DEFAULT"]


def setting(text):
    """--flow-cache auto|on|off[:ENTRIES] -> (entries: -1 sized by the run, 0
    off, or N; auto: kept only while it measures faster)."""
    t, _, n = text.strip().lower().partition(":")
    if t not in ("auto", "on", "off") or (n and t == "off"):
        raise argparse.ArgumentTypeError(f"want auto, on or off, or auto:N or on:N entries, not {text!r}")
    if t == "off":
        return 0, False
    if not n:
        return -1, t == "auto"
    if not n.isdigit() or not 2 <= int(n) <= ENTRIES_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: want 2..{ENTRIES_MAX} entries")
    return int(n), t == "auto"


def setting_default():
    """auto unless $PYNF_FLOW_CACHE says otherwise (the tests run both ways);
    ValueError for a bad one."""
    v = os.environ.get("PYNF_FLOW_CACHE", "auto")
    try:
        return setting(v)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"PYNF_FLOW_CACHE: {e}") from None


class ReplicaCache:
    """A stage replica's flow cache as the runtime holds it: the table the
    compiled loop gets (`arg`), and with auto its policy (Adapt).

    entries: the stage's setting (-1: sized to `flows`; 0: off); vw: words
    per entry, from the compiled stage (0: no NF of the stage is cached)."""

    def __init__(self, entries, vw, auto=False, flows=0, ws=None, nfstat=None, hz=0):
        if entries < 0:
            entries = entries_for(flows, auto)
        self.arg = make(entries if vw else 0, vw)
        self.adapt = Adapt(self.arg, ws, nfstat, hz) if vw and entries and auto else None

    @property
    def meta(self):
        return self.arg.meta

    def step(self, now):
        """Between bursts, at TSC `now`: auto's probes."""
        if self.adapt is not None:
            self.adapt.step(now)

    def invalidate(self):
        """Between bursts: a control change made every entry stale."""
        invalidate(self.arg)


def report(caches):
    """A stage's flow cache for the report (its replicas summed), None when off."""
    fcs = [c.arg for c in caches if c is not None and c.arg.meta[FC_CAPACITY]]
    if not fcs:
        return None
    out = {k: sum(int(fc.meta[slot]) for fc in fcs) for k, slot in FC_REPORT}
    looked = out["hits"] + out["misses"]
    out["hit_rate"] = round(out["hits"] / looked, 4) if looked else 0.0
    return out
