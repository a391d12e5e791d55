"""Building blocks for NFs: an expiring map with LRU at full, a token
bucket, and the declared counters' idiom. Each is compiled code the NF
calls from its fast path; each works the same in plain Python.

    from pynf.nf import SECOND, now
    from pynf.nf.blocks import LruMap, map_get, take

    SOURCES = LruMap("tokens", "stamp", entries=65536, idle=60 * SECOND)
    TOKENS, STAMP = SOURCES.columns

    State = namedtuple("State", "src counters")
    def make_state(cfg):
        return State(src=SOURCES.make(), counters=np.zeros(2, dtype=np.int64))

    # in the NF, per packet:
    row, fresh = map_get(st.src, pkts.src_ip[i], 0, now(pkts))
    if not take(st.src.vals, row, TOKENS, cfg_rate, cfg_burst, now(pkts)):
        pkts.port[i] = DROP

The map (pynf.tables.flowtable underneath: buckets of 8, LRU within a
bucket, idle entries expire lazily) is keyed by one or two integers in
0 .. 2**62 - 1 (an IPv4 address, an address and a port packed together)
and holds, per key, one int64 per declared column in `vals[row]`. A
state field that is a map shows in the NF's stats (report, `pynf ctl
stats`, /metrics) as FIELD_entries, FIELD_expired_total and
FIELD_evicted_total without any code.
"""
from collections import namedtuple

import numpy as np

from pynf.compiler.jit import hot
from pynf.packet.clock import SECOND
from pynf.tables import flowtable as ft
from pynf.tables.hashing import M32, fmix32

# A map's arrays (what LruMap.make returns; put it in the NF's state)
MapState = namedtuple("MapState", "tab info vals counters")

NEVER = 1 << 61         # an idle time that never expires


class LruMap:
    """An expiring map: keys of one or two integers, int64 values in named
    columns, `entries` at least (a power-of-two number of buckets of 8),
    an entry idle longer than `idle` ns (None: never) free to reuse, and at
    full the least recently seen entry of the key's bucket replaced."""

    def __init__(self, *columns, entries=65536, idle=None):
        if not columns or len(set(columns)) != len(columns):
            raise ValueError("LruMap: name its value columns, each once")
        if entries < 1:
            raise ValueError("LruMap: entries must be at least 1")
        if idle is not None and idle <= 0:
            raise ValueError("LruMap: idle must be a positive number of ns (SECOND is one second)")
        self.names = tuple(columns)
        self.columns = tuple(range(len(columns)))
        self.entries = int(entries)
        self.idle = idle

    def make(self, entries=None):
        """The map's arrays (a MapState), empty; `entries` overrides the
        declared size (from a setting)."""
        tab, info = ft.make(int(entries or self.entries))
        info[ft.I_TMO] = NEVER if self.idle is None else int(self.idle)
        vals = np.zeros((len(tab) // ft.WORDS, len(self.names)), dtype=np.int64)
        return MapState(tab, info, vals, np.zeros(2, dtype=np.int64))


@hot(inline="always")
def _hash(k0, k1):
    k0, k1 = int(k0), int(k1)
    return fmix32(((k0 * 0x9E3779B1) ^ ((k0 >> 32) * 0x85EBCA77) ^ (k1 * 0xC2B2AE3D)
                   ^ ((k1 >> 32) * 0x27D4EB2F)) & M32)


@hot(inline="always")
def map_get(m, k0, k1, now):
    """(row, fresh): the row of key (k0, k1) in m.vals, made if it is not
    there (fresh: True, the row zeroed), reusing an idle entry or, at
    full, the bucket's least recently seen one. Marks the key seen at now."""
    tab = m.tab
    b = ft.base(m.info, _hash(k0, k1))
    e, fresh = ft.claim_at(tab, b, np.int64(k0), np.int64(k1), now, m.info, m.counters, ft.EVICT_ANY)
    if not fresh and ft.expired(tab[e + 3], now, m.info):
        m.counters[ft.C_EXPIRED] += 1        # its own entry, idle too long: a new one
        fresh = True
    tab[e + 3] = now << ft.STATE_BITS
    row = e // ft.WORDS
    if fresh:
        for c in range(m.vals.shape[1]):
            m.vals[row, c] = 0
    return row, fresh


@hot(inline="always")
def map_find(m, k0, k1, now):
    """The row of key (k0, k1), or -1 when it is not there or has been
    idle too long. Does not mark it seen (map_touch does)."""
    tab = m.tab
    e = ft.find(tab, ft.base(m.info, _hash(k0, k1)), np.int64(k0), np.int64(k1))
    if e < 0 or ft.expired(tab[e + 3], now, m.info):
        return -1
    return e // ft.WORDS


@hot(inline="always")
def map_touch(m, row, now):
    """Mark a row (from map_find) seen at now."""
    m.tab[row * ft.WORDS + 3] = now << ft.STATE_BITS


def map_stats(m, now=None):
    """{entries, expired_total, evicted_total} of a map (control path)."""
    e = ft.entries(m.tab, m.info)
    live = e[:, 1] != 0
    if now is not None:
        live &= now - (e[:, 3] >> ft.STATE_BITS) <= m.info[ft.I_TMO]
    return {"entries": int(np.count_nonzero(live)), "expired_total": int(m.counters[ft.C_EXPIRED]),
            "evicted_total": int(m.counters[ft.C_EVICTED])}


# ---- a token bucket in two columns of a map's row (or of any int64 [rows, cols] array) ----

@hot(inline="always")
def take(vals, row, col, rate, burst, now, cost=1):
    """A token bucket in vals[row, col] (tokens, in 1/SECOND parts) and
    vals[row, col + 1] (when it was last filled): it fills at `rate`
    tokens a second up to `burst` tokens and starts full. Takes `cost`
    tokens and returns True when it holds them, else takes none and
    returns False (the packet is over the rate)."""
    return take_in(vals[row], col, rate, burst, now, SECOND, cost)


@hot(inline="always")
def take_in(v, k, rate, burst, now, second, cost=1):
    """take's bucket in v[k] (tokens, in 1/second parts) and v[k + 1] (when
    it was last filled, plus one: 0 is a fresh bucket, full) of a 1-D
    array, on a clock of `second` ticks a second."""
    full = np.int64(burst) * second
    stamp = v[k + 1]
    if stamp == 0:                          # a fresh bucket
        tokens = full
    else:
        gap = now + 1 - stamp
        if gap < 0:
            gap = 0
        limit = full // rate + 1 if rate > 0 else 0
        if gap > limit:
            gap = limit
        tokens = v[k] + gap * rate
        if tokens > full:
            tokens = full
    v[k + 1] = now + 1
    want = np.int64(cost) * second
    if tokens >= want:
        v[k] = tokens - want
        return True
    v[k] = tokens
    return False
