"""lb: stateful layer-4 load balancer: a flow keeps its backend.

Synopsis:   pynf run --rtc ...,lb,... [--backends FILE] [--set lb.KEY=VALUE]
Backends:   one 'a.b.c.d:port' per line, '#' comments.
Behaviour:  a TCP or UDP packet's 5-tuple is looked up in a preallocated
            flow table (pynf.table). A new flow gets backend
            hash(5-tuple) mod #backends and a table entry; later packets
            of the flow find the entry, so the flow keeps its backend even
            if the backend list changes between runs of the control path.
            The destination IP and port are rewritten; the stage fixes the
            IPv4 and TCP/UDP checksums (RFC 1624; a UDP checksum of 0
            stays 0).
            Packets that are not TCP/UDP, and IPv4 fragments (their ports
            are unknown or would split a datagram across backends), pass
            unchanged by default.
Drops:      lb_full     new flow while the table holds `capacity` flows
                        (on_full=drop, the default; on_full=hash sends it to
                        its hash backend without an entry)
            lb_non_l4   not TCP/UDP or a fragment, with non_l4=drop
Settings:   capacity    flow-table entries (default: max(1024, 2 x --flows))
            on_full     drop | hash
            non_l4      pass | drop
Default:    without --backends, 8 backends 192.168.0.1..8, port 8080.
Example:    pynf run --rtc acl,lb,l3fwd --backends backends.txt --set lb.capacity=100000
Follows:    the paper's LB NF (5-tuple hash, flow table, dst_ip/dst_port rewrite).
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf import table
from pynf.config import BURST_MAX
from pynf.errors import ConfigError, UsageError, parse_ipv4, read_lines
from pynf.hashing import hash5, key5
from pynf.nf import drop, nf

ON_FULL = ("drop", "hash")
NON_L4 = ("pass", "drop")


@dataclass(frozen=True)
class LbConfig:
    backends: tuple = tuple((0xC0A80001 + k, 8080) for k in range(8))
    capacity: int = 2048
    on_full: str = "drop"
    non_l4: str = "pass"

    @classmethod
    def from_context(cls, ctx):
        cap = max(1024, 2 * ctx.flows)
        if ctx.backends:
            return cls(backends=parse_backends(ctx.backends), capacity=cap)
        return cls(capacity=cap)

    def validate(self):
        if self.capacity < 1:
            raise UsageError("--set lb.capacity: must be at least 1")
        if self.on_full not in ON_FULL:
            raise UsageError(f"--set lb.on_full: want one of {', '.join(ON_FULL)}")
        if self.non_l4 not in NON_L4:
            raise UsageError(f"--set lb.non_l4: want one of {', '.join(NON_L4)}")


def parse_backends(path):
    out = []
    for no, text in read_lines(path):
        ip, sep, port = text.rpartition(":")
        v = parse_ipv4(ip)
        if not sep or v is None or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(path, no, f"bad backend {text!r} (want a.b.c.d:port)")
        out.append((v, int(port)))
    if not out:
        raise ConfigError(path, 0, "no backends")
    return tuple(out)


LbState = namedtuple("LbState", "flows backend_ip backend_port opts k0 k1 h")
O_ON_FULL, O_NON_L4 = 0, 1


def make_state(cfg):
    cfg.validate()
    opts = np.array([ON_FULL.index(cfg.on_full), NON_L4.index(cfg.non_l4)], dtype=np.int64)
    return LbState(
        flows=table.make_table(cfg.capacity),
        backend_ip=np.array([b[0] for b in cfg.backends], dtype=np.uint32),
        backend_port=np.array([b[1] for b in cfg.backends], dtype=np.uint16),
        opts=opts,
        k0=np.zeros(BURST_MAX, dtype=np.int64),
        k1=np.zeros(BURST_MAX, dtype=np.int64),
        h=np.zeros(BURST_MAX, dtype=np.int64),
    )


@nf("lb", drops=("lb_full", "lb_non_l4"), config=LbConfig, state=make_state)
def lb(pkts, live, n, st):
    t = st.flows
    nb = len(st.backend_ip)
    # Pass 1: hash every packet and start loading its slot, so that the
    # table misses of the whole burst overlap instead of queueing.
    for j in range(n):
        i = live[j]
        proto = pkts.proto[i]
        if (proto != 6 and proto != 17) or pkts.frag[i] != 0:
            st.h[j] = -1
            continue
        k0, k1 = key5(pkts.src_ip[i], pkts.dst_ip[i], pkts.sport[i], pkts.dport[i], proto)
        h = hash5(pkts.src_ip[i], pkts.dst_ip[i], pkts.sport[i], pkts.dport[i], proto)
        st.k0[j] = k0
        st.k1[j] = k1
        st.h[j] = h
        table.prefetch_slot(t, h)
    for j in range(n):
        i = live[j]
        h = st.h[j]
        if h < 0:
            if st.opts[O_NON_L4] == 1:
                pkts.port[i] = drop(1)
            continue
        s, _ = table.find_or_add(t, st.k0[j], st.k1[j], h, (h >> 8) % nb)
        if s >= 0:
            k = table.value(t, s)
        elif st.opts[O_ON_FULL] == 1:
            k = (h >> 8) % nb
        else:
            pkts.port[i] = drop(0)
            continue
        pkts.dst_ip[i] = st.backend_ip[k]
        pkts.dport[i] = st.backend_port[k]
