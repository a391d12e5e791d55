"""The in-memory buffer pool: preallocated slots laid out as a DPDK
mempool lays out mbufs, a free ring, and per-worker caches.

One uint8 array of `nbufs` slots of HEADROOM + DATAROOM bytes; a packet is
its buffer index (its handle) and lives at idx * SLOT + HEADROOM. Free
buffers sit in a shim ring (multi-producer/consumer: a pipeline frees on
another core than it allocates) behind a per-worker cache, as rte_mempool
does, so nothing is allocated or copied inside the chain, and buffers are
recycled.
"""
from collections import namedtuple

import numpy as np

from pynf import shim
from pynf.compiler.jit import hot
from pynf.packet.batch import DATAROOM, HEADROOM

SLOT = HEADROOM + DATAROOM
CACHE_SIZE = 512
CACHE_BULK = 128

Pool = namedtuple("Pool", "mem ring nbufs")
Cache = namedtuple("Cache", "objs count")


class MemPool:
    def __init__(self, nbufs):
        self.nbufs = nbufs
        self.mem = np.zeros(nbufs * SLOT, dtype=np.uint8)
        size = 1
        while size < nbufs:
            size <<= 1
        self.ring = shim.Ring(size)
        ids = np.arange(nbufs, dtype=np.uint64)
        if self.ring.enqueue(ids) != nbufs:
            raise RuntimeError("pool ring too small")
        self.pool = Pool(self.mem, self.ring.addr, nbufs)

    def in_use(self, caches=()):
        return self.nbufs - self.ring.count() - sum(int(c.count[0]) for c in caches)


def make_cache():
    return Cache(np.zeros(CACHE_SIZE, dtype=np.uint64), np.zeros(1, dtype=np.int64))


@hot(inline="always")
def cache_get(pool, cache):
    """A free buffer index, or -1 when the pool is empty."""
    c = cache.count[0]
    if c == 0:
        got = shim.ring_dequeue_burst(pool.ring, cache.objs.ctypes.data, CACHE_BULK)
        c = got
        if c == 0:
            return -1
    c -= 1
    cache.count[0] = c
    return cache.objs[c]


@hot(inline="always")
def cache_put(pool, cache, idx):
    c = cache.count[0]
    if c == CACHE_SIZE:
        # NB: return the oldest half, keep the recently used (cache-hot) buffers
        shim.ring_enqueue_burst(pool.ring, cache.objs.ctypes.data, CACHE_BULK)
        for k in range(CACHE_SIZE - CACHE_BULK):
            cache.objs[k] = cache.objs[k + CACHE_BULK]
        c = CACHE_SIZE - CACHE_BULK
    cache.objs[c] = idx
    cache.count[0] = c + 1


@hot
def cache_flush(pool, cache):
    """Give every cached buffer back to the pool (at worker exit)."""
    c = cache.count[0]
    while c > 0:
        c -= shim.ring_enqueue_burst(pool.ring, cache.objs.ctypes.data, c)
    cache.count[0] = 0
