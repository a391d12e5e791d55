"""counter: count packets and bytes per IP protocol; optionally drop one.

Settings:  block_proto   IP protocol number to drop (-1: none, the default)
Drops:     blocked       the packet's protocol is block_proto
Example:   pynf run --rtc acl,examples/counter.py:counter,l3fwd --set counter.block_proto=17
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.nf import DROP, nf


@dataclass(frozen=True)
class CounterConfig:
    block_proto: int = -1


CounterState = namedtuple("CounterState", "packets bytes block")


def make_state(cfg):
    return CounterState(packets=np.zeros(256, dtype=np.int64),
                        bytes=np.zeros(256, dtype=np.int64),
                        block=np.array([cfg.block_proto], dtype=np.int64))


@nf("counter", drops=("blocked",), config=CounterConfig, state=make_state, per_packet=True)
def counter(pkts, i, st):           # called for each packet no earlier NF dropped
    p = pkts.proto[i]
    st.packets[p] += 1
    st.bytes[p] += pkts.len[i]
    if p == st.block[0]:
        pkts.port[i] = DROP          # counted under 'blocked'
