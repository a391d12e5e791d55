"""The chain-wide flow cache: a flow's net effect, recorded once, applied
with one lookup (SpeedyBox's consolidated actions, OVS's flow cache).

An NF declares `@nf(..., cache=Cacheable(...))` when what it does to a
packet (its verdict, drop reason and header rewrites) depends only on the
packet's key and on its own state, which changes only on the control path
(pynf.runtime.runtime's control and replace_state). The key is what the stage
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

The table (per stage replica): keys int64[buckets * 8], a bucket being one
cache line holding two ways of (k0, k1, k2, epoch); vals int64[2 * buckets
* VW], a way's recorded effect in VW words (a multiple of 8, so each way
starts a cache line), fields packed into words as the stage compiler lays
them out (Layout): word 0 holds the segments recorded (bit 16 + s) and the
NF that dropped the packet (bits 8-15, NF index + 1) with its reason (bits
0-7). Counters: meta[FC_*] (pynf.slots); per NF, nfstat[k, NF_CACHED]
counts the packets whose effect came from the table.
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.compiler.intrinsics import prefetch
from pynf.compiler.jit import BURST_MAX, hot
from pynf.slots import (
    FC_CAPACITY,
    FC_EPOCH,
    FC_EVICTIONS,
    FC_HITS,
    FC_INSERTS,
    FC_MISSES,
    FC_ON,
    FC_REFUSED,
    FC_RESENT,
    FC_SIZE,
    FC_SWITCHES,
    NF_RX,
    W_CYCLES,
)
from pynf.tables.hashing import hash5

# Fields a stage writes back; a segment records those its NFs write, and a
# segment after an NF that is not cacheable guards those that NF writes.
FIELDS = ("eth_dst", "eth_src", "src_ip", "dst_ip", "ttl", "sport", "dport")
# bits a packed field keeps: a verdict in an entry is an output port (a
# drop is kept in the info word), a tag is 32 bits
BITS = dict(eth_dst=48, eth_src=48, src_ip=32, dst_ip=32, ttl=8, sport=16, dport=16, port=15, tag=32)
ENTRIES_DEFAULT = 1 << 16
ENTRIES_MAX = 1 << 24


@dataclass(frozen=True)
class Cacheable:
    """An NF's declaration that the flow cache may stand in for it.

    when: config -> bool: cacheable under this configuration (None: always).
    guard: @hot (pkts, i, state) -> bool: the cache may serve packet i (it
      sees the packet as it enters the NF's segment); a refused packet runs
      the NF and is not recorded.
    replay: @hot (state, tag): run for every packet the cache serves, with
      the tag (32 bits, not negative) the NF left in pkts.tag[i] when the
      flow was recorded.
    version: @hot (state) -> int64, read once a burst: changes (grows) when
      state the NF reads changes off the control path.
    """
    when: object = None
    guard: object = None
    replay: object = None
    version: object = None

    def applies(self, config):
        return self.when is None or (config is not None and bool(self.when(config)))


FlowCache = namedtuple("FlowCache", "meta keys vals slot ins k0 k1 k2 rec sub mis")


def _aligned(n, dtype=np.int64, align=64):
    """zeros(n) whose data starts on a cache line."""
    item = np.dtype(dtype).itemsize
    raw = np.zeros(n + align // item, dtype=dtype)
    k = (-raw.ctypes.data % align) // item
    return raw[k:k + n]


def make(entries, vw):
    """A table of `entries` ways (rounded up to a power of two; 2 at least)
    of vw recorded words each (a multiple of 8: each way's words start a
    cache line); entries 0 (cache off): a minimal one."""
    buckets = 1
    while buckets * 2 < entries:
        buckets *= 2
    meta = np.zeros(FC_SIZE, dtype=np.int64)
    meta[FC_CAPACITY] = 2 * buckets if entries else 0
    meta[FC_ON] = 1 if entries else 0
    vw = max(8, (vw + 7) // 8 * 8)
    return FlowCache(meta=meta, keys=_aligned(buckets * 8), vals=_aligned(2 * buckets * vw),
                     slot=np.full(BURST_MAX, -1, dtype=np.int64), ins=np.full(BURST_MAX, -1, dtype=np.int64),
                     k0=np.zeros(BURST_MAX, dtype=np.int64), k1=np.zeros(BURST_MAX, dtype=np.int64),
                     k2=np.zeros(BURST_MAX, dtype=np.int64), rec=np.zeros((BURST_MAX, vw), dtype=np.int64),
                     sub=np.zeros(BURST_MAX, dtype=np.uint32), mis=np.zeros(BURST_MAX + 1, dtype=np.int64))


def entries_for(flows, auto=False):
    """Default size: room for twice the built-in traffic's flows (64K at
    least, 16M at most); `--flow-cache N` sets it. auto: 64K, a table that
    stays in the CPU's caches (6 MB for acl,lb,l3fwd). A larger one lost to
    its own memory misses in every measurement (bench/RESULTS.md), and at
    a million flows first touching its 192 MB stalled the run's first
    second."""
    if auto:
        return ENTRIES_DEFAULT
    n = ENTRIES_DEFAULT
    while n < 2 * flows and n < ENTRIES_MAX:
        n *= 2
    return n


def invalidate(fc):
    """Control path, between bursts: every entry is stale from now on."""
    fc.meta[FC_EPOCH] += 1


@hot(inline="always")
def epoch(fc, versions):
    """This burst's epoch: the control epoch plus the NFs' versions; never
    0, the epoch of a way never written."""
    return ((fc.meta[FC_EPOCH] + versions) & 0x7FFFFFFF) + 1


@hot(inline="always")
def lookup(fc, b, live, m, ep, mark):
    """Find each live packet's key: fc.slot[i] = its way (a hit) or -1;
    fc.ins[i] = the way a miss will be recorded in (-1: none), its record
    fc.rec[i] started with `mark`, and i listed in fc.mis[1:]; fc.k0/k1/k2[i]
    its key (k0 -1: not keyable). Returns the hits."""
    mask = len(fc.keys) // 8 - 1
    vw = fc.rec.shape[1]
    for x in range(m):
        i = live[x]
        inp = int(b.in_port[i])
        vp = int(b.port[i])
        if inp > 1023 or vp > 1023:
            fc.k0[i] = -1               # not keyable: runs the NFs, not recorded
            continue
        s = int(b.src_ip[i])
        d = int(b.dst_ip[i])
        sp = int(b.sport[i])
        dp = int(b.dport[i])
        pr = int(b.proto[i])
        fc.k0[i] = (s << 24) | (sp << 8) | pr           # pynf.tables.hashing.key5's words
        fc.k1[i] = (d << 16) | dp
        fc.k2[i] = inp | (int(b.frag[i]) << 10) | (int(b.ttl[i]) << 12) | ((int(b.vlan[i]) + 1) << 20) | (vp << 37)
        # the bucket from the 5-tuple alone: a flow's packets seldom differ in the rest
        bk = hash5(s, d, sp, dp, pr) & mask
        fc.ins[i] = bk
        prefetch(fc.keys, bk * 8)
        prefetch(fc.vals, bk * 2 * vw)          # both ways' recorded effects, while the keys come
        prefetch(fc.vals, (bk * 2 + 1) * vw)
    hits = 0
    nmis = 0
    misses = fc.meta[FC_MISSES]
    for x in range(m):
        i = live[x]
        fc.slot[i] = -1
        k0 = fc.k0[i]
        if k0 < 0:
            fc.ins[i] = -1
            continue
        k1 = fc.k1[i]
        k2 = fc.k2[i]
        bk = fc.ins[i]
        o = bk * 8
        w = -1
        if fc.keys[o + 3] == ep and fc.keys[o] == k0 and fc.keys[o + 1] == k1 and fc.keys[o + 2] == k2:
            w = 0
        elif fc.keys[o + 7] == ep and fc.keys[o + 4] == k0 and fc.keys[o + 5] == k1 and fc.keys[o + 6] == k2:
            w = 1
        if w >= 0:
            r = bk * 2 + w
            fc.slot[i] = r
            fc.ins[i] = -1
            if vw > 8:
                prefetch(fc.vals, r * vw + 8)
            hits += 1
            continue
        if fc.keys[o + 3] != ep:
            w = 0
        elif fc.keys[o + 7] != ep:
            w = 1
        else:
            w = misses & 1          # both ways live: either (the miss count as a coin)
        misses += 1
        fc.ins[i] = bk * 2 + w
        nmis += 1
        fc.mis[nmis] = i
        fc.rec[i, 0] = mark
        for c in range(1, vw):
            fc.rec[i, c] = 0
    fc.mis[0] = nmis
    fc.meta[FC_HITS] += hits
    fc.meta[FC_MISSES] = misses
    return hits


@hot(inline="always")
def misses(fc, live, m):
    """List in fc.sub the live packets the cache does not serve; returns how many."""
    mm = 0
    for x in range(m):
        i = live[x]
        if fc.slot[i] < 0:
            fc.sub[mm] = i
            mm += 1
    return mm


@hot(inline="always")
def resend(fc, i, keep):
    """Hit i's entry does not fit it from this segment on (an NF before the
    segment wrote something else this time): it runs the rest of the
    stage's NFs and its entry is recorded again from here, keeping the
    segments before (keep: their bits)."""
    r = fc.slot[i]
    vw = fc.rec.shape[1]
    o = r * vw
    for c in range(vw):
        fc.rec[i, c] = fc.vals[o + c]
    fc.rec[i, 0] &= keep
    fc.slot[i] = -1
    fc.ins[i] = r
    fc.meta[FC_RESENT] += 1


@hot(inline="always")
def refuse(fc, i):
    """An NF's guard refused packet i: it runs the NFs and is not recorded."""
    fc.slot[i] = -1
    fc.ins[i] = -1
    fc.meta[FC_REFUSED] += 1


@hot(inline="always")
def commit(fc, ep):
    """Write the burst's recorded misses into the table."""
    vw = fc.rec.shape[1]
    ins = 0
    ev = 0
    for x in range(1, fc.mis[0] + 1):
        i = fc.mis[x]
        r = fc.ins[i]
        if r < 0:
            continue
        o = (r >> 1) * 8 + (r & 1) * 4
        if fc.keys[o + 3] == ep and (fc.keys[o] != fc.k0[i] or fc.keys[o + 1] != fc.k1[i]
                                     or fc.keys[o + 2] != fc.k2[i]):
            ev += 1
        fc.keys[o] = fc.k0[i]
        fc.keys[o + 1] = fc.k1[i]
        fc.keys[o + 2] = fc.k2[i]
        fc.keys[o + 3] = ep
        v = r * vw
        for c in range(vw):
            fc.vals[v + c] = fc.rec[i, c]
        ins += 1
    fc.meta[FC_INSERTS] += ins
    fc.meta[FC_EVICTIONS] += ev


class Adapt:
    """--flow-cache auto: keep a stage replica's cache only while it makes
    the stage cheaper. A cache pays where the NFs it stands in for cost more
    than a lookup in a table that stays in the CPU's caches (a large ACL and
    few flows); on cheap NFs, or with flows enough to push the table out to
    memory, it costs more than it saves (bench/RESULTS.md has the figures).

    Measured, not guessed: WARM_S after the start and then every period
    the worker runs PROBE_S with the cache looked past and PROBE_S with it
    in use (in that order, so that the table is refilled before it is
    judged), compares the stage's cycles per packet (ws[W_CYCLES] over the
    stage's packets) and keeps the cheaper for the rest of the period. The
    period is PERIOD_S, doubled (up to PERIOD_MAX_S) each time the cache
    loses. Called by the worker between its loop's calls (pynf.runtime.runtime),
    so the switch falls between bursts.
    """
    WARM_S = 0.3           # the first probe, once the table has filled
    PERIOD_S = 2.0         # doubled after each probe the cache loses, up to PERIOD_MAX_S
    PERIOD_MAX_S = 32.0
    PROBE_S = 0.1
    MIN_PACKETS = 20000

    def __init__(self, fc, ws, nfstat, hz):
        self.fc, self.ws, self.nfstat = fc, ws, nfstat
        self.ticks = {k: int(v * hz) for k, v in (("warm", self.WARM_S), ("period", self.PERIOD_S),
                                                  ("period_max", self.PERIOD_MAX_S), ("probe", self.PROBE_S))}
        self.period = self.ticks["period"]
        self.phase = "run"
        self.until = None
        self.mark = None
        self.cost = {}

    def _sample(self):
        return int(self.ws[W_CYCLES]), int(self.nfstat[-1, NF_RX])

    def _set(self, on):
        # (the table stays exact while looked past: control changes bump
        # its epoch all the same, so what it holds may be used again)
        if bool(self.fc.meta[FC_ON]) != on:
            self.fc.meta[FC_ON] = int(on)
            self.fc.meta[FC_SWITCHES] += 1

    def step(self, now):
        """At TSC `now`, between bursts."""
        if self.until is None:
            self.until = now + self.ticks["warm"]
            return
        if now < self.until:
            return
        if self.phase != "run":
            c, n = self._sample()
            c0, n0 = self.mark
            if n - n0 < self.MIN_PACKETS:               # too little traffic to judge: go on probing
                self.until = now + self.ticks["probe"]
                return
            self.cost[self.phase] = (c - c0) / (n - n0)
        if self.phase == "run":
            self.phase = "off"
            self._set(False)
        elif self.phase == "off":
            self.phase = "on"
            self._set(True)
        else:
            self.phase = "run"
            keep = self.cost["on"] <= self.cost["off"]
            self._set(keep)
            # a cache that keeps losing is probed ever more seldom (each probe costs)
            self.period = self.ticks["period"] if keep else min(2 * self.period, self.ticks["period_max"])
            self.until = now + self.period
            return
        self.mark = self._sample()
        self.until = now + self.ticks["probe"]


class Layout:
    """Where a stage's flow-cache entry keeps what, from the NFs'
    cacheability and the fields each writes: fields are packed into the
    words of vals (a word: [(field, shift, mask)]), so that an entry of the
    usual chain fits one cache line.

    segments: [(first NF, last NF)] of consecutive cacheable NFs;
    guards[s]: the words holding what segment s checks at its entry (the
      fields that NFs before it that are not cacheable may write, and the
      verdict; none for a segment that starts the stage);
    pt[j]: NF j's word: its replay tag, and for a segment's last NF the
      verdict ("port") at the segment's end (None: nothing to keep);
    writes[s]: the words holding the fields segment s writes, at its end;
    vw: words per entry (column 0 is the info word), a multiple of 8.
    """

    def __init__(self, cacheable, writes, replays):
        self.segments = []
        j = 0
        k = len(cacheable)
        while j < k:
            if cacheable[j]:
                e = j
                while e + 1 < k and cacheable[e + 1]:
                    e += 1
                self.segments.append((j, e))
                j = e + 1
            else:
                j += 1
        self.col = 1
        self.guards, self.writes, self.pt = [], [], {}
        for a, e in self.segments:
            before = set().union(*(writes[x] for x in range(a) if not cacheable[x])) if a else set()
            g = [f for f in FIELDS if f in before]
            if any(not cacheable[x] for x in range(a)):
                g.append("port")                # such an NF may have set the verdict too
            self.guards.append(self._pack(g))
            for x in range(a, e + 1):
                fs = (["tag"] if replays[x] else []) + (["port"] if x == e else [])
                self.pt[x] = self._pack(fs)[0] if fs else None
            mine = set().union(*(writes[x] for x in range(a, e + 1)))
            self.writes.append(self._pack([f for f in FIELDS if f in mine]))
        self.vw = (self.col + 7) // 8 * 8

    def _pack(self, fields):
        """Words for `fields`, first fit, 63 bits a word (int64, never negative)."""
        words = []
        for f in sorted(fields, key=lambda f: -BITS[f]):
            for w in words:
                if w[2] + BITS[f] <= 63:
                    w[1].append((f, w[2], (1 << BITS[f]) - 1))
                    w[2] += BITS[f]
                    break
            else:
                words.append([self.col, [(f, 0, (1 << BITS[f]) - 1)], BITS[f]])
                self.col += 1
        return [(c, parts) for c, parts, _ in words]

    def segment_of(self, j):
        for s, (a, e) in enumerate(self.segments):
            if a <= j <= e:
                return s
        return -1
