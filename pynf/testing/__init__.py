"""Run NFs on hand-made frames, in plain Python or compiled: for NF tests.

    from pynf.testing import run_frames
    res = run_frames(["acl", "l3fwd"], [frame1, frame2])
    res.verdicts        # per frame: output port (int), drop reason (str), or
                        # ("slowpath", NF name, code) for a packet handed to the slow path
    res.frames          # per frame: the bytes after the chain (None if dropped)
    res.drops           # reason -> count

It builds the NFs' configuration from a RunContext (files, flows), their
state, and the same generated stage the runtime uses, and passes the frames
through it in bursts. Under NUMBA_DISABLE_JIT=1 everything runs as Python,
so an NF can be stepped through in a debugger.
"""
from dataclasses import dataclass

import numpy as np

from pynf import flowcache
from pynf.compiler.stage import compile_stage, reason_codes
from pynf.nf import load
from pynf.nf.context import RunContext
from pynf.packet.batch import BURST_MAX, DATAROOM, HEADROOM, make_batch, make_live
from pynf.packet.clock import C_FIXED, C_NOW, rebase
from pynf.packet.drops import MAX_REASONS, NAMES, PUNT_BASE, punt_owner
from pynf.packet.parse import F_FIRST, F_HOST
from pynf.slots import NF_COLS

SLOT = HEADROOM + DATAROOM


@dataclass
class Result:
    verdicts: list
    frames: list
    drops: dict
    nfstat: np.ndarray


class Chain:
    """One compiled stage with its NFs' state, fed bursts of frames."""

    def __init__(self, nfs, ctx=None, states=None, host=False, flow_cache=None):
        self.specs = [load(x) if isinstance(x, str) else x for x in nfs]
        self.ctx = ctx or RunContext()
        writes = None                   # given states: their configs are unknown, write back all
        configs = [None] * len(self.specs)
        if states is None:
            configs = [s.make_config(self.ctx) for s in self.specs]
            self.specs = [s.chosen(c) for s, c in zip(self.specs, configs)]
            states = [s.make_state(c) for s, c in zip(self.specs, configs)]
            writes = [s.written(c) for s, c in zip(self.specs, configs)]
        self.states = states
        self.flags = F_FIRST | (F_HOST if host else 0)
        entries = flowcache.setting_default()[0] if flow_cache is None else flow_cache
        entries = flowcache.ENTRIES_DEFAULT if entries < 0 else entries     # (auto or not: always on)
        cached = [entries > 0 and s.cacheable(c) for s, c in zip(self.specs, configs)]
        self.module = compile_stage(self.specs, writes=writes, cached=cached)
        self.flowcache = flowcache.ReplicaCache(entries, self.module.FC_VW)
        self.fc = self.flowcache.arg        # (tests read its counters: pynf.flowcache.table.FC_*)
        self.names = dict(NAMES)
        for per in reason_codes(self.specs):
            for name, code in per:
                self.names[code] = name
        self.drops = np.zeros(MAX_REASONS, dtype=np.int64)
        self.nfstat = np.zeros((len(self.specs) + 1, NF_COLS), dtype=np.int64)
        self.mem = np.zeros(SLOT * BURST_MAX, dtype=np.uint8)
        self.batch = make_batch(self.mem, BURST_MAX)
        self.live = make_live(BURST_MAX)

    def set_time(self, ns):
        """Fix the NFs' clock (pynf.nf.now) at ns nanoseconds; None: the
        live clock again."""
        self.batch.clock[C_FIXED] = -1 if ns is None else int(ns)
        self.batch.clock[C_NOW] = -1            # (the live clock starts from the host's again)

    def advance(self, ns):
        """Move a fixed clock on by ns nanoseconds (SECOND is one second)."""
        if self.batch.clock[C_FIXED] < 0:
            raise ValueError("advance: the clock is live; fix it with set_time first")
        self.batch.clock[C_FIXED] += int(ns)

    def run(self, frames, burst=32, in_port=0):
        """(verdicts, frames after the chain) for a list of frames (bytes)."""
        mem, b = self.mem, self.batch
        rebase(b.clock)
        verdicts, outs = [], []
        for start in range(0, len(frames), burst):
            chunk = frames[start:start + burst]
            mem[:] = 0
            for i, f in enumerate(chunk):
                if len(f) > DATAROOM:
                    raise ValueError(f"frame of {len(f)} bytes: larger than a buffer")
                o = i * SLOT + HEADROOM
                mem[o:o + len(f)] = np.frombuffer(bytes(f), dtype=np.uint8)
                b.off[i] = o
                b.len[i] = len(f)
                b.in_port[i] = in_port
            self.module.stage(b, self.live, len(chunk), self.flags, self.drops, self.nfstat,
                              self.fc, *self.states)
            for i, f in enumerate(chunk):
                p = int(b.port[i])
                if p >= PUNT_BASE:
                    owner, k = punt_owner(p)
                    verdicts.append(("slowpath", self.specs[owner - 1].name if owner else "pynf", k))
                    outs.append(mem[b.off[i]:b.off[i] + len(f)].tobytes())
                elif p >= 0:
                    verdicts.append(p)
                    outs.append(mem[b.off[i]:b.off[i] + len(f)].tobytes())
                else:
                    verdicts.append(self.names.get(-1 - p, f"reason_{-1 - p}"))
                    outs.append(None)
        return verdicts, outs

    def changed(self):
        """Say that the NFs' states were changed by hand (as `pynf ctl` does
        through the runtime): the flow cache forgets what it recorded."""
        self.flowcache.invalidate()

    def drop_counts(self):
        return {self.names.get(c, f"reason_{c}"): int(v) for c, v in enumerate(self.drops) if v}


def run_frames(nfs, frames, ctx=None, burst=32, flow_cache=None):
    """Pass frames through NFs `nfs` (names, FILE:NAME tokens or NFSpecs)."""
    ch = Chain(nfs, ctx, flow_cache=flow_cache)
    verdicts, outs = ch.run(frames, burst)
    return Result(verdicts=verdicts, frames=outs, drops=ch.drop_counts(), nfstat=ch.nfstat)
