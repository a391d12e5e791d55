"""Maglev consistent hashing (Eisenbud et al., NSDI '16, section 3.4).

Each backend has a name ('a.b.c.d:port'). Two hashes of the name give it
an `offset` in [0, M) and a `skip` in [1, M), and so a preference list, a
permutation of the M table positions: offset, offset + skip, offset +
2 skip, ... (mod M; M is prime, so every skip generates all positions).
The lookup table is filled round-robin: each backend in turn takes its
most preferred position not yet taken, until all M are taken. Each backend
ends up with M/N positions (give or take one), and removing a backend
changes few positions other than its own: its positions are handed out
among the others, and only where that cascades does another flow move.

The lookup (the fast path) is `table[hash % M]`; the table is built here
on the control path. The name hashes are BLAKE2b, so every instance and
every replica with the same backend list builds the same table: two load
balancers choose the same backend for a flow without sharing any state.
The population order is the backends' sorted order (by address, then
port), not the order given, so it does not matter in what order backends
were listed or added.

    from pynf.tables.maglev import build
    table = build([(ip, port), ...], 65537)     # int32[M]: index into the list

build() takes about 2 ms (N = 8) to 3 ms (N = 100) for M = 65537
compiled (bench/lb.py); under NUMBA_DISABLE_JIT the fill runs as Python
(0.3 to 0.5 s).
"""
import hashlib

import numpy as np

from pynf.compiler.jit import hot
from pynf.errors import format_ipv4

DEFAULT_M = 65537


def is_prime(m):
    if m < 2:
        return False
    if m % 2 == 0:
        return m == 2
    f = 3
    while f * f <= m:
        if m % f == 0:
            return False
        f += 2
    return True


def name(ip, port):
    """The name a backend is hashed by: 'a.b.c.d:port'."""
    return f"{format_ipv4(ip)}:{int(port)}"


def offset_skip(nm, m):
    """(offset, skip) of a backend named nm in a table of size m."""
    d = hashlib.blake2b(nm.encode(), digest_size=16, person=b"pynf-maglev").digest()
    h1 = int.from_bytes(d[:8], "little")
    h2 = int.from_bytes(d[8:], "little")
    return h1 % m, h2 % (m - 1) + 1


@hot
def fill(offset, skip, m, entry, cur):
    """Round-robin population (the paper's Pseudocode 1).

    offset, skip: int64[N] of the backends in population order; entry:
    int32[m], set to -1 here and filled with 0..N-1; cur: int64[N] scratch
    (each backend's current position in its permutation)."""
    n = len(offset)
    for c in range(m):
        entry[c] = -1
    if n == 0:
        return
    for i in range(n):
        cur[i] = offset[i]
    filled = 0
    while True:
        for i in range(n):
            c = cur[i]
            while entry[c] >= 0:
                c += skip[i]
                if c >= m:
                    c -= m
            entry[c] = i
            c += skip[i]
            if c >= m:
                c -= m
            cur[i] = c
            filled += 1
            if filled == m:
                return


def build(backends, m=DEFAULT_M):
    """Lookup table for backends [(ip, port), ...]: int32[m] of indices into
    `backends` (all -1 when the list is empty). m must be prime."""
    if not is_prime(m):
        raise ValueError(f"Maglev table size {m} is not prime")
    backends = [(int(ip), int(port)) for ip, port in backends]
    order = sorted(range(len(backends)), key=lambda k: backends[k])
    offset = np.zeros(len(order), dtype=np.int64)
    skip = np.zeros(len(order), dtype=np.int64)
    for j, k in enumerate(order):
        offset[j], skip[j] = offset_skip(name(*backends[k]), m)
    entry = np.empty(m, dtype=np.int32)
    fill(offset, skip, m, entry, np.zeros(max(1, len(order)), dtype=np.int64))
    if not order:
        return entry
    return np.asarray(order, dtype=np.int32)[entry]
