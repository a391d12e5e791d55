"""Compiled halves of the DPDK backend: bursts between ethdev queues, rte_rings
and a stage. Handles are mbuf addresses; the stage sees each packet at its
data offset inside the mempool's memory (one numpy view over it), so it
reads and writes the mbuf's bytes in place: zero copy.
"""
from collections import namedtuple

import numpy as np

from pynf import shim
from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import hot
from pynf.io.ring import push_all, ring_count, sample_fill, stage
from pynf.packet.batch import BURST_MAX
from pynf.packet.drops import PUNT_BASE, R_NO_SLOWPATH, R_OVERSIZE, R_SLOWPATH_FULL, R_TX_FULL
from pynf.slots import (
    W_INJ_SENT,
    W_ORIG_FAILED,
    W_ORIG_SENT,
    W_PUNTED,
    W_RX,
    W_RX_BYTES,
    W_TX,
)

# what loops get as `pool` on the DPDK path: the mempool's memory and its address
PoolView = namedtuple("PoolView", "mem base")
# ports/queues polled; pnum: the port number NFs see as in_port (pynf's own
# numbering with --iface, else the ethdev id); st: [budget (-1 none),
# expected (-1 unknown), received, done, oversize]; pstat[r]: packets and
# bytes received from ports[r] (what `stats` and /metrics show per port);
# pace: as the in-memory NIC's (pynf.io.mem.kernels), a burst at a time
DpdkRx = namedtuple("DpdkRx", "ports pnum queue rr st pstat pace")
S_BUDGET, S_EXPECTED, S_RECEIVED, S_DONE, S_OVERSIZE = range(5)
# tx ports and this worker's queue on them; staged handles per port; scratch for frees;
# slow: [punt rte_ring, inject rte_ring, loop count] (0: none), see pynf.control.slowpath
DpdkTx = namedtuple("DpdkTx", "ports queue stage cnt free slow")
SL_PUNT, SL_INJECT, SL_ITER = 0, 1, 2
# inject ring entry: bits 0-46 the mbuf's address, bit 47 "made by the slow
# path" (not a received packet), bits 48-63 the port to send it on
INJ_ORIG = np.uint64(1 << 47)
ADDR_MASK = np.uint64((1 << 47) - 1)


def make_rx(ports, queue, budget=-1, expected=-1, pnum=None, tsc_per_bit=0.0, tsc_per_frame=0.0):
    st = np.zeros(8, dtype=np.int64)
    st[S_BUDGET] = budget
    st[S_EXPECTED] = expected
    if budget == 0 or expected == 0:
        st[S_DONE] = 1
    return DpdkRx(np.array(ports, dtype=np.int32), np.array(pnum if pnum is not None else ports, dtype=np.int32),
                  np.int32(queue), np.zeros(1, dtype=np.int64), st,
                  np.zeros((max(1, len(ports)), 2), dtype=np.int64),
                  np.array([tsc_per_bit, 0.0, tsc_per_frame], dtype=np.float64))


def make_tx(ports, queue, punt_ring=0, inject_ring=0):
    n = max(1, len(ports))
    return DpdkTx(np.array(ports, dtype=np.int32), np.int32(queue),
                  np.zeros((n, BURST_MAX), dtype=np.uint64), np.zeros(n, dtype=np.int64),
                  np.zeros(BURST_MAX, dtype=np.uint64),
                  np.array([punt_ring, inject_ring, 0], dtype=np.uint64))


@hot
def rx(src, base, h, b, burst, drops, ws):
    """Receive up to `burst` packets from this worker's queue on its ports."""
    st = src.st
    if st[S_DONE]:
        return 0
    want = burst
    if st[S_BUDGET] >= 0:
        want = min(want, st[S_BUDGET])
    paced = src.pace[0] > 0.0 or src.pace[2] > 0.0
    if paced:
        now = float(rdtsc())
        if src.pace[1] == 0.0:
            src.pace[1] = now
        if src.pace[1] > now:
            return 0
    n = 0
    nbytes = 0
    np_ = len(src.ports)
    r = src.rr[0]
    for _ in range(np_):
        before = st[S_OVERSIZE]
        got = shim.dpdk_rx(src.ports[r], src.queue, h.ctypes.data + 8 * n, b.off.ctypes.data + 8 * n,
                           b.len.ctypes.data + 4 * n, want - n, base, st.ctypes.data + 8 * S_OVERSIZE)
        ov = st[S_OVERSIZE] - before
        if ov > 0:
            drops[R_OVERSIZE] += ov
            ws[W_RX] += ov
            src.pstat[r, 0] += ov
            st[S_RECEIVED] += ov
            if st[S_BUDGET] > 0:
                st[S_BUDGET] = max(0, st[S_BUDGET] - ov)
        nb = 0
        for k in range(n, n + got):
            b.in_port[k] = src.pnum[r]
            nb += b.len[k]
        ws[W_RX_BYTES] += nb
        nbytes += nb
        src.pstat[r, 0] += got
        src.pstat[r, 1] += nb
        n += got
        r += 1
        if r == np_:
            r = 0
        if n >= want:
            break
    src.rr[0] = r
    if paced:                           # the burst's wire bits (+ FCS, preamble, gap) or frames
        src.pace[1] += (nbytes + 24 * n) * 8 * src.pace[0] + n * src.pace[2]
    ws[W_RX] += n
    st[S_RECEIVED] += n
    if st[S_BUDGET] >= 0:
        st[S_BUDGET] -= n
        if st[S_BUDGET] <= 0:
            st[S_DONE] = 1
    if st[S_EXPECTED] >= 0 and st[S_RECEIVED] >= st[S_EXPECTED]:
        st[S_DONE] = 1
    return n


@hot
def _free_dropped(b, n, h, scratch):
    """Free the packets of the burst that were dropped (negative verdicts)."""
    k = 0
    for i in range(n):
        if b.port[i] < 0:
            scratch[k] = h[i]
            k += 1
    if k > 0:
        shim.dpdk_free_bulk(scratch.ctypes.data, k)


@hot
def _punt(dst, handle, code, drops, ws):
    """Hand one packet to the slow path: its ring carries the punt code in
    the top 16 bits; no slow path or a full ring frees it, counted."""
    ring = dst.slow[SL_PUNT]
    if ring != 0:
        dst.free[0] = handle | (np.uint64(code) << np.uint64(48))
        if shim.rte_ring_enqueue(ring, dst.free.ctypes.data, 1) == 1:
            ws[W_PUNTED] += 1
            return
        drops[R_SLOWPATH_FULL] += 1
    else:
        drops[R_NO_SLOWPATH] += 1
    dst.free[0] = handle
    shim.dpdk_free_bulk(dst.free.ctypes.data, 1)


@hot
def tx(b, live, m, n, h, dst, txmap, txstat, drops, ws):
    """Send live[:m] to their ports (NF port k -> txmap[k % len]); free the
    dropped; hand punted packets to the slow path."""
    _free_dropped(b, n, h, dst.free)
    nmap = len(txmap)
    nports = len(dst.ports)
    for j in range(m):
        i = live[j]
        if b.port[i] >= PUNT_BASE:
            _punt(dst, h[i], b.port[i], drops, ws)
            continue
        k = txmap[b.port[i] % nmap]     # index into dst.ports
        dst.stage[k, dst.cnt[k]] = h[i]
        dst.cnt[k] += 1
        txstat[dst.ports[k], 1] += b.len[i]
    for k in range(nports):
        c = dst.cnt[k]
        if c == 0:
            continue
        sent = shim.dpdk_tx(dst.ports[k], dst.queue, dst.stage[k].ctypes.data, c)
        txstat[dst.ports[k], 0] += sent
        ws[W_TX] += sent
        if sent < c:
            drops[R_TX_FULL] += c - sent
        dst.cnt[k] = 0


@hot
def ring_rx(ri, base, h, b, burst, ws):
    """Dequeue up to `burst` mbufs from the input rte_rings."""
    nr = len(ri.rings)
    n = 0
    r = ri.rr[0]
    for _ in range(nr):
        cnt = ring_count(ri, r)
        sample_fill(ri, r, cnt)
        if cnt > 0:
            got = shim.rte_ring_dequeue(ri.rings[r], h.ctypes.data + 8 * n, burst - n)
            for k in range(n, n + got):     # the verdict rides in the pointer's top 16 bits
                b.port[k] = h[k] >> np.uint64(48)
                h[k] = h[k] & np.uint64(0xFFFFFFFFFFFF)
            shim.dpdk_locate(h.ctypes.data + 8 * n, b.off.ctypes.data + 8 * n,
                             b.len.ctypes.data + 4 * n, b.in_port.ctypes.data + 4 * n, got, base)
            for k in range(n, n + got):
                ws[W_RX_BYTES] += b.len[k]
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
def ring_tx(b, live, m, n, h, ro, drops, ws, scratch):
    """Forward live[:m] to the next stage's rte_rings by flow hash (punted
    packets too: the last stage hands them to the slow path)."""
    _free_dropped(b, n, h, scratch)
    for j in range(m):
        i = live[j]
        # user-space addresses fit in 48 bits: the verdict port rides on top
        stage(ro, b, i, h[i] | (np.uint64(b.port[i]) << np.uint64(48)))
    ws[W_TX] += push_all(ro, drops, scratch)


@hot
def inject(dst, txmap, txstat, drops, ws):
    """Send what the slow path queued for this worker (one in 16 calls: the
    check reads a ring index another core writes)."""
    ring = dst.slow[SL_INJECT]
    dst.slow[SL_ITER] += np.uint64(1)
    if ring == 0 or (dst.slow[SL_ITER] & np.uint64(15)) != 0:
        return
    while True:
        got = shim.rte_ring_dequeue(ring, dst.free.ctypes.data, BURST_MAX)
        if got == 0:
            return
        for j in range(got):
            e = dst.free[j]
            port = e >> np.uint64(48)
            handle = e & ADDR_MASK
            dst.stage[0, 0] = handle
            sent = shim.dpdk_tx(np.uint16(port), dst.queue, dst.stage[0].ctypes.data, 1)
            orig = (e & INJ_ORIG) != 0
            if sent == 1:
                if orig:
                    ws[W_ORIG_SENT] += 1
                else:
                    ws[W_INJ_SENT] += 1
                    txstat[port, 0] += 1
            elif orig:
                ws[W_ORIG_FAILED] += 1
            else:
                drops[R_TX_FULL] += 1
