"""The in-memory NIC's compiled receive and transmit (pynf.io.mem.backend is the
backend object that sets them up).

Receive queues play the NIC: each has its own sequence of frames (the
built-in flows, or the packets of a pcap) and writes the next ones into
free buffers of the pool (pynf.io.mem.pool), paced to a wire rate if asked.
Like a NIC's RSS, frames are spread over queues by a flow hash when the
traffic is loaded, so a flow always arrives on the same queue. For
built-in traffic only the 64 header bytes are written per packet: the
payload is zeros that no NF changes, and a NIC's DMA costs the CPU nothing
either.

Transmit counts packets and bytes per port, optionally captures them for
--pcap-out, and returns the buffers to the pool.
"""
from collections import namedtuple

import numpy as np

from pynf.compiler.intrinsics import copy, rdtsc
from pynf.compiler.jit import hot
from pynf.io.mem.pool import SLOT, cache_get, cache_put
from pynf.packet.batch import DATAROOM, HEADROOM
from pynf.packet.drops import PUNT_BASE, R_NO_SLOWPATH, R_OVERSIZE
from pynf.slots import W_RX, W_RX_BYTES, W_TX

# st: [pos, passes, max_passes (-1: loop forever), done, budget (-1: none)]
# pace: [TSC ticks per wire bit, TSC time of the next frame, TSC ticks per
# frame]: --rate paces by wire bits, --pps by frames (0: unpaced)
RxQueue = namedtuple("RxQueue", "arena t_off t_len t_copy seq port st pace")
Q_POS, Q_PASSES, Q_MAX_PASSES, Q_DONE, Q_BUDGET = range(5)

# per-worker capture for --pcap-out: rec[k] = (offset in cmem, length, tsc)
Capture = namedtuple("Capture", "mem rec st")
C_NREC, C_NBYTES, C_ON = 0, 1, 2


def make_queue(arena, t_off, t_len, t_copy, seq, port=0, passes=-1, budget=-1,
               tsc_per_bit=0.0, tsc_per_frame=0.0):
    st = np.zeros(8, dtype=np.int64)
    st[Q_MAX_PASSES] = passes
    st[Q_BUDGET] = budget
    if len(seq) == 0 or budget == 0:
        st[Q_DONE] = 1
    return RxQueue(arena, t_off.astype(np.int64), t_len.astype(np.int32), t_copy.astype(np.int32),
                   seq.astype(np.int32), np.int32(port), st,
                   np.array([tsc_per_bit, 0.0, tsc_per_frame], dtype=np.float64))


def make_capture(nbytes, nrec):
    return Capture(np.zeros(nbytes, dtype=np.uint8), np.zeros((nrec, 3), dtype=np.int64),
                   np.zeros(4, dtype=np.int64))


@hot
def rx(q, pool, cache, h, b, burst, drops, ws):
    """Receive up to `burst` frames from queue q into batch b; returns n."""
    st = q.st
    if st[Q_DONE]:
        return 0
    mem = pool.mem
    nseq = len(q.seq)
    tpb = q.pace[0]
    tpf = q.pace[2]
    paced = tpb > 0.0 or tpf > 0.0
    now = 0.0
    if paced:
        now = float(rdtsc())
        if q.pace[1] == 0.0:
            q.pace[1] = now
    n = 0
    while n < burst:
        t = q.seq[st[Q_POS]]
        ln = q.t_len[t]
        if paced:
            if q.pace[1] > now:
                break
            q.pace[1] += (ln + 24) * 8 * tpb + tpf     # wire bits: + FCS + preamble/IFG
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
