"""What the receive side replays: built-in traffic or a pcap, spread over
receive queues by flow hash (as a NIC's RSS spreads flows over queues).

A Feed is an arena of frame templates and, per queue, the order in which
its templates arrive. Built-in traffic: each queue cycles through its
flows in a shuffled order, one template (header bytes only) per arrival,
laid out in that order. pcap: one template per packet, each queue keeping
the file's order.
"""
from dataclasses import dataclass

import numpy as np

from pynf.compiler.jit import hot
from pynf.io import pcap
from pynf.packet.batch import make_batch
from pynf.packet.parse import parse_one
from pynf.tables.hashing import hash5
from pynf.traffic import templates as traffic
from pynf.traffic.flows import FlowSet, make_flows, profile_flows

MIN_SEQ = 4096


@dataclass
class Feed:
    arena: np.ndarray
    t_off: np.ndarray
    t_len: np.ndarray
    t_copy: np.ndarray
    seqs: list              # per queue: template indices in arrival order
    once: bool              # replay once (pcap without --duration/--packets)
    frame_size: int = 0     # built-in traffic's frame size (with FCS); 0 for pcap
    notes: tuple = ()       # pcap: records not replayed, and why (pynf.io.pcap)

    @property
    def frames(self):
        return len(self.t_off)


@hot
def _steer(b, n, nq, out):
    for i in range(n):
        if parse_one(b.mem, b, i, False) == 0:
            out[i] = hash5(b.src_ip[i], b.dst_ip[i], b.sport[i], b.dport[i], b.proto[i]) % nq
        else:
            out[i] = 0


def steer(mem, off, length, nq):
    """Receive queue of each frame: hash of its 5-tuple mod nq (0 if unparsable)."""
    n = len(off)
    out = np.zeros(n, dtype=np.int64)
    if nq > 1 and n:
        b = make_batch(mem, n)
        b.off[:] = off
        b.len[:] = length
        _steer(b, n, nq, out)
    return out


@hot
def _steer_tuples(src, dst, sport, dport, proto, nq, out):
    for i in range(len(src)):
        out[i] = hash5(src[i], dst[i], sport[i], dport[i], proto[i]) % nq


def steer_flows(fs, nq):
    """Receive queue of each built-in flow, from its 5-tuple (no parsing:
    a template holds only the first 64 bytes of a longer frame)."""
    out = np.zeros(len(fs.src_ip), dtype=np.int64)
    if nq > 1:
        _steer_tuples(fs.src_ip, fs.dst_ip, fs.sport, fs.dport, fs.proto, nq, out)
    return out


def builtin(flows, frame_size, seed, nq, profile="web"):
    """The built-in traffic (pynf.traffic) for nq receive queues, in a
    template arena; profile: pynf.traffic.flows.PROFILES (--traffic)."""
    fs, kind = profile_flows(make_flows(flows, seed), profile)
    q = steer_flows(fs, nq)
    rng = np.random.default_rng(seed + 7)
    seqs = []
    for k in range(nq):
        mine = np.nonzero(q == k)[0].astype(np.int32)
        if len(mine) == 0:
            seqs.append(mine)
            continue
        reps = max(1, -(-MIN_SEQ // len(mine)))
        seqs.append(np.concatenate([rng.permutation(mine) for _ in range(reps)]))
    # The arena holds the templates in arrival order, a template per arrival:
    # the receive kernel then reads it front to back, as a NIC's descriptor
    # ring is read, instead of jumping to a random flow's template (at a
    # million flows that was a cache miss per packet: 0.43x the 1K-flow rate)
    order = np.concatenate(seqs)
    tmpl = traffic.build_templates(FlowSet(*(a[order] for a in fs)), frame_size, ids=order, kind=kind[order])
    width = tmpl.shape[1]
    n = len(order)
    arena = tmpl.reshape(-1)
    t_off = np.arange(n, dtype=np.int64) * width
    t_len = np.full(n, frame_size - traffic.FCS, dtype=np.int32)
    t_copy = np.full(n, width, dtype=np.int32)
    starts = np.cumsum([0] + [len(s) for s in seqs])
    seqs = [np.arange(a, b, dtype=np.int32) for a, b in zip(starts[:-1], starts[1:])]
    return Feed(arena, t_off, t_len, t_copy, seqs, once=False, frame_size=frame_size)


def builtin_bound(flows, frame_size, nq):
    """(frames, longest frame) that builtin(flows, frame_size, _, nq) stays
    within, without building it: each queue holds its flows, repeated up
    to MIN_SEQ frames."""
    return flows + nq * MIN_SEQ, frame_size - traffic.FCS


def from_pcap(path, nq, once):
    cap = pcap.read(path)
    q = steer(cap.data, cap.off, cap.len, nq)
    seqs = [np.nonzero(q == k)[0].astype(np.int32) for k in range(nq)]
    return Feed(cap.data, cap.off, cap.len, cap.len.copy(), seqs, once=once, notes=tuple(cap.notes))
