"""Preallocated open-addressing hash tables for NF state.

A Table maps a key of two int64 words (each below 2**62) to an int64 value.
Slots are 32 bytes, two per cache line: [k0, k1 | USED, value, hash], so a
lookup that hits touches one line. Linear probing; the slot count is a power
of two at least twice `capacity`, so the load factor never passes 0.5 and
probe sequences stay short. Nothing resizes: `capacity` entries fit, the
next insert reports full and the NF decides (the LB drops, `lb_full`).

Control-path functions (add, delete) may be called between bursts; the fast
path uses find / find_or_add, and prefetch_slot to hide the miss across a
burst (look up the slots of all packets, then probe).
"""
from collections import namedtuple

import numpy as np

from pynf.compiler.intrinsics import prefetch
from pynf.compiler.jit import hot

USED = 1 << 62
SLOT = 4  # int64 words per slot

# slots: int64[nslots * SLOT]; info: int64[4] = [mask, count, capacity, inserts_refused]
Table = namedtuple("Table", ["slots", "info"])

I_MASK, I_COUNT, I_CAP, I_FULL = 0, 1, 2, 3


def make_table(capacity):
    """An empty table for `capacity` entries."""
    if capacity < 1:
        raise ValueError("table capacity must be at least 1")
    nslots = 1
    while nslots < 2 * capacity:
        nslots <<= 1
    info = np.zeros(4, dtype=np.int64)
    info[I_MASK] = nslots - 1
    info[I_CAP] = capacity
    return Table(np.zeros(nslots * SLOT, dtype=np.int64), info)


def table_bytes(t):
    return t.slots.nbytes


@hot(inline="always")
def prefetch_slot(t, h):
    """Start loading the first slot for hash h (fast path, before find)."""
    prefetch(t.slots, np.uint64((h & t.info[I_MASK]) * SLOT))


@hot(inline="always")
def _w(slots, s, k):
    # NB: an unsigned index skips Numba's negative-index fix-up on every load
    return slots[np.uint64(s * SLOT + k)]


@hot
def find(t, k0, k1, h):
    """Slot index of key (k0, k1) with hash h, or -1."""
    mask = t.info[I_MASK]
    tag = k1 | USED
    s = h & mask
    slots = t.slots
    while True:
        w = _w(slots, s, 1)
        if w == tag and _w(slots, s, 0) == k0:
            return s
        if w == 0:
            return -1
        s = (s + 1) & mask


@hot
def find_or_add(t, k0, k1, h, value):
    """Slot of the key; a new key is added with `value`.

    Returns (slot, added). slot is -1 when the key is new and the table is at
    capacity (counted in info[I_FULL]).
    """
    mask = t.info[I_MASK]
    tag = k1 | USED
    s = h & mask
    slots = t.slots
    while True:
        w = _w(slots, s, 1)
        if w == tag and _w(slots, s, 0) == k0:
            return s, False
        if w == 0:
            break
        s = (s + 1) & mask
    if t.info[I_COUNT] >= t.info[I_CAP]:
        t.info[I_FULL] += 1
        return -1, False
    slots[s * SLOT] = k0
    slots[s * SLOT + 1] = tag
    slots[s * SLOT + 2] = value
    slots[s * SLOT + 3] = h
    t.info[I_COUNT] += 1
    return s, True


@hot(inline="always")
def value(t, s):
    return _w(t.slots, s, 2)


@hot(inline="always")
def set_value(t, s, v):
    t.slots[s * SLOT + 2] = v


@hot
def add(t, k0, k1, h, v):
    """Insert or update (control path). Returns False when full."""
    s, _ = find_or_add(t, k0, k1, h, v)
    if s < 0:
        return False
    t.slots[s * SLOT + 2] = v
    return True


@hot
def add_many(t, k0, k1, h, v):
    """Insert or update many keys (control path, compiled: a million routes
    in milliseconds). Returns how many did not fit."""
    missed = 0
    for i in range(len(k0)):
        if not add(t, k0[i], k1[i], h[i], v[i]):
            missed += 1
    return missed


@hot
def delete(t, k0, k1, h):
    """Remove a key (control path); backward-shift keeps probe chains intact."""
    s = find(t, k0, k1, h)
    if s < 0:
        return False
    mask = t.info[I_MASK]
    slots = t.slots
    hole = s
    j = s
    while True:
        j = (j + 1) & mask
        if slots[j * SLOT + 1] == 0:
            break
        # home slot of the entry at j: recomputed from its stored hash
        home = slots[j * SLOT + 3] & mask
        # move it into the hole if its home is not cyclically in (hole, j]
        if (j > hole and (home <= hole or home > j)) or (j < hole and (home <= hole and home > j)):
            for w in range(SLOT):
                slots[hole * SLOT + w] = slots[j * SLOT + w]
            hole = j
    for w in range(SLOT):
        slots[hole * SLOT + w] = 0
    t.info[I_COUNT] -= 1
    return True
