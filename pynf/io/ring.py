"""Inter-stage rings: packets cross cores as handles, never copied.

Between a stage of U replicas and the next of D replicas there are U x D
rings, each single-producer/single-consumer; a packet goes to downstream
replica hash5(5-tuple) mod D, so a flow always meets the same replica (and
its state) and keeps its order. What the next stage needs besides the bytes
travels in the ring entry itself, beside the buffer index: the verdict port,
the input port and the frame length (pack_entry), so no second cache line
of the packet has to move between cores. The next stage re-parses the
headers from the bytes, which arrive in its cache with the hop; carrying
the parsed header arrays instead would copy 17 fields per packet through
the ring.

A full ring makes the producer wait (backpressure, the default) or drop the
packet under `ring_full` (--ring-full drop).
"""
from collections import namedtuple

import numpy as np

from pynf import shim
from pynf.config import BURST_MAX, HEADROOM, hot
from pynf.drops import PUNT_BASE, R_NO_SLOWPATH, R_RING_FULL
from pynf.hashing import hash5
from pynf.intrinsics import rdtsc
from pynf.io.pool import SLOT, cache_put
from pynf.slots import RO_FULL, RO_POLICY, RO_WAIT_CYCLES, W_RX, W_RX_BYTES, W_TX

# ins: rings polled (addresses), rr: [next ring], fill: per ring [polls, sum of counts, max]
RingIn = namedtuple("RingIn", "rings rr fill")
# outs: rings fed (addresses), stage: staged handles per ring, cnt: staged count per ring,
# opts: the RO_* slots of pynf.slots; table: the indirection table, ring of
# each bucket of the flow hash (RSS++'s: a stage's replicas change by
# moving buckets, pynf.control.scale)
RingOut = namedtuple("RingOut", "rings stage cnt opts table")
P_WAIT, P_DROP = 0, 1
BUCKETS = 256                   # indirection-table buckets (a power of two)


def spread(nrings, active=None):
    """An indirection table over the first `active` (all) rings, round robin."""
    active = nrings if active is None else active
    return (np.arange(BUCKETS) % max(1, active)).astype(np.int32)


def make_ring_in(addrs):
    return RingIn(np.array(addrs, dtype=np.uint64), np.zeros(1, dtype=np.int64),
                  np.zeros((len(addrs), 3), dtype=np.int64))


def make_ring_out(addrs, policy, active=None):
    n = len(addrs)
    return RingOut(np.array(addrs, dtype=np.uint64), np.zeros((n, BURST_MAX), dtype=np.uint64),
                   np.zeros(n, dtype=np.int64), np.array([policy, 0, 0], dtype=np.int64),
                   spread(n, active))


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
        cnt = shim.ring_count(ri.rings[r])
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
def rings_empty(ri):
    for r in range(len(ri.rings)):
        if shim.ring_count(ri.rings[r]) != 0:
            return False
    return True


@hot
def _push(ro, r, pool, cache, drops):
    """Enqueue ring r's staged handles; wait or drop what does not fit."""
    c = ro.cnt[r]
    done = 0
    spins = 0
    t_wait = 0
    while done < c:
        got = shim.ring_enqueue_burst(ro.rings[r], ro.stage[r].ctypes.data + 8 * done, c - done)
        done += got
        if done < c:
            if ro.opts[RO_POLICY] == P_DROP:
                for k in range(done, c):
                    cache_put(pool, cache, ro.stage[r, k] & np.uint64(0xFFFFFFFF))   # unpack the index
                    drops[R_RING_FULL] += 1
                break
            ro.opts[RO_FULL] += 1
            if spins == 0:
                t_wait = rdtsc()
            spins += 1
            backoff(spins)
    if spins > 0:
        ro.opts[RO_WAIT_CYCLES] += rdtsc() - t_wait      # backpressure, not work: kept out of busy cycles
    ro.cnt[r] = 0
    return done


@hot
def tx_ring(b, live, m, n, h, ro, pool, cache, drops, ws):
    """Forward live[:m] to the next stage by flow hash; free the dropped."""
    nr = len(ro.rings)
    # dropped packets (negative verdicts): back to the pool
    for i in range(n):
        if b.port[i] < 0:
            cache_put(pool, cache, h[i])
    sent = 0
    for j in range(m):
        i = live[j]
        if b.port[i] >= PUNT_BASE:      # the in-memory NIC has no slow path
            cache_put(pool, cache, h[i])
            drops[R_NO_SLOWPATH] += 1
            continue
        r = 0
        if nr > 1:
            r = ro.table[hash5(b.src_ip[i], b.dst_ip[i], b.sport[i], b.dport[i], b.proto[i]) & (BUCKETS - 1)]
        ro.stage[r, ro.cnt[r]] = pack_entry(h[i], b.len[i], b.port[i], b.in_port[i])
        ro.cnt[r] += 1
    for r in range(nr):
        if ro.cnt[r] > 0:
            sent += _push(ro, r, pool, cache, drops)
    ws[W_TX] += sent
