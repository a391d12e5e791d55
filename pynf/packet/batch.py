"""The packet batch: a burst's parsed headers as a struct of arrays.

A stage parses each burst once into a Batch; its NFs read and change the
header arrays; the stage writes changed fields back into the packet bytes.
Packet bytes live in `mem` (a pool of in-memory buffers, or the DPDK
mempool's memory) at `off[i]`, `len[i]` bytes long: never copied.

Fields NFs may change (written back with incremental checksums):
    eth_dst, eth_src, src_ip, dst_ip, ttl, sport, dport
and the verdict:
    port    >= 0: output port;  < 0: dropped (see pynf.nf.drop); once the
            stage has counted a drop, port is -1 - (its reason code)
Read-only: off, len, l3, l4, vlan, proto, frag, in_port, mem.
`tag`: scratch an NF may set for the flow cache (its Cacheable.replay).
`clock`: not per packet: the burst's time, for pynf.packet.clock.now.
`frag` is 0 (not a fragment), 1 (first fragment), 2 (non-first fragment:
ports are 0 and there is no L4 header to write).
"""
from collections import namedtuple

import numpy as np

from pynf.packet.clock import make_clock

BURST_DEFAULT = 32      # DPDK's customary burst
BURST_MAX = 256         # header arrays are sized for this
HEADROOM = 128          # bytes before a packet's data in its buffer (RTE_PKTMBUF_HEADROOM)
DATAROOM = 2048         # bytes of packet data per buffer (RTE_MBUF_DEFAULT_DATAROOM)

Batch = namedtuple("Batch", [
    "mem",       # uint8[:]  packet memory
    "off",       # int64     frame start in mem
    "len",       # int32     frame length (no FCS)
    "in_port",   # int32     port the frame came in on
    "l3",        # int32     IPv4 header offset in the frame (14 or 18)
    "l4",        # int32     L4 header offset in the frame
    "eth_dst",   # uint64    48-bit MAC
    "eth_src",   # uint64
    "vlan",      # int32     802.1Q TCI, -1 if untagged
    "src_ip",    # uint32
    "dst_ip",    # uint32
    "proto",     # uint8
    "ttl",       # uint8
    "frag",      # uint8
    "sport",     # uint16 (0 unless TCP/UDP and not a non-first fragment)
    "dport",     # uint16
    "port",      # int32     verdict
    "tag",       # int64     an NF's note for the flow cache's replay (pynf.flowcache)
    "clock",     # int64[CLOCK_SIZE]  the burst's clock: read it with pynf.nf.now(pkts)
])

_FIELD_TYPES = dict(
    off=np.int64, len=np.int32, in_port=np.int32, l3=np.int32, l4=np.int32,
    eth_dst=np.uint64, eth_src=np.uint64, vlan=np.int32,
    src_ip=np.uint32, dst_ip=np.uint32, proto=np.uint8, ttl=np.uint8, frag=np.uint8,
    sport=np.uint16, dport=np.uint16, port=np.int32, tag=np.int64,
)


def make_batch(mem, size=BURST_MAX):
    """A Batch over packet memory `mem` with room for `size` packets."""
    if mem.dtype != np.uint8 or mem.ndim != 1:
        raise TypeError("packet memory must be a 1-d uint8 array")
    arrays = {k: np.zeros(size, dtype=t) for k, t in _FIELD_TYPES.items()}
    return Batch(mem=mem, clock=make_clock(), **arrays)


def make_live(size=BURST_MAX):
    """Index list of the packets still alive in a batch (see pynf.nf)."""
    return np.zeros(size, dtype=np.uint32)
