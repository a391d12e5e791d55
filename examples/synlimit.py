"""synlimit: per source address, drop TCP SYNs above a rate.

Settings:  rate      SYNs a second a source may send (default 100)
           burst     SYNs a source may send at once (default 20)
           sources   sources remembered (default 65536; one idle for 60 s is
                     forgotten, and a full bucket replaces its least recently
                     seen source)
Drops:     over_rate   a SYN over its source's rate
Counters:  syns        SYNs seen (stats and /metrics: pynf_synlimit_syns_total)
Key:       src: the state is per source address, so with several replicas
           pynf hands each source's packets to one replica
Example:   pynf run --rtc acl,examples/synlimit.py:synlimit,l3fwd --traffic syn --set synlimit.rate=10
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.nf import DROP, SECOND, nf, now
from pynf.nf.access import load8
from pynf.nf.blocks import LruMap, map_get, take

SOURCES = LruMap("tokens", "stamp", idle=60 * SECOND)
TOKENS, _ = SOURCES.columns
SYNS = 0                            # counters[SYNS]: the first of counters=


@dataclass(frozen=True)
class Config:
    rate: int = 100
    burst: int = 20
    sources: int = 65536

    def validate(self):
        if self.rate < 1 or self.burst < 1 or self.sources < 1:
            raise ValueError("rate, burst and sources must be at least 1")


State = namedtuple("State", "src limit counters")


def make_state(cfg):
    return State(src=SOURCES.make(cfg.sources), limit=np.array([cfg.rate, cfg.burst], dtype=np.int64),
                 counters=np.zeros(1, dtype=np.int64))


@nf("synlimit", drops=("over_rate",), counters=("syns",), config=Config, state=make_state,
    key="src", per_packet=True)
def synlimit(pkts, i, st):
    if pkts.proto[i] != 6 or pkts.frag[i] == 2:
        return
    flags = load8(pkts, i, pkts.l4[i] + 13)          # -1 past the frame
    if flags < 0 or (flags & 0x12) != 0x02:          # SYN without ACK
        return
    st.counters[SYNS] += 1
    t = now(pkts)
    row, _ = map_get(st.src, pkts.src_ip[i], 0, t)
    if not take(st.src.vals, row, TOKENS, st.limit[0], st.limit[1], t):
        pkts.port[i] = DROP                          # counted under over_rate
