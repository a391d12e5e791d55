"""A stage replica's flow-cache table and the kernels the generated stage
calls on it (pynf.flowcache has the design; pynf.flowcache.codegen writes
the calls).

The table: keys int64[buckets * 8], a bucket being one cache line holding
two ways of (k0, k1, k2, epoch); vals int64[2 * buckets * VW], a way's
recorded effect in VW words (a multiple of 8, so each way starts a cache
line), fields packed into words as pynf.flowcache.layout lays them out:
word 0 holds the segments recorded (bit 16 + s) and the NF that dropped
the packet (bits 8-15, NF index + 1) with its reason (bits 0-7).
"""
from collections import namedtuple

import numpy as np

from pynf.compiler.intrinsics import prefetch
from pynf.compiler.jit import hot
from pynf.packet.batch import BURST_MAX
from pynf.tables.hashing import hash5

# The table's counters and state, meta: int64[FC_SIZE]; the names are the
# report's stages[s].flow_cache keys and /metrics' (FC_REPORT)
FC_EPOCH = 0        # bumped by every control change: older entries are stale
FC_HITS = 1         # packets found in the table
FC_MISSES = 2       # packets looked up and not found
FC_INSERTS = 3      # entries written
FC_EVICTIONS = 4    # ... over a live entry of another flow
FC_RESENT = 5       # hits that ran part of the stage after all (an NF before a segment did otherwise)
FC_REFUSED = 6      # packets an NF's guard kept from the cache
FC_CAPACITY = 7     # entries (0: the cache is off)
FC_ON = 8           # 1: in use; 0: looked past (--flow-cache auto measured it slower, pynf.flowcache.adapt)
FC_SWITCHES = 9     # times Adapt turned it on or off
FC_SIZE = 10
FC_REPORT = (("capacity", FC_CAPACITY), ("hits", FC_HITS), ("misses", FC_MISSES), ("inserts", FC_INSERTS),
             ("evictions", FC_EVICTIONS), ("resent", FC_RESENT), ("refused", FC_REFUSED),
             ("invalidations", FC_EPOCH), ("on", FC_ON), ("switches", FC_SWITCHES))

ENTRIES_DEFAULT = 1 << 16
ENTRIES_MAX = 1 << 24


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


