"""Inter-stage rings: packets cross cores as handles, never copied.

Between a stage of U replicas and the next of D replicas there are U x D
rings, each single-producer/single-consumer; a packet goes to downstream
replica hash5(5-tuple) mod D, so a flow always meets the same replica (and
its state) and keeps its order. What the next stage needs besides the bytes
travels in the packet's headroom (pynf.packet.store_meta): the verdict port,
the input port and the frame length. The next stage re-parses the headers
from the bytes, which are in its cache after the hop anyway.

A full ring makes the producer wait (backpressure, the default) or drop the
packet under `ring_full` (--ring-full drop).
"""
from collections import namedtuple

import numpy as np

from pynf import shim
from pynf.config import BURST_MAX, META_OFF, hot
from pynf.drops import R_RING_FULL
from pynf.hashing import hash5
from pynf.intrinsics import rdtsc
from pynf.io.mem import HEADROOM, SLOT, W_IDLE, W_RX, W_RX_BYTES, W_TX, W_TX_BYTES, cache_put
from pynf.packet import rd16, store_meta, wr16

# ins: rings polled (addresses), rr: [next ring], fill: per ring [polls, sum of counts, max]
RingIn = namedtuple("RingIn", "rings rr fill")
# outs: rings fed (addresses), stage: staged handles per ring, cnt: staged count per ring,
# opts: [policy (0 wait, 1 drop), waits, TSC cycles spent waiting for room]
RingOut = namedtuple("RingOut", "rings stage cnt opts")
P_WAIT, P_DROP = 0, 1


def make_ring_in(addrs):
    return RingIn(np.array(addrs, dtype=np.uint64), np.zeros(1, dtype=np.int64),
                  np.zeros((len(addrs), 3), dtype=np.int64))


def make_ring_out(addrs, policy):
    n = len(addrs)
    return RingOut(np.array(addrs, dtype=np.uint64), np.zeros((n, BURST_MAX), dtype=np.uint64),
                   np.zeros(n, dtype=np.int64), np.array([policy, 0, 0], dtype=np.int64))


@hot(inline="always")
def meta_store(mem, off, port, in_port, ln):
    store_meta(mem, off, port)
    wr16(mem, off - META_OFF + 4, in_port)
    wr16(mem, off - META_OFF + 6, ln)


@hot
def rx_mem(ri, pool, h, b, burst, ws):
    """Dequeue up to `burst` in-memory buffers from the input rings."""
    nr = len(ri.rings)
    mem = pool.mem
    n = 0
    r = ri.rr[0]
    for _ in range(nr):
        cnt = shim.ring_count(ri.rings[r])
        ri.fill[r, 0] += 1
        ri.fill[r, 1] += cnt
        if cnt > ri.fill[r, 2]:
            ri.fill[r, 2] = cnt
        if cnt > 0:
            got = shim.ring_dequeue_burst(ri.rings[r], h.ctypes.data + 8 * n, burst - n)
            for k in range(n, n + got):
                off = int(h[k]) * SLOT + HEADROOM
                b.off[k] = off
                b.in_port[k] = rd16(mem, off - META_OFF + 4)
                ln = rd16(mem, off - META_OFF + 6)
                b.len[k] = ln
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
            if ro.opts[0] == P_DROP:
                for k in range(done, c):
                    cache_put(pool, cache, ro.stage[r, k])
                    drops[R_RING_FULL] += 1
                break
            ro.opts[1] += 1
            if spins == 0:
                t_wait = rdtsc()
            spins += 1
            # NB: an oversubscribed pipeline (more workers than cores) only
            # makes progress if a blocked producer gives its core away.
            if spins < 64:
                shim.cpu_pause()
            else:
                shim.cpu_yield()
    if spins > 0:
        ro.opts[2] += rdtsc() - t_wait      # backpressure, not work: kept out of busy cycles
    ro.cnt[r] = 0
    return done


@hot
def tx_ring(b, live, m, n, h, ro, pool, cache, drops, ws):
    """Forward live[:m] to the next stage by flow hash; free the dropped."""
    mem = pool.mem
    nr = len(ro.rings)
    # dropped packets: back to the pool (live[] is in index order)
    j = 0
    for i in range(n):
        if j < m and live[j] == i:
            j += 1
        else:
            cache_put(pool, cache, h[i])
    sent = 0
    for j in range(m):
        i = live[j]
        r = 0
        if nr > 1:
            r = hash5(b.src_ip[i], b.dst_ip[i], b.sport[i], b.dport[i], b.proto[i]) % nr
        meta_store(mem, b.off[i], b.port[i], b.in_port[i], b.len[i])
        ro.stage[r, ro.cnt[r]] = h[i]
        ro.cnt[r] += 1
    for r in range(nr):
        if ro.cnt[r] > 0:
            sent += _push(ro, r, pool, cache, drops)
    ws[W_TX] += sent
    for j in range(m):
        ws[W_TX_BYTES] += b.len[live[j]]
