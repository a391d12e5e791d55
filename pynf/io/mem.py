"""In-memory I/O: an emulated multi-queue NIC over a preallocated pool.

Buffers: one uint8 array of `nbufs` slots of HEADROOM + DATAROOM bytes, as
a DPDK mempool lays out mbufs; a packet is the buffer index (its handle)
and lives at idx * SLOT + HEADROOM. Free buffers sit in a shim ring
(multi-producer/consumer: a pipeline frees on another core than it
allocates) behind a per-worker cache, as rte_mempool does; so nothing is
allocated or copied inside the chain, and buffers are recycled.

Receive queues play the NIC: each has its own sequence of frames (the
built-in flows, or the packets of a pcap) and writes the next ones into
free buffers, paced to a wire rate if asked. Like a NIC's RSS, frames are
spread over queues by a flow hash when the traffic is loaded, so a flow
always arrives on the same queue. For built-in traffic only the 64 header
bytes are written per packet: the payload is zeros that no NF changes, and
a NIC's DMA costs the CPU nothing either.

Transmit counts packets and bytes per port, optionally captures them for
--pcap-out, and returns the buffers to the pool.
"""
from collections import namedtuple

import numpy as np

from pynf import shim
from pynf.config import DATAROOM, HEADROOM, hot
from pynf.drops import PUNT_BASE, R_NO_SLOWPATH, R_OVERSIZE
from pynf.intrinsics import copy, rdtsc

SLOT = HEADROOM + DATAROOM
CACHE_SIZE = 512
CACHE_BULK = 128

Pool = namedtuple("Pool", "mem ring nbufs")
Cache = namedtuple("Cache", "objs count")

# st: [pos, passes, max_passes (-1: loop forever), done, budget (-1: none)]
# pace: [TSC ticks per wire bit (0: unpaced), TSC time of the next frame]
RxQueue = namedtuple("RxQueue", "arena t_off t_len t_copy seq port st pace")
Q_POS, Q_PASSES, Q_MAX_PASSES, Q_DONE, Q_BUDGET = range(5)

# per-worker capture for --pcap-out: rec[k] = (offset in cmem, length, tsc)
Capture = namedtuple("Capture", "mem rec st")
C_NREC, C_NBYTES, C_ON = 0, 1, 2

# worker counters (int64[16]); shared with pynf.runtime
# W_PUNTED: handed to the slow path; W_INJ_SENT: punted packets the slow path
# sent back out through this worker; W_ORIG_SENT / W_ORIG_FAILED: packets
# the slow path made itself (ARP requests), sent / refused by the port.
W_RX, W_TX, W_BURSTS, W_IDLE, W_CYCLES, W_RX_BYTES, W_PUNTED, W_BUSY = range(8)
# W_CONTROL: set by the runtime when a control change waits for this worker:
# the loop returns at the end of its burst instead of at its deadline
W_INJ_SENT, W_ORIG_SENT, W_ORIG_FAILED, W_CONTROL = 8, 9, 10, 11


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


def make_queue(arena, t_off, t_len, t_copy, seq, port=0, passes=-1, budget=-1,
               tsc_per_bit=0.0):
    st = np.zeros(8, dtype=np.int64)
    st[Q_MAX_PASSES] = passes
    st[Q_BUDGET] = budget
    if len(seq) == 0 or budget == 0:
        st[Q_DONE] = 1
    return RxQueue(arena, t_off.astype(np.int64), t_len.astype(np.int32), t_copy.astype(np.int32),
                   seq.astype(np.int32), np.int32(port), st, np.array([tsc_per_bit, 0.0], dtype=np.float64))


def make_capture(nbytes, nrec):
    return Capture(np.zeros(nbytes, dtype=np.uint8), np.zeros((nrec, 3), dtype=np.int64),
                   np.zeros(4, dtype=np.int64))


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


@hot
def rx(q, pool, cache, h, b, burst, drops, ws):
    """Receive up to `burst` frames from queue q into batch b; returns n."""
    st = q.st
    if st[Q_DONE]:
        return 0
    mem = pool.mem
    nseq = len(q.seq)
    tpb = q.pace[0]
    now = 0.0
    if tpb > 0.0:
        now = float(rdtsc())
        if q.pace[1] == 0.0:
            q.pace[1] = now
    n = 0
    while n < burst:
        t = q.seq[st[Q_POS]]
        ln = q.t_len[t]
        if tpb > 0.0:
            if q.pace[1] > now:
                break
            q.pace[1] += (ln + 24) * 8 * tpb     # wire bits: + FCS + preamble/IFG
        if ln > DATAROOM:
            ws[W_RX] += 1
            ws[W_RX_BYTES] += ln
            drops[R_OVERSIZE] += 1
        else:
            idx = cache_get(pool, cache)
            if idx < 0:
                break           # every buffer is in flight: deliver the rest later
            off = int(idx) * SLOT + HEADROOM
            copy(mem, off, q.arena, q.t_off[t], q.t_copy[t])
            b.off[n] = off
            b.len[n] = ln
            b.in_port[n] = q.port
            h[n] = idx
            n += 1
            ws[W_RX_BYTES] += ln
        pos = st[Q_POS] + 1
        if pos == nseq:
            pos = 0
            st[Q_PASSES] += 1
            if st[Q_PASSES] == st[Q_MAX_PASSES]:
                st[Q_DONE] = 1
        st[Q_POS] = pos
        if st[Q_BUDGET] > 0:
            st[Q_BUDGET] -= 1
            if st[Q_BUDGET] == 0:
                st[Q_DONE] = 1
        if st[Q_DONE]:
            break
    ws[W_RX] += n
    return n


@hot
def tx(b, live, m, n, h, pool, cache, txmap, txstat, cap, drops, ws):
    """Transmit live[:m] to their ports, free all n buffers of the burst.
    Packets for the slow path are dropped (no_slowpath): this NIC has none."""
    mem = pool.mem
    nmap = len(txmap)
    capture = cap.st[C_ON] != 0
    sent = 0
    for j in range(m):
        i = live[j]
        if b.port[i] >= PUNT_BASE:
            drops[R_NO_SLOWPATH] += 1
            continue
        sent += 1
        tp = txmap[b.port[i] % nmap]
        ln = b.len[i]
        txstat[tp, 0] += 1
        txstat[tp, 1] += ln
        if capture:
            r = cap.st[C_NREC]
            o = cap.st[C_NBYTES]
            copy(cap.mem, o, mem, b.off[i], ln)
            cap.rec[r, 0] = o
            cap.rec[r, 1] = ln
            cap.rec[r, 2] = rdtsc()
            cap.st[C_NREC] = r + 1
            cap.st[C_NBYTES] = o + ln
    ws[W_TX] += sent
    for i in range(n):
        cache_put(pool, cache, h[i])


@hot(inline="always")
def capture_room(cap, burst):
    """False when the capture buffer might overflow during the next burst."""
    if cap.st[C_ON] == 0:
        return True
    return (cap.st[C_NREC] + burst <= len(cap.rec)
            and cap.st[C_NBYTES] + burst * DATAROOM <= len(cap.mem))
