"""Inter-stage rings: packets cross cores as handles, never copied.

Between a stage of U replicas and the next of D replicas there are U x D
rings, each single-producer/single-consumer; a packet goes to downstream
replica hash5(5-tuple) mod D (or the hash of the key the next stage's NFs
declare: pynf.packet.keys), so a flow always meets the same replica (and
its state) and keeps its order. What the next stage needs besides the bytes
travels in the ring entry itself, beside the buffer index: the verdict port,
the input port and the frame length (pack_entry), so no second cache line
of the packet has to move between cores. The next stage re-parses the
headers from the bytes, which arrive in its cache with the hop; carrying
the parsed header arrays instead would copy 17 fields per packet through
the ring.

A full ring makes the producer wait (backpressure, the default) or drop the
packet under `ring_full` (--ring-full drop).

Two kinds of ring, one logic: pynf's own rings (in-memory I/O: RingIn,
RingOut) and DPDK's rte_rings (RteRingIn, RteRingOut: the same fields).
Staging by flow bucket, the push with its wait or drop, and rings_empty
are written once, here; the few operations that differ (count, enqueue,
freeing what a full ring refused) are chosen at compile time by the
rings' type (Numba overloads), so in-memory code never links DPDK.
"""
from collections import namedtuple

import numpy as np
from numba import types
from numba.extending import overload

from pynf import shim
from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import hot
from pynf.io.mem.pool import SLOT, cache_put
from pynf.packet.batch import BURST_MAX, HEADROOM
from pynf.packet.drops import PUNT_BASE, R_NO_SLOWPATH, R_RING_FULL
from pynf.packet.keys import K_FLOW, key_hash
from pynf.slots import RO_FULL, RO_KEY, RO_POLICY, RO_WAIT_CYCLES, W_RX, W_RX_BYTES, W_TX

# ins: rings polled (addresses), rr: [next ring], fill: per ring [polls, sum of counts, max]
RingIn = namedtuple("RingIn", "rings rr fill")
# outs: rings fed (addresses), stage: staged handles per ring, cnt: staged count per ring,
# opts: the RO_* slots of pynf.slots; table: the indirection table, ring of
# each bucket of the flow hash (RSS++'s: a stage's replicas change by
# moving buckets, pynf.runtime.scale)
RingOut = namedtuple("RingOut", "rings stage cnt opts table")
# the same over DPDK rte_rings (pynf.io.dpdk.kernels)
RteRingIn = namedtuple("RteRingIn", RingIn._fields)
RteRingOut = namedtuple("RteRingOut", RingOut._fields)
P_WAIT, P_DROP = 0, 1
BUCKETS = 256                   # indirection-table buckets (a power of two)


def spread(nrings, active=None):
    """An indirection table over the first `active` (all) rings, round robin."""
    active = nrings if active is None else active
    return (np.arange(BUCKETS) % max(1, active)).astype(np.int32)


def make_ring_in(addrs, rte=False):
    return (RteRingIn if rte else RingIn)(np.array(addrs, dtype=np.uint64), np.zeros(1, dtype=np.int64),
                                          np.zeros((len(addrs), 3), dtype=np.int64))


def make_ring_out(addrs, policy, active=None, rte=False):
    n = len(addrs)
    return (RteRingOut if rte else RingOut)(
        np.array(addrs, dtype=np.uint64), np.zeros((n, BURST_MAX), dtype=np.uint64),
        np.zeros(n, dtype=np.int64), np.array([policy, 0, 0, K_FLOW], dtype=np.int64), spread(n, active))


# ---- what differs between the two kinds (compiled code only) ----

def _rte(ty):
    return isinstance(ty, types.BaseNamedTuple) and ty.instance_class in (RteRingIn, RteRingOut)


def ring_count(rs, r):
    """Entries in ring r of rs (either kind)."""
    raise NotImplementedError("compiled code only")


def ring_enqueue(ro, r, at, n):
    """Enqueue ro.stage[r, at:at+n]; the number taken."""
    raise NotImplementedError("compiled code only")


def free_refused(ro, r, at, n, frees):
    """Free the packets of ro.stage[r, at:at+n] (a full ring refused them).
    frees: (pool, cache) for pynf's rings, a scratch array for rte_rings."""
    raise NotImplementedError("compiled code only")


# NB: not overload(..., inline="always"): with Numba's IR inlining of these
# the drop path freed buffers twice (the tiny-ring test in
# tests/test_pipeline.py caught it; the cause was not pinned down). LLVM
# inlines them anyway.
@overload(ring_count)
def _ov_count(rs, r):
    if _rte(rs):
        return lambda rs, r: shim.rte_ring_count(rs.rings[r])
    return lambda rs, r: shim.ring_count(rs.rings[r])


@overload(ring_enqueue)
def _ov_enqueue(ro, r, at, n):
    if _rte(ro):
        return lambda ro, r, at, n: shim.rte_ring_enqueue(ro.rings[r], ro.stage[r].ctypes.data + 8 * at, n)
    return lambda ro, r, at, n: shim.ring_enqueue_burst(ro.rings[r], ro.stage[r].ctypes.data + 8 * at, n)


@overload(free_refused)
def _ov_free(ro, r, at, n, frees):
    if _rte(ro):
        def free_rte(ro, r, at, n, frees):
            for k in range(n):          # strip the verdict riding in the top 16 bits
                frees[k] = ro.stage[r, at + k] & np.uint64(0xFFFFFFFFFFFF)
            shim.dpdk_free_bulk(frees.ctypes.data, n)
        return free_rte

    def free_mem(ro, r, at, n, frees):
        pool, cache = frees
        for k in range(at, at + n):
            cache_put(pool, cache, ro.stage[r, k] & np.uint64(0xFFFFFFFF))   # unpack the index
    return free_mem


# ---- the logic both kinds share ----

@hot(inline="always")
def stage(ro, b, i, entry):
    """Stage packet i's ring entry for the replica that holds its key's
    state (its flow, unless the next stage's NFs say otherwise)."""
    r = 0
    if len(ro.rings) > 1:
        r = ro.table[key_hash(ro.opts[RO_KEY], b, i) & (BUCKETS - 1)]
    ro.stage[r, ro.cnt[r]] = entry
    ro.cnt[r] += 1


@hot(inline="always")
def push_all(ro, drops, frees):
    """Enqueue every ring's staged entries; wait for room (backpressure) or
    drop what does not fit under ring_full. Returns the number sent."""
    sent = 0
    for r in range(len(ro.rings)):
        c = ro.cnt[r]
        done = 0
        spins = 0
        t_wait = 0
        while done < c:
            done += ring_enqueue(ro, r, done, c - done)
            if done < c:
                if ro.opts[RO_POLICY] == P_DROP:
                    free_refused(ro, r, done, c - done, frees)
                    drops[R_RING_FULL] += c - done
                    break
                ro.opts[RO_FULL] += 1
                if spins == 0:
                    t_wait = rdtsc()
                spins += 1
                backoff(spins)
        if spins > 0:
            ro.opts[RO_WAIT_CYCLES] += rdtsc() - t_wait      # backpressure, not work: kept out of busy cycles
        sent += done
        ro.cnt[r] = 0
    return sent


@hot
def rings_empty(ri):
    for r in range(len(ri.rings)):
        if ring_count(ri, r) != 0:
            return False
    return True


# ring entry (in-memory I/O): bits 0-31 buffer index, 32-43 frame length,
# 44-53 verdict port, 54-63 input port
@hot(inline="always")
def pack_entry(idx, ln, port, in_port):
    return np.uint64(int(idx) | (int(ln) << 32) | (int(port) << 44) | (int(in_port) << 54))


@hot(inline="always")
def sample_fill(ri, r, cnt):
    """Record ring r's fill level at this poll (for the report's mean and max)."""
    ri.fill[r, 0] += 1
    ri.fill[r, 1] += cnt
    if cnt > ri.fill[r, 2]:
        ri.fill[r, 2] = cnt


@hot(inline="always")
def backoff(spins):
    # NB: an oversubscribed pipeline (more workers than cores) only makes
    # progress if a blocked producer gives its core away.
    if spins < 64:
        shim.cpu_pause()
    else:
        shim.cpu_yield()


@hot
def rx_mem(ri, pool, h, b, burst, ws):
    """Dequeue up to `burst` in-memory buffers from the input rings."""
    nr = len(ri.rings)
    n = 0
    r = ri.rr[0]
    for _ in range(nr):
        cnt = ring_count(ri, r)
        sample_fill(ri, r, cnt)
        if cnt > 0:
            got = shim.ring_dequeue_burst(ri.rings[r], h.ctypes.data + 8 * n, burst - n)
            for k in range(n, n + got):
                e = h[k]
                idx = e & np.uint64(0xFFFFFFFF)
                ln = (e >> np.uint64(32)) & np.uint64(0xFFF)
                b.off[k] = int(idx) * SLOT + HEADROOM
                b.len[k] = ln
                b.port[k] = (e >> np.uint64(44)) & np.uint64(0x3FF)
                b.in_port[k] = e >> np.uint64(54)
                h[k] = idx
                ws[W_RX_BYTES] += ln
            n += got
        r += 1
        if r == nr:
            r = 0
        if n == burst:
            break
    ri.rr[0] = r
    ws[W_RX] += n
    return n


@hot
def tx_ring(b, live, m, n, h, ro, pool, cache, drops, ws):
    """Forward live[:m] to the next stage by flow hash; free the dropped."""
    # dropped packets (negative verdicts): back to the pool
    for i in range(n):
        if b.port[i] < 0:
            cache_put(pool, cache, h[i])
    for j in range(m):
        i = live[j]
        if b.port[i] >= PUNT_BASE:      # the in-memory NIC has no slow path
            cache_put(pool, cache, h[i])
            drops[R_NO_SLOWPATH] += 1
            continue
        stage(ro, b, i, pack_entry(h[i], b.len[i], b.port[i], b.in_port[i]))
    ws[W_TX] += push_all(ro, drops, (pool, cache))
