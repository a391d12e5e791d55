"""A set-associative flow table with idle timeouts and LRU eviction.

Entries are 4 int64 words, 32 bytes, two to a cache line:

    [k0, k1 | USED, value, last_seen << 3 | state]

The key is two words below 2**62 (pynf.tables.hashing.key5 packs a 5-tuple
into them); `value` is the caller's (any int64); `state` (0..7) picks the
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
entry (counted as an expiry), an empty entry, or else, as the caller
allows (its `evict`): with EVICT_ANY the bucket's least recently seen
entry in a weak state (info[I_WEAK], a bit per state: a half-open or a
closing connection's, say), else its least recently seen entry; with
EVICT_WEAK a weak entry only (so a newcomer that is itself weak never
pushes out an entry that is not); with EVICT_NONE nothing. An eviction
is counted; it is LRU within the bucket, not across the table. Capacity is a
power-of-two number of buckets; a table for `capacity` entries holds
ceil(capacity / 8) buckets rounded up to a power of two. Entries expire
lazily: nothing scans the table on the fast path; an expired entry is
found dead when it is looked up or when its slot is wanted.

Growth. A table is made for `capacity` entries and may grow to
`max_capacity` (rounded up the same way): it doubles, one bucket at a
time, as linear hashing does (Litwin, VLDB '80). The memory for the cap
is reserved at make (anonymous pages: untouched ones cost nothing); a
doubling from nb buckets splits bucket b into b and b + nb by one more
bit of the hash, in order, a few buckets each time an entry is claimed,
so no insert pays for more than GROW_STEPS buckets (16 entries) and
nothing stops for a rehash. Meanwhile `base` sends hash h to
h & (2 nb - 1) when h & (nb - 1) is below the split point, else to
h & (nb - 1). A doubling starts when the used entries reach
GROW_LOAD of the slots (the per-bucket load at which a full bucket, and
so an eviction, stays rare) and finishes, at GROW_STEPS buckets an
insert, before the load has risen by 1 / (8 GROW_STEPS). At the cap the
table stops growing and full buckets evict as before. Splitting
re-hashes the entries it moves, so a growing table's `claim` is made by
`claimer(hashfn)` for the caller's hash of a key (a @hot function of
(k0, k1)), the same one it places keys by.

`info` (int64) holds the geometry (level mask, active buckets, split
point, bucket cap), the used-entry count and the count at which the next
doubling starts, the doublings so far, the weak states, the eight
states' timeouts (I_TMO + state), and after them any slots the caller asks for (make's
`extra`): one small array for a table's settings, since every array an
NF's state holds is passed on every call. Counters (an int64 array
passed by the caller) at C_EXPIRED and C_EVICTED. The control path sees
the active buckets only (`entries(tab, info)`).
"""
import numpy as np

from pynf.compiler.intrinsics import prefetch
from pynf.compiler.jit import hot
from pynf.tables import reserve

WAYS = 8
WORDS = 4                       # int64 words per entry
USED = 1 << 62
STATE_BITS = 3
STATE_MASK = (1 << STATE_BITS) - 1

# info: int64[I_END + extra]
I_MASK = 0          # the level's bucket mask: nb - 1
I_BUCKETS = 1       # active buckets: nb + split
I_SPLIT = 2         # buckets of this level split so far (0: not growing)
I_MAXB = 3          # bucket cap
I_COUNT = 4         # used entries
I_GROW_AT = 5       # I_COUNT at which the next doubling starts
I_RESIZES = 6       # doublings done
I_WEAK = 7          # the states evicted first: bit 1 << state for each
I_TMO = 8           # timeout of state 0..7
I_END = I_TMO + (1 << STATE_BITS)

EVICT_NONE, EVICT_ANY, EVICT_WEAK = 0, 1, 2

GROW_LOAD = 0.25    # start doubling at a quarter of the slots used
GROW_STEPS = 2      # buckets split per claim while doubling
NEVER = 1 << 62

# counter slots used here (the caller's array may hold more after these)
C_EXPIRED, C_EVICTED = 0, 1


def _buckets(capacity):
    nb = 1
    while nb * WAYS < capacity:
        nb <<= 1
    return nb


def make(capacity, extra=0, max_capacity=None):
    """(entries, info) for at least `capacity` entries, growing up to
    `max_capacity` (None: it does not grow): entries is a 64-byte aligned
    int64 array of max buckets * WAYS * WORDS words (the reserve: only the
    active buckets are touched); info has `extra` slots for the caller
    after I_END, and timeouts 0 (set them)."""
    if capacity < 1:
        raise ValueError("flow table capacity must be at least 1")
    nb = _buckets(capacity)
    maxb = max(nb, _buckets(max_capacity or capacity))
    n = maxb * WAYS * WORDS
    tab = _reserve(n, nb * WAYS * WORDS)
    info = np.zeros(I_END + extra, dtype=np.int64)
    info[I_MASK] = nb - 1
    info[I_BUCKETS] = nb
    info[I_MAXB] = maxb
    info[I_GROW_AT] = grow_at(nb, maxb)
    if maxb > nb:
        reserve.watch(tab, info, _soon)
    return tab, info


@hot(inline="always")
def grow_at(nb, maxb):
    """The used-entry count at which a table of nb buckets starts doubling
    (NEVER when doubling would pass the cap of maxb buckets)."""
    return np.int64(nb * WAYS * GROW_LOAD) if 2 * nb <= maxb else np.int64(NEVER)


def adopt(info, other):
    """Give info the geometry and count of other (a table's info made by
    `make`): for a copy of a table's settings beside another table."""
    info[:I_WEAK] = other[:I_WEAK]


def _reserve(n, touched):
    """n zeroed int64 words, 64-byte aligned: on 2 MiB-aligned memory
    advised for transparent huge pages where the table is that big (one
    TLB entry instead of 512: a lookup at a random bucket otherwise
    misses the TLB), on anonymous pages (nothing beyond what is written
    costs memory; pynf.tables.reserve) where it may grow."""
    if n * 8 >= reserve.HUGE or n > touched:
        tab = reserve.mapped(n, reserve.HUGE if n * 8 >= reserve.HUGE else 64, huge=n * 8 >= reserve.HUGE)
        if tab is not None:
            return tab
    raw = np.zeros(n + 8, dtype=np.int64)
    skew = (-(raw.ctypes.data // 8)) % 8      # words to the next 64-byte boundary
    return raw[skew:skew + n]


def _soon(info):
    """Bytes of a table its fast path will touch soon: the active buckets,
    and the next level's once the count is on its way to a doubling (or
    at once while the next level is small: a small level fills fast)."""
    nb = int(info[I_MASK]) + 1
    if info[I_GROW_AT] != NEVER and (info[I_SPLIT] > 0 or info[I_COUNT] >= reserve.AHEAD * info[I_GROW_AT]
                                     or 2 * nb * WAYS * WORDS * 8 <= reserve.EAGER):
        nb *= 2
    return max(nb, int(info[I_BUCKETS])) * WAYS * WORDS * 8


@hot(inline="always")
def base(info, h):
    """Word index of the first entry of key hash h's bucket."""
    m = info[I_MASK]
    b = h & m
    if b < info[I_SPLIT]:           # split already: one more bit of h
        b = h & (2 * m + 1)
    return b * (WAYS * WORDS)


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
def claim_at(tab, b, k0, k1, now, info, counters, evict):
    """An entry for key (k0, k1) in the bucket at b, keyed but not yet
    valued: the key's own entry (live or not), else an expired entry, else
    an empty one, else as `evict` allows (EVICT_ANY: the least recently
    seen weak entry, else the least recently seen; EVICT_WEAK: a weak one
    only; EVICT_NONE: none). -1 when nothing may be taken. Returns (entry
    word index, fresh): fresh is False when the key was already there.
    The table does not grow (a table with rows beside it: pynf.nf.blocks)."""
    tag = k1 | USED
    weak = info[I_WEAK]
    exp = -1
    empty = -1
    oldest = -1
    oldest_t = 0
    oldw = -1
    oldw_t = 0
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
        if (weak >> (m & STATE_MASK)) & 1 and (oldw < 0 or t < oldw_t):
            oldw = e
            oldw_t = t
    if exp >= 0:
        counters[C_EXPIRED] += 1
        e = exp
    elif empty >= 0:
        info[I_COUNT] += 1
        e = empty
    elif evict != EVICT_NONE and oldw >= 0:
        counters[C_EVICTED] += 1
        e = oldw
    elif evict == EVICT_ANY:
        counters[C_EVICTED] += 1
        e = oldest
    else:
        return -1, False
    tab[e] = k0
    tab[e + 1] = tag
    return e, True


@hot(inline="always")
def remove(tab, info, b, e):
    """Remove entry e of the bucket at b: the bucket's last used entry takes
    its place, so that used entries stay first."""
    last = e
    for s in range(WAYS):
        x = b + s * WORDS
        if w(tab, x, 1) == 0:
            break
        last = x
    for k in range(WORDS):
        tab[e + k] = tab[last + k]
        tab[last + k] = 0
    info[I_COUNT] -= 1


def claimer(hashfn):
    """`claim(tab, info, h, k0, k1, now, counters, evict)` for a table
    whose keys hash by hashfn(k0, k1) (a @hot function; h is the key's
    hash): claim_at in h's bucket, after splitting GROW_STEPS buckets
    while the table grows. Entry indices taken before a claim may have
    moved; the one it returns stays until the next claim. A function made
    here, not a function taken as an argument: Numba caches the one and
    not the other."""
    grow = _grower(hashfn)

    @hot(inline="always")
    def claim(tab, info, h, k0, k1, now, counters, evict):
        if info[I_SPLIT] > 0 or info[I_COUNT] >= info[I_GROW_AT]:
            grow(tab, info)
        return claim_at(tab, base(info, h), k0, k1, now, info, counters, evict)

    return claim


def _grower(hashfn):
    @hot
    def grow(tab, info):
        """Split up to GROW_STEPS buckets of the doubling under way
        (starting one if the count has reached I_GROW_AT); the last split of
        a level doubles the mask. Bucket b's entries stay in b or move to
        b + nb by bit nb of their hash, in order (used entries first in
        both)."""
        nb = info[I_MASK] + 1
        for _ in range(GROW_STEPS):
            b = info[I_SPLIT]
            lo = b * (WAYS * WORDS)
            hi = (b + nb) * (WAYS * WORDS)
            keep = 0
            move = 0
            for s in range(WAYS):
                e = lo + s * WORDS
                t1 = tab[e + 1]
                if t1 == 0:
                    break
                if hashfn(tab[e], t1 & ~USED) & nb:
                    d = hi + move * WORDS
                    move += 1
                else:
                    d = lo + keep * WORDS
                    keep += 1
                if d != e:
                    for k in range(WORDS):
                        tab[d + k] = tab[e + k]
            for s in range(keep, WAYS):
                e = lo + s * WORDS
                if tab[e + 1] == 0:
                    break
                for k in range(WORDS):
                    tab[e + k] = 0
            info[I_SPLIT] = b + 1
            info[I_BUCKETS] = nb + b + 1
            if b + 1 == nb:             # the level is done: twice the buckets
                info[I_MASK] = 2 * nb - 1
                info[I_SPLIT] = 0
                info[I_RESIZES] += 1
                info[I_GROW_AT] = grow_at(2 * nb, info[I_MAXB])
                return

    return grow


# ---- control path (numpy over the active buckets, between bursts) ----

def entries(tab, info):
    """The active buckets' entries as an (n, 4) view: k0, k1|USED, value, meta."""
    return tab[:int(info[I_BUCKETS]) * WAYS * WORDS].reshape(-1, WORDS)


def geometry(info):
    """{entries, max_entries, used, resizes} of a table (control path)."""
    return {"entries": int(info[I_BUCKETS]) * WAYS, "max_entries": int(info[I_MAXB]) * WAYS,
            "used": int(info[I_COUNT]), "resizes": int(info[I_RESIZES])}


def flush(tab, info, where=None):
    """Remove the entries where `where` (a boolean mask over
    entries(tab, info); all when None) and compact each bucket so used
    entries come first. Returns how many were removed."""
    e = entries(tab, info)
    if where is None:
        n = int(np.count_nonzero(e[:, 1]))
        e[:] = 0
        info[I_COUNT] -= n
        return n
    where = where & (e[:, 1] != 0)
    n = int(np.count_nonzero(where))
    if n == 0:
        return 0
    e[where] = 0
    info[I_COUNT] -= n
    bk = e.reshape(-1, WAYS, WORDS)
    empty = bk[:, :, 1] == 0
    order = np.argsort(empty, axis=1, kind="stable")
    bk[:] = np.take_along_axis(bk, order[:, :, None], axis=1)
    return n
