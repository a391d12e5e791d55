"""l3fwd: exact-match IPv4 forwarding on the destination address.

Synopsis:   pynf run --rtc ...,l3fwd [--routes FILE] [--set l3fwd.KEY=VALUE]
Routes:     one '<a.b.c.d> <port>' per line, '#' comments; a later line
            for the same address replaces the earlier one.
Behaviour:  TTL <= 1: drop (reason ttl). Otherwise look the destination
            up in an exact-match hash table (pynf.table); on a hit the
            packet goes to the route's port with TTL decremented (the stage
            updates the header checksum incrementally, RFC 1624) and its
            Ethernet source/destination set for that port: source
            02:00:00:00:00:<port>, destination 02:00:00:00:01:<port>
            (the port's own MAC and its next hop's, as DPDK l3fwd's
            --eth-dest sets them). A miss is dropped (no_route), or sent to
            default_port when that is set.
Drops:      ttl         TTL was 0 or 1 (RFC 1812 5.3.1)
            no_route    no entry for the destination
Settings:   default_port   port for misses (-1: drop, the default)
            capacity       table entries (default: twice the routes, at least 1024)
Default:    without --routes, a route for every built-in flow's
            destination (flow i -> port i mod #ports) and for each default
            LB backend, so acl,lb,l3fwd forwards what the ACL allows.
Example:    pynf run --rtc l3fwd --routes routes.txt --set l3fwd.default_port=0
Follows:    the paper's L3FWD NF and DPDK l3fwd's exact-match mode.
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf import table
from pynf.config import BURST_MAX
from pynf.errors import ConfigError, UsageError, parse_ipv4, read_lines
from pynf.hashing import hash32, hash32_many
from pynf.nf import drop, nf

MAX_PORT = 1023
MAC_SRC_BASE = 0x020000000000
MAC_DST_BASE = 0x020000000100


@dataclass(frozen=True)
class L3fwdConfig:
    routes: tuple = ()          # ((ipv4, port), ...)
    default_port: int = -1
    capacity: int = 0

    @classmethod
    def from_context(cls, ctx):
        if ctx.routes:
            return cls(parse_routes(ctx.routes))
        from nfs.lb import LbConfig
        fs = ctx.flow_set
        ports = max(1, ctx.n_ports)
        dst = fs.dst_ip.astype(np.int64)
        routes = list(zip(dst.tolist(), (np.arange(len(dst)) % ports).tolist()))
        routes += [(ip, k % ports) for k, (ip, _) in enumerate(LbConfig().backends)]
        return cls(tuple(routes))

    def validate(self):
        if not -1 <= self.default_port <= MAX_PORT:
            raise UsageError(f"--set l3fwd.default_port: want -1..{MAX_PORT}")
        if self.capacity < 0:
            raise UsageError("--set l3fwd.capacity: must be >= 0")


def parse_routes(path):
    out = []
    for no, text in read_lines(path):
        toks = text.split()
        v = parse_ipv4(toks[0]) if toks else None
        if len(toks) != 2 or v is None or not toks[1].isdigit() or int(toks[1]) > MAX_PORT:
            raise ConfigError(path, no, f"bad route {text!r} (want '<a.b.c.d> <port 0..{MAX_PORT}>')")
        out.append((v, int(toks[1])))
    return tuple(out)


L3State = namedtuple("L3State", "routes src_mac dst_mac opts h")
O_DEFAULT_PORT = 0


def make_state(cfg):
    cfg.validate()
    # room to add routes while running (route_add), unless a capacity is set
    t = table.make_table(cfg.capacity or max(1024, 2 * len(cfg.routes)))
    nports = MAX_PORT + 1        # every port has its MACs, so route_add may use any
    st = L3State(
        routes=t,
        src_mac=np.array([MAC_SRC_BASE + p for p in range(nports)], dtype=np.uint64),
        dst_mac=np.array([MAC_DST_BASE + p for p in range(nports)], dtype=np.uint64),
        opts=np.array([cfg.default_port], dtype=np.int64),
        h=np.zeros(BURST_MAX, dtype=np.int64),
    )
    if cfg.routes:
        ips = np.array([r[0] for r in cfg.routes], dtype=np.int64)
        ports = np.array([r[1] for r in cfg.routes], dtype=np.int64)
        hs = np.zeros(len(ips), dtype=np.int64)
        hash32_many(ips, hs)
        if table.add_many(t, ips, np.zeros(len(ips), dtype=np.int64), hs, ports):
            raise UsageError(f"l3fwd: more routes than capacity {cfg.capacity}")
    return st


def route_add(st, ip, port):
    """Control path: add or replace a route. While a chain runs, call it
    through Runtime.control("l3fwd", lambda st: route_add(st, ip, port)),
    which applies it between bursts in every replica."""
    if not 0 <= port < len(st.src_mac):
        raise UsageError(f"l3fwd: port {port} outside 0..{len(st.src_mac) - 1}")
    if not table.add(st.routes, int(ip), 0, hash32(int(ip)), int(port)):
        raise UsageError(f"l3fwd: route table full ({st.routes.info[table.I_CAP]} routes)")
    return True


@nf("l3fwd", drops=("ttl", "no_route"), config=L3fwdConfig, state=make_state)
def l3fwd(pkts, live, n, st):
    t = st.routes
    for j in range(n):
        h = hash32(pkts.dst_ip[live[j]])
        st.h[j] = h
        table.prefetch_slot(t, h)
    for j in range(n):
        i = live[j]
        if pkts.ttl[i] <= 1:
            pkts.port[i] = drop(0)
            continue
        s = table.find(t, int(pkts.dst_ip[i]), 0, st.h[j])
        if s >= 0:
            p = table.value(t, s)
        else:
            p = st.opts[O_DEFAULT_PORT]
            if p < 0:
                pkts.port[i] = drop(1)
                continue
        pkts.ttl[i] = pkts.ttl[i] - 1
        pkts.port[i] = p
        pkts.eth_src[i] = st.src_mac[p]
        pkts.eth_dst[i] = st.dst_mac[p]
