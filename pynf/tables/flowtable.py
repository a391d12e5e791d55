"""A set-associative flow table with idle timeouts and LRU eviction.

Entries are 4 int64 words, 32 bytes, two to a cache line:

    [k0, k1 | USED, value, last_seen << 2 | state]

The key is two words below 2**62 (pynf.tables.hashing.key5 packs a 5-tuple
into them); `value` is the caller's (any int64); `state` (0..3) picks the
entry's idle timeout from info[I_TMO + state] (ticks), and last_seen
is the time of the entry's last packet, in the same ticks. A key lives in
one bucket of WAYS = 8 entries (256 bytes, 64-byte aligned): bucket =
hash & mask, so a lookup reads at most 4 cache lines and usually one.
A table of 2 MiB or more lies on transparent huge pages where the kernel
offers them (madvise): a lookup at a random bucket then rarely misses the
TLB.

Within a bucket the used entries come first: the fast path never leaves a
hole (expired entries stay until reused; an eviction replaces in place),
and the control path's `flush` compacts the buckets it thins. So a lookup
stops at the first empty entry, and a miss in a lightly loaded bucket
costs one or two compares.

Insert (`claim`) takes, in this order: the key's own entry, an expired
entry (counted as an expiry), an empty entry, or else, when the caller
allows it, the bucket's least recently seen entry (counted as an
eviction): LRU within the bucket, not across the table. Capacity is a
power-of-two number of buckets; a table for `capacity` entries holds
ceil(capacity / 8) buckets rounded up to a power of two. Entries expire
lazily: nothing scans the table on the fast path; an expired entry is
found dead when it is looked up or when its slot is wanted.

`info` (int64) holds the bucket mask, the bucket count and the four
states' timeouts (I_TMO + state), and after them any slots the caller asks
for (make's `extra`): one small array for a table's settings, since every
array an NF's state holds is passed on every call. Counters (an int64
array passed by the caller) at C_EXPIRED and C_EVICTED.
"""
import mmap

import numpy as np

from pynf.compiler.intrinsics import prefetch
from pynf.compiler.jit import hot

WAYS = 8
WORDS = 4                       # int64 words per entry
USED = 1 << 62
STATE_BITS = 2
STATE_MASK = (1 << STATE_BITS) - 1

# info: int64[I_END + extra] = [bucket mask, buckets, timeout of state 0..3, caller's ...]
I_MASK, I_BUCKETS, I_TMO = 0, 1, 2
I_END = I_TMO + (1 << STATE_BITS)

# counter slots used here (the caller's array may hold more after these)
C_EXPIRED, C_EVICTED = 0, 1


def make(capacity, extra=0):
    """(entries, info) for at least `capacity` entries: entries is a
    64-byte aligned int64 array of buckets * WAYS * WORDS words; info has
    `extra` slots for the caller after I_END, and timeouts 0 (set them)."""
    if capacity < 1:
        raise ValueError("flow table capacity must be at least 1")
    nb = 1
    while nb * WAYS < capacity:
        nb <<= 1
    n = nb * WAYS * WORDS
    tab = _huge_zeros(n)
    if tab is None:
        raw = np.zeros(n + 8, dtype=np.int64)
        skew = (-(raw.ctypes.data // 8)) % 8      # words to the next 64-byte boundary
        tab = raw[skew:skew + n]
    info = np.zeros(I_END + extra, dtype=np.int64)
    info[I_MASK] = nb - 1
    info[I_BUCKETS] = nb
    return tab, info


HUGE = 1 << 21


def _huge_zeros(n):
    """n zeroed int64 words on 2 MiB-aligned memory advised for transparent
    huge pages (one TLB entry instead of 512: a lookup at a random bucket
    otherwise misses the TLB), or None where that is not possible or the
    table is under one huge page."""
    size = n * 8
    if size < HUGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        m = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return None
    raw = np.frombuffer(m, dtype=np.uint8)
    skew = (-raw.ctypes.data) % HUGE
    try:
        m.madvise(mmap.MADV_HUGEPAGE, skew - skew % mmap.PAGESIZE, size + HUGE - (skew - skew % mmap.PAGESIZE))
    except (OSError, ValueError):
        pass
    return raw[skew:skew + size].view(np.int64)


@hot(inline="always")
def base(info, h):
    """Word index of the first entry of key hash h's bucket."""
    return (h & info[I_MASK]) * (WAYS * WORDS)


@hot(inline="always")
def prefetch_bucket(tab, info, h):
    prefetch(tab, np.uint64(base(info, h)))


@hot(inline="always")
def w(tab, e, k):
    # NB: an unsigned index skips Numba's negative-index fix-up on every load
    return tab[np.uint64(e + k)]


@hot(inline="always")
def find(tab, b, k0, k1):
    """Word index of key (k0, k1)'s entry in the bucket at b, or -1."""
    tag = k1 | USED
    for s in range(WAYS):
        e = b + s * WORDS
        x = w(tab, e, 1)
        if x == tag and w(tab, e, 0) == k0:
            return e
        if x == 0:
            return -1
    return -1


@hot(inline="always")
def expired(meta, now, info):
    return now - (meta >> STATE_BITS) > info[I_TMO + (meta & STATE_MASK)]


@hot(inline="always")
def claim(tab, b, k0, k1, now, info, counters, evict):
    """An entry for key (k0, k1) in the bucket at b, keyed but not yet
    valued: the key's own entry (live or not), else an expired entry, else
    an empty one, else (with evict) the least recently seen. -1 when the
    bucket is full of live entries and evict is False. Returns (entry word
    index, fresh): fresh is False when the key was already there."""
    tag = k1 | USED
    exp = -1
    empty = -1
    oldest = -1
    oldest_t = 0
    for s in range(WAYS):
        e = b + s * WORDS
        x = w(tab, e, 1)
        if x == 0:
            empty = e
            break
        if x == tag and w(tab, e, 0) == k0:
            return e, False
        m = w(tab, e, 3)
        if exp < 0 and expired(m, now, info):
            exp = e
        t = m >> STATE_BITS
        if oldest < 0 or t < oldest_t:
            oldest = e
            oldest_t = t
    if exp >= 0:
        counters[C_EXPIRED] += 1
        e = exp
    elif empty >= 0:
        e = empty
    elif evict:
        counters[C_EVICTED] += 1
        e = oldest
    else:
        return -1, False
    tab[e] = k0
    tab[e + 1] = tag
    return e, True


# ---- control path (numpy over the whole table, between bursts) ----

def entries(tab):
    """The table as an (n, 4) view: k0, k1|USED, value, meta."""
    return tab.reshape(-1, WORDS)


def used(tab):
    """Boolean mask of used entries."""
    return entries(tab)[:, 1] != 0


def flush(tab, where=None):
    """Remove the entries where `where` (a boolean mask over entries(tab);
    all when None) and compact each bucket so used entries come first.
    Returns how many were removed."""
    e = entries(tab)
    if where is None:
        n = int(np.count_nonzero(e[:, 1]))
        tab[:] = 0
        return n
    where = where & (e[:, 1] != 0)
    n = int(np.count_nonzero(where))
    if n == 0:
        return 0
    e[where] = 0
    bk = e.reshape(-1, WAYS, WORDS)
    empty = bk[:, :, 1] == 0
    order = np.argsort(empty, axis=1, kind="stable")
    bk[:] = np.take_along_axis(bk, order[:, :, None], axis=1)
    return n
