"""Longest-prefix-match IPv4 routes: DPDK rte_lpm's DIR-24-8 in numpy arrays.

Synopsis:   lpm = make_lpm(max_tbl8_groups=4096, max_rules=65536)
            lpm = build(lpm, prefixes, lengths, ids)   bulk load, replaces all routes
            add(lpm, prefix, length, id) -> bool       control path, between bursts
            delete(lpm, prefix, length) -> bool
            routes(lpm) -> (prefixes, lengths, ids)
            lookup(lpm, ip) -> id or -1                fast path (compiled, inlined)
            prefetch(lpm, ip)                          start a lookup's first load
            lookup_many(lpm, ips, out)                 compiled loop (tests, bench)
            tbl8_used(lpm), lpm_bytes(lpm)
Routes:     prefix/length -> a next-hop id 0..2**24-1 that means whatever the
            caller wants (an index into its own next-hop arrays). Host bits
            beyond the length are masked, as rte_lpm does: 10.1.2.3/8 is
            10.0.0.0/8. Lengths 0 (a default route) to 32.
Layout:     tbl24, uint32[2**24], one entry per /24, indexed by ip >> 8; an
            entry may instead name a tbl8 group, uint32[256] indexed by
            ip & 255, which holds the /24's addresses when a /25../32 route
            lies in it. A lookup reads one entry, or two.
Entries:    bits 0-23 next-hop id (or tbl8 group), bit 24 EXT (the entry
            names a tbl8 group), bits 25-30 the length of the route that
            wrote it, bit 31 VALID; 0 is no route. Keeping the length in the
            entry (as rte_lpm does) lets add leave longer routes' entries
            alone and delete find the entries a route wrote, with no
            parallel depth array. As the length lies between VALID and the
            id, a route's entries compare by length: an entry below
            VALID | (L + 1) << 25 is empty or a route's no longer than L.
            EXT entries carry length 63, so they are above all others.
Rules:      every route is also kept in `rules`, a pynf.tables.hashtable keyed by
            (prefix, length), so delete can find the next shorter covering
            route to restore; everything is in arrays, so each replica
            applies control changes to its own copy.
Full:       add returns False and changes nothing when the rule table or
            tbl8 is full (counted in info[I_FULL]). build never refuses: it
            makes room (see build).
Cost:       Memory: 64 MiB tbl24, 1 KiB per tbl8 group (4 MiB for the
            default 4096), a rule table of 32 B slots, at least twice
            max_rules of them (4 MiB for the default 65536): 72 MiB by
            default; a million routes, 5% of them longer than /24, 181 MiB.
            Time (bench/lpm.py, a quiet 2-core VM): a lookup 5-9 TSC
            cycles when the table is in cache, 30-45 when its entry must
            come from DRAM; build of a million routes 0.4 s; add or delete
            of a /16../32 15-100 us, a /8 0.3 ms, a /0 (all 2**24 entries)
            about 0.1 s.
Follows:    DPDK's rte_lpm (lib/lpm/rte_lpm.c) and Gupta, Lin and McKeown,
            "Routing lookups in hardware at memory access speeds", 1998.
"""
from collections import namedtuple

import numpy as np

from pynf.compiler import intrinsics
from pynf.compiler.jit import hot
from pynf.tables import hashtable as table
from pynf.tables.hashing import hash32, hash32_many

ID_MASK = (1 << 24) - 1        # next-hop id or tbl8 group
EXT = 1 << 24
VALID = 1 << 31
EXT_ENTRY = VALID | (63 << 25) | EXT

# tbl24: uint32[2**24]; tbl8: uint32[groups * 256]; free: int64[groups], a
# stack of free group numbers, free[:info[I_FREE]]; info: int64[2];
# rules: pynf.tables.hashtable.Table, (prefix, length) -> id
Lpm = namedtuple("Lpm", ["tbl24", "tbl8", "free", "info", "rules"])

I_FREE, I_FULL = 0, 1


def make_lpm(max_tbl8_groups=4096, max_rules=65536):
    """An empty route table: room for max_rules routes, of which /25../32
    routes may lie in max_tbl8_groups different /24s."""
    if not 0 <= max_tbl8_groups <= ID_MASK + 1:
        raise ValueError(f"lpm: max_tbl8_groups {max_tbl8_groups} outside 0..{ID_MASK + 1}")
    info = np.zeros(2, dtype=np.int64)
    info[I_FREE] = max_tbl8_groups
    return Lpm(tbl24=np.zeros(1 << 24, dtype=np.uint32),
               tbl8=np.zeros(max_tbl8_groups << 8, dtype=np.uint32),
               free=np.arange(max_tbl8_groups - 1, -1, -1, dtype=np.int64),   # group 0 on top
               info=info, rules=table.make_table(max_rules))


def lpm_bytes(lpm):
    return lpm.tbl24.nbytes + lpm.tbl8.nbytes + lpm.free.nbytes + table.table_bytes(lpm.rules)


def tbl8_used(lpm):
    """tbl8 groups in use: one per /24 holding a /25../32 route."""
    return len(lpm.free) - int(lpm.info[I_FREE])


# ---- fast path ----

@hot(inline="always")
def lookup(lpm, ip):
    """Next-hop id of the longest route holding ip, or -1."""
    # NB: unsigned indices skip Numba's negative-index fix-up
    e = lpm.tbl24[np.uint64(ip >> 8)]
    if e & EXT:
        e = lpm.tbl8[np.uint64(((e & ID_MASK) << 8) | (ip & 0xFF))]
    return int(e & ID_MASK) if e else -1


@hot(inline="always")
def prefetch(lpm, ip):
    """Start loading ip's tbl24 entry: prefetch a burst, then look it up."""
    intrinsics.prefetch(lpm.tbl24, np.uint64(ip >> 8))


@hot
def lookup_many(lpm, ips, out):
    """out[i] = lookup(lpm, ips[i]) for each i."""
    for i in range(len(ips)):
        out[i] = lookup(lpm, ips[i])


# ---- control path: numpy, and compiled rule-table look-ups ----

def _check(prefixes, lengths, ids):
    """int64 arrays of the routes, host bits masked; ValueError on a bad one."""
    p, n, v = (np.atleast_1d(np.asarray(a)).astype(np.int64) for a in (prefixes, lengths, ids))
    if not len(p) == len(n) == len(v):
        raise ValueError(f"lpm: {len(p)} prefixes, {len(n)} lengths, {len(v)} ids")
    for what, a, hi in (("prefix", p, 0xFFFFFFFF), ("prefix length", n, 32), ("next-hop id", v, ID_MASK)):
        bad = (a < 0) | (a > hi)
        if bad.any():
            raise ValueError(f"lpm: {what} {a[bad][0]} outside 0..{hi}")
    return p & ~((1 << (32 - n)) - 1), n, v


def _one(prefix, length, nh):
    """One route as Python ints, host bits masked (numpy only to raise)."""
    p, n, v = int(prefix), int(length), int(nh)
    if not (0 <= p <= 0xFFFFFFFF and 0 <= n <= 32 and 0 <= v <= ID_MASK):
        _check(p, n, v)
    return p & ~((1 << (32 - n)) - 1), n, v


def _entry(length, nh):
    return VALID | (length << 25) | nh


def _paint(seg, length, e):
    """Write e where no route, or one no longer than length, wrote (add)."""
    seg[seg < VALID | (length + 1) << 25] = e


@hot
def _covering(rules, p, length):
    """Entry for the longest route shorter than length holding p, or 0."""
    for n in range(length - 1, -1, -1):
        q = p & ~((1 << (32 - n)) - 1)
        s = table.find(rules, q, n, hash32(q ^ n))
        if s >= 0:
            return VALID | (n << 25) | table.value(rules, s)
    return 0


def add(lpm, prefix, length, nh):
    """Add route prefix/length -> next-hop id nh, or replace its id.
    False, and nothing changed, when the rule table or tbl8 is full."""
    p, length, nh = _one(prefix, length, nh)
    r, h = lpm.rules, hash32(p ^ length)
    if table.find(r, p, length, h) < 0 and r.info[table.I_COUNT] >= r.info[table.I_CAP]:
        lpm.info[I_FULL] += 1
        return False
    e = _entry(length, nh)
    tbl8 = lpm.tbl8.reshape(-1, 256)
    if length <= 24:
        seg = lpm.tbl24[p >> 8:(p >> 8) + (1 << (24 - length))]
        groups = seg[seg >= EXT_ENTRY] & ID_MASK       # /24s with longer routes in them
        _paint(seg, length, e)
        if len(groups):
            sub = tbl8[groups]
            _paint(sub, length, e)
            tbl8[groups] = sub
    else:
        i24 = p >> 8
        t24 = lpm.tbl24[i24]
        if not t24 & EXT:
            # the /24's first longer route: give it a group holding what the /24 held
            top = lpm.info[I_FREE]
            if top == 0:
                lpm.info[I_FULL] += 1
                return False
            g = lpm.free[top - 1]
            lpm.info[I_FREE] = top - 1
            tbl8[g] = t24
            lpm.tbl24[i24] = EXT_ENTRY | g
            t24 = lpm.tbl24[i24]
        lo = p & 0xFF
        _paint(tbl8[t24 & ID_MASK, lo:lo + (1 << (32 - length))], length, e)
    table.add(r, p, length, h, nh)
    return True


def delete(lpm, prefix, length):
    """Remove route prefix/length; its addresses go to the next shorter
    route that covers it, if any. False when there is no such route."""
    p, length, _ = _one(prefix, length, 0)
    if not table.delete(lpm.rules, p, length, hash32(p ^ length)):
        return False
    e = _covering(lpm.rules, p, length)
    lo, hi = _entry(length, 0), _entry(length + 1, 0)     # the entries this route wrote are in [lo, hi)
    tbl8 = lpm.tbl8.reshape(-1, 256)
    if length <= 24:
        seg = lpm.tbl24[p >> 8:(p >> 8) + (1 << (24 - length))]
        groups = seg[seg >= EXT_ENTRY] & ID_MASK
        seg[(seg >= lo) & (seg < hi)] = e
        if len(groups):
            sub = tbl8[groups]
            sub[(sub >= lo) & (sub < hi)] = e
            tbl8[groups] = sub
    else:
        i24 = p >> 8
        g = lpm.tbl24[i24] & ID_MASK
        grp = tbl8[g]
        lo = p & 0xFF
        seg = grp[lo:lo + (1 << (32 - length))]
        seg[(seg >= lo) & (seg < hi)] = e
        if grp.max() < _entry(25, 0):
            # no longer route left in this /24: its entries are all the same
            # (the longest route of length <= 24 holding it, or none)
            lpm.tbl24[i24] = grp[0]
            grp[:] = 0
            lpm.free[lpm.info[I_FREE]] = g
            lpm.info[I_FREE] += 1
    return True


def routes(lpm):
    """The routes as (prefixes, lengths, ids), int64 arrays sorted by length
    then prefix: what build takes."""
    s = lpm.rules.slots.reshape(-1, table.SLOT)
    s = s[s[:, 1] != 0]
    p, n, v = s[:, 0], s[:, 1] & ~table.USED, s[:, 2]
    o = np.lexsort((p, n))
    return p[o], n[o], v[o]


def build(lpm, prefixes, lengths, ids):
    """Replace lpm's routes with these (arrays; a later duplicate of a
    prefix/length wins). Vectorised: a million routes load in half a
    second. Returns lpm, or, when it has too few tbl8 groups or rule slots
    for these routes, a copy with new arrays for those (tbl24 is shared):
    tbl8 with as many groups free as lpm had, the rule table with room up
    to the next power of two. Use what it returns."""
    p, n, v = _check(prefixes, lengths, ids)
    # one route per prefix/length, the last given; sorted by length then prefix
    key = (n << 32) | p
    _, first = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - first
    p, n, v = p[keep], n[keep], v[keep]
    cut = np.searchsorted(n, np.arange(34))       # routes of length L: [cut[L], cut[L + 1])
    g24 = np.unique(p[cut[25]:] >> 8)              # the /24s that need a tbl8 group
    ng, nr = len(lpm.free), int(lpm.rules.info[table.I_CAP])
    if len(g24) > ng:
        ng += len(g24)
        lpm = lpm._replace(tbl8=np.zeros(ng << 8, dtype=np.uint32), free=np.zeros(ng, dtype=np.int64))
    if len(p) > nr:
        nr = 1 << (len(p) - 1).bit_length()       # as many as the table's slots for len(p) allow
        lpm = lpm._replace(rules=table.make_table(nr))
    lpm.tbl24[:] = 0
    lpm.tbl8[:] = 0
    lpm.rules.slots[:] = 0
    lpm.rules.info[table.I_COUNT] = 0
    lpm.info[:] = 0

    # shorter routes first, so each longer one overwrites what it covers
    # (the L-routes' tbl24 entries are the rows of tbl24 seen as 2**L rows)
    for length in range(25):
        a, b = cut[length], cut[length + 1]
        rows = lpm.tbl24.reshape(-1, 1 << (24 - length))
        rows[p[a:b] >> (32 - length)] = _entry(length, v[a:b]).astype(np.uint32)[:, None]
    # groups 0..m-1 for the /24s of longer routes, first holding what the /24 held
    m = len(g24)
    lpm.tbl8[:m << 8].reshape(m, 256)[:] = lpm.tbl24[g24][:, None]
    lpm.tbl24[g24] = (EXT_ENTRY | np.arange(m)).astype(np.uint32)
    for length in range(25, 33):
        a, b = cut[length], cut[length + 1]
        at = (np.searchsorted(g24, p[a:b] >> 8) << 8) | (p[a:b] & 0xFF)
        rows = lpm.tbl8[:m << 8].reshape(-1, 1 << (32 - length))
        rows[at >> (32 - length)] = _entry(length, v[a:b]).astype(np.uint32)[:, None]
    lpm.free[:ng - m] = np.arange(ng - 1, m - 1, -1)
    lpm.info[I_FREE] = ng - m

    h = np.empty(len(p), dtype=np.int64)
    hash32_many(p ^ n, h)
    table.add_many(lpm.rules, p, n, h, v)
    return lpm
