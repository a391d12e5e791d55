"""Scaling: moving flows between replicas (pynf.runtime.scale)."""

import numpy as np

from pynf.compiler.jit import hot
from pynf.nfs.lb.config import FRAG_KEY
from pynf.nfs.lb.fastpath import claim, entry_hash
from pynf.tables import flowtable as ct
from pynf.tables.hashing import hash5


@hot
def _move_flows(src, dst_tab, dst_ctl, dst_cnt, moving, gone):
    """Copy the entries of src.flows whose steering bucket is set in
    `moving` into dst_tab (claimed as a new flow would be: a full bucket
    evicts its least recently seen entry, counted), marking them in `gone`."""
    tab = src.flows
    nmask = len(moving) - 1
    moved = 0
    for x in range(src.ctl[ct.I_BUCKETS] * ct.WAYS):
        e = x * ct.WORDS
        t1 = tab[e + 1]
        if t1 == 0:
            continue
        k0 = tab[e]
        k1 = t1 & ~ct.USED
        h = entry_hash(k0, k1)
        steer = h
        if k1 & FRAG_KEY:           # (src, dst, IP id): steered as its datagram's packets, without ports
            steer = hash5(k0 >> 24, (k1 & ~FRAG_KEY) >> 16, 0, 0, k0 & 0xFF)
        if not moving[steer & nmask]:
            continue
        meta = tab[e + 3]
        d, _ = claim(dst_tab, dst_ctl, h, k0, k1, meta >> ct.STATE_BITS, dst_cnt, ct.EVICT_ANY)
        dst_tab[d + 2] = tab[e + 2]
        dst_tab[d + 3] = meta
        gone[x] = True
        moved += 1
    return moved


def migrate(src, dst, moving):
    """Move the flow entries (forward, reply and fragment entries alike) of
    the steering buckets in `moving` from replica state src to dst: a moved
    flow keeps its backend, its NAT and its timers."""
    gone = np.zeros(len(ct.entries(src.flows, src.ctl)), dtype=np.bool_)
    n = _move_flows(src, dst.flows, dst.ctl, dst.counters, moving, gone)
    ct.flush(src.flows, src.ctl, gone)
    return int(n)
