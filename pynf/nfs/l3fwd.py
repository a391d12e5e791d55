"""l3fwd: IPv4 forwarding: longest-prefix match with ARP, or exact match.

Synopsis:   pynf run --rtc ...,l3fwd [--routes FILE] [--iface NAME=IP/LEN ...]
            [--set l3fwd.KEY=VALUE]
Routes:     one route per line, '#' comments:
              a.b.c.d/len port [next-hop]   longest-prefix match (DPDK l3fwd's
                                            LPM mode); without a next hop the
                                            destination is on that port's subnet
              a.b.c.d port                  exact match on the destination (the
                                            paper's mode, DPDK l3fwd's EM mode)
            A later line for the same destination or prefix replaces the
            earlier one; ports are 0..1023.
Router mode (any prefix route, or --iface): every --iface IP/LEN adds a
            connected route for its subnet and makes its address pynf's own.
            A packet to one of pynf's addresses is answered if it is an ICMP
            echo request (the reply leaves by the port it came in on) and
            dropped (local) otherwise. Other packets: TTL <= 1 is dropped
            (ttl); the destination is looked up (exact match first, then
            LPM); the next hop (the route's, else the destination) is looked
            up in the neighbour table (pynf.control.neigh, filled by ARP); the
            packet leaves with TTL decremented, the output port's own MAC as
            source and the neighbour's as destination. A next hop without a
            MAC yet goes to the slow path, which holds it, sends ARP requests
            and sends it once the neighbour answers (or drops it,
            neigh_unresolved): no packet leaves with a made-up MAC. (On its
            way there the packet's Ethernet destination carries the port and
            next hop; the slow path overwrites it before sending.)
Paper mode (exact-match routes only, no --iface): as the paper's L3FWD: a
            hit goes to the route's port with TTL decremented and Ethernet
            source/destination 02:00:00:00:00:<port> / 02:00:00:00:01:<port>
            (the port's MAC and its next hop's, as DPDK l3fwd's --eth-dest
            sets them).
Drops:      ttl         TTL was 0 or 1 (RFC 1812 5.3.1)
            no_route    no route for the destination
            local       to one of pynf's addresses, and not an ICMP echo request
            ip_csum     the IPv4 header checksum is wrong (RFC 1812 5.2.2)
Flow cache: cacheable (the key holds the TTL; routes, settings and the
            neighbour table's changes invalidate it); a packet whose IPv4
            checksum is checked and wrong, and in router mode any ICMP
            packet, runs l3fwd itself; a served packet marks its neighbour used.
Settings:   default_port   port for misses (-1: drop, the default)
            verify_ip_csum
                           check each IPv4 header's checksum and drop the
                           wrong ones (RFC 1812 5.2.2). Default: 1 in router
                           mode, 0 in exact-match mode (the paper's L3FWD and
                           DPDK's l3fwd do not check: the NIC does; the check
                           costs about 6 cycles a packet, half of l3fwd's);
                           changes live
            capacity       exact-match entries and LPM routes (default: twice the
                           routes, at least 1024; room for routes added while running)
Default:    without --routes or --iface, an exact route for every built-in
            flow's destination (flow i -> port i mod #ports) and for each
            default LB backend, so acl,lb,l3fwd forwards what the ACL allows.
            With --iface and no --routes: the connected routes.
Example:    pynf run --rtc acl,lb,l3fwd --iface veth0=10.0.1.1/24 --iface veth1=10.0.2.1/24
Follows:    the paper's L3FWD NF; DPDK l3fwd (EM and LPM modes, rte_lpm's DIR-24-8).
"""
from collections import namedtuple
from dataclasses import dataclass, field, replace

import numpy as np

from pynf.compiler.jit import hot
from pynf.control import neigh
from pynf.errors import ConfigError, UsageError, format_ipv4, is_decimal, parse_ipv4, read_lines
from pynf.flowcache import Cacheable
from pynf.nf import MAX_PORT, Change, File, Verb, drop, nf, slowpath
from pynf.nf.access import load8, load16, store8, store16
from pynf.packet.batch import BURST_MAX
from pynf.packet.parse import csum_apply, csum_delta16, ipv4_csum_ok
from pynf.tables import hashtable as table
from pynf.tables import lpm
from pynf.tables.hashing import hash32, hash32_many
from pynf.traffic.flows import DEFAULT_BACKENDS

MAC_SRC_BASE = 0x020000000000
MAC_DST_BASE = 0x020000000100
K_FORWARD, K_LOCAL, K_FREE = 0, 1, 255
TTL, NO_ROUTE, LOCAL, IP_CSUM = range(4)    # drop reasons, in @nf's drops= order
ICMP_ECHO_TTL = 64


@dataclass(frozen=True)
class L3fwdConfig:
    # exact match: ((ipv4, port), ...), or an int64 array of such rows (the
    # default routes of a million flows are built as one)
    routes: object = field(default=(), compare=False)
    prefixes: tuple = ()        # LPM: ((prefix, len, port, next hop or 0), ...)
    default_port: int = -1
    capacity: int = 0
    verify_ip_csum: bool = True
    host: object = field(default=None, compare=False)   # pynf.control.host.Host

    @classmethod
    def from_context(cls, ctx):
        cfg = cls._from_context(ctx)
        return replace(cfg, verify_ip_csum=cfg.router)     # RFC 1812 in router mode

    @classmethod
    def _from_context(cls, ctx):
        host = getattr(ctx, "host", None)
        if ctx.file("routes"):
            exact, prefixes = parse_routes(ctx.file("routes"), len(host.ifaces) if host is not None else None)
            return cls(exact, prefixes, host=host)
        if host is not None:
            return cls(host=host)
        fs = ctx.flow_set
        ports = max(1, ctx.n_ports)
        be = np.array([ip for ip, _ in DEFAULT_BACKENDS], dtype=np.int64)
        dst = np.concatenate([fs.dst_ip.astype(np.int64), be])
        port = np.concatenate([np.arange(len(fs.dst_ip)) % ports, np.arange(len(be)) % ports])
        return cls(np.stack([dst, port], axis=1))

    @property
    def router(self):
        return bool(self.prefixes) or self.host is not None

    def validate(self):
        if not -1 <= self.default_port <= MAX_PORT:
            raise UsageError(f"--set l3fwd.default_port: want -1..{MAX_PORT}")
        if self.capacity < 0:
            raise UsageError("--set l3fwd.capacity: must be >= 0")


def parse_route(text, nports=None):
    """('exact', ip, port) or ('prefix', prefix, len, port, next hop or 0) of
    one route line; ValueError saying what is wrong."""
    toks = text.split()
    want = (f"want '<a.b.c.d> <port>' or '<a.b.c.d>/<len> <port> [<next-hop>]', "
            f"port 0..{MAX_PORT}")
    if not toks or not 2 <= len(toks) <= 3 or not is_decimal(toks[1]) or int(toks[1]) > MAX_PORT:
        raise ValueError(f"bad route {text!r} ({want})")
    port = int(toks[1])
    if nports is not None and port >= nports:
        raise ValueError(f"route {text!r}: no port {port} (the --iface ports are 0..{nports - 1})")
    addr, slash, plen = toks[0].partition("/")
    v = parse_ipv4(addr)
    if v is None or (slash and (not is_decimal(plen) or int(plen) > 32)) or (len(toks) == 3 and not slash):
        raise ValueError(f"bad route {text!r} ({want})")
    if not slash:
        return ("exact", v, port)
    plen = int(plen)
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
    if v & ~mask & 0xFFFFFFFF:
        raise ValueError(f"bad route {text!r}: host bits set beyond /{plen}")
    nh = 0
    if len(toks) == 3:
        nh = parse_ipv4(toks[2])
        if not nh:
            raise ValueError(f"bad route {text!r}: bad next hop {toks[2]!r}")
    return ("prefix", v, plen, port, nh)


def parse_routes(path, nports=None):
    """(exact routes, prefix routes) of a routes file; ConfigError on a bad
    line, or (nports given: the --iface ports) on a port pynf does not have."""
    exact, prefixes = [], []
    for no, text in read_lines(path):
        try:
            r = parse_route(text, nports)
        except ValueError as e:
            raise ConfigError(path, no, str(e)) from None
        (exact if r[0] == "exact" else prefixes).append(r[1:])
    return tuple(exact), tuple(prefixes)


L3State = namedtuple("L3State", "routes src_mac dst_mac opts h lpm rt_port rt_nh rt_kind "
                                "nkeys nvals nhits nver")
O_DEFAULT_PORT, O_ROUTER, O_EXACT, O_VERIFY = 0, 1, 2, 3


def _rid(st, prefix, plen):
    """Route id of prefix/len, or -1 (the LPM's rule table keys them)."""
    s = table.find(st.lpm.rules, prefix, plen, hash32(prefix ^ plen))
    return int(table.value(st.lpm.rules, s)) if s >= 0 else -1


def _lpm_add(st, prefix, plen, port, nh=0, kind=K_FORWARD):
    if not 0 <= port <= MAX_PORT:
        raise UsageError(f"l3fwd: port {port} outside 0..{MAX_PORT}")
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
    prefix &= mask
    rid = _rid(st, prefix, plen)
    if rid < 0:
        free = np.flatnonzero(st.rt_kind == K_FREE)
        if not len(free):
            raise UsageError(f"l3fwd: route table full ({len(st.rt_port)} routes)")
        rid = int(free[0])
    old = (st.rt_port[rid], st.rt_nh[rid], st.rt_kind[rid])
    st.rt_port[rid], st.rt_nh[rid], st.rt_kind[rid] = port, nh, kind
    if not lpm.add(st.lpm, prefix, plen, rid):
        st.rt_port[rid], st.rt_nh[rid], st.rt_kind[rid] = old
        raise UsageError(f"l3fwd: LPM table full adding {format_ipv4(prefix)}/{plen}")


def make_state(cfg):
    nports = MAX_PORT + 1        # every port has its MACs, so route_add may use any
    host = cfg.host
    own = host.addresses() if host is not None else []
    connected = [(ip & i.subnet[1], i.plen, i.port) for i in (host.ifaces if host else []) if i.ip
                 for ip in [i.ip]]
    nroutes = len(cfg.prefixes) + len(connected) + len(own)
    src_mac = np.array([MAC_SRC_BASE + p for p in range(nports)], dtype=np.uint64)
    if host is not None:
        for i in host.ifaces:
            src_mac[i.port] = i.mac
    nt = host.neigh if host is not None else neigh.NeighTable(1)
    rcap = (cfg.capacity or max(1024, 2 * nroutes)) if cfg.router else 1
    if rcap < nroutes:
        raise UsageError(f"l3fwd: {nroutes} prefix routes, more than capacity {rcap}")
    table_ = lpm.make_lpm(max_rules=rcap) if cfg.router else lpm.make_lpm(1, 1)
    rts = None
    if cfg.router:
        # connected routes, then the file's (which may replace them), then
        # pynf's own addresses; a later duplicate prefix wins
        rts = ([(p, n, port, 0, K_FORWARD) for p, n, port in connected]
               + [(p, n, port, nh, K_FORWARD) for p, n, port, nh in cfg.prefixes]
               + [(ip, 32, port, 0, K_LOCAL) for ip, port in own])
        rts = np.array(rts, dtype=np.int64).reshape(-1, 5)
        table_ = lpm.build(table_, rts[:, 0], rts[:, 1], np.arange(len(rts)))
    st = L3State(
        routes=table.make_table(cfg.capacity or max(1024, 2 * len(cfg.routes))),
        src_mac=src_mac,
        dst_mac=np.array([MAC_DST_BASE + p for p in range(nports)], dtype=np.uint64),
        opts=np.array([cfg.default_port, int(cfg.router), int(len(cfg.routes) > 0), int(cfg.verify_ip_csum)],
                      dtype=np.int64),
        h=np.zeros(BURST_MAX, dtype=np.int64),
        lpm=table_,
        rt_port=np.zeros(rcap, dtype=np.int32),
        rt_nh=np.zeros(rcap, dtype=np.uint32),
        rt_kind=np.full(rcap, K_FREE, dtype=np.uint8),
        nkeys=nt.keys, nvals=nt.vals, nhits=nt.hits, nver=nt.version,
    )
    if len(cfg.routes):
        r = np.asarray(cfg.routes, dtype=np.int64).reshape(-1, 2)
        ips, ports = r[:, 0].copy(), r[:, 1].copy()
        hs = np.zeros(len(ips), dtype=np.int64)
        hash32_many(ips, hs)
        if table.add_many(st.routes, ips, np.zeros(len(ips), dtype=np.int64), hs, ports):
            raise UsageError(f"l3fwd: more routes than capacity {cfg.capacity}")
    if rts is not None:
        k = len(rts)
        st.rt_port[:k], st.rt_nh[:k], st.rt_kind[:k] = rts[:, 2], rts[:, 3], rts[:, 4]
        used = np.zeros(rcap, dtype=bool)
        used[lpm.routes(st.lpm)[2]] = True
        st.rt_kind[~used] = K_FREE          # ids of duplicates that lost
    return st


def route_add(st, ip, port):
    """Control path: add or replace an exact-match route. While a chain
    runs, call it through rt.mail.control("l3fwd", lambda st: route_add(st,
    ip, port)), which applies it between bursts in every replica."""
    if not 0 <= port < len(st.src_mac):
        raise UsageError(f"l3fwd: port {port} outside 0..{len(st.src_mac) - 1}")
    if not table.add(st.routes, int(ip), 0, hash32(int(ip)), int(port)):
        raise UsageError(f"l3fwd: route table full ({st.routes.info[table.I_CAP]} routes)")
    st.opts[O_EXACT] = 1
    return True


def prefix_add(st, prefix, plen, port, nh=0):
    """Control path: add or replace an LPM route (router mode only)."""
    if not st.opts[O_ROUTER]:
        raise UsageError("l3fwd: prefix routes need router mode (a prefix route or --iface at start)")
    _lpm_add(st, int(prefix), int(plen), int(port), int(nh))
    return True


def prefix_del(st, prefix, plen):
    """Control path: remove an LPM route; False if there was none."""
    if not st.opts[O_ROUTER]:
        return False
    rid = _rid(st, int(prefix), int(plen))
    if rid < 0 or not lpm.delete(st.lpm, int(prefix), int(plen)):
        return False
    st.rt_kind[rid] = K_FREE
    return True


def route_del(st, ip):
    """Control path: remove an exact-match route; False if there was none."""
    return bool(table.delete(st.routes, int(ip), 0, hash32(int(ip))))


def route_list(st):
    """The routes in force, as text lines: exact ones, then prefixes by
    length (connected routes have no next hop; pynf's own addresses say local)."""
    out = []
    s = st.routes.slots.reshape(-1, table.SLOT)
    s = s[(s[:, 1] & table.USED) != 0]
    for ip, port in sorted(zip(s[:, 0].tolist(), s[:, 2].tolist())):
        out.append(f"{format_ipv4(ip)} {port}")
    if st.opts[O_ROUTER]:
        for p, n, rid in zip(*(x.tolist() for x in lpm.routes(st.lpm))):
            nh, kind = int(st.rt_nh[rid]), int(st.rt_kind[rid])
            tail = " local" if kind == K_LOCAL else (f" {format_ipv4(nh)}" if nh else "")
            out.append(f"{format_ipv4(p)}/{n} {int(st.rt_port[rid])}{tail}")
    return out


def _ports(nfctl):
    host = nfctl.ctx.host
    return len(host.ifaces) if host is not None else None


def verb_list(nfctl, args):
    return "".join(line + "\n" for line in route_list(nfctl.states()[0]))


def verb_load(nfctl, args):
    path, cfg = args[0], nfctl.config
    exact, prefixes = parse_routes(path, _ports(nfctl))
    new = L3fwdConfig(exact, prefixes, cfg.default_port, cfg.capacity, cfg.verify_ip_csum, cfg.host)
    new.validate()
    if new.router != cfg.router:
        raise UsageError(f"{path}: would switch l3fwd between router mode (prefix routes or "
                         "--iface) and exact-match mode, which is fixed at start")
    news = iter([make_state(new) for _ in nfctl.states()])     # built (and checked) here
    return Change(f"route: loaded {len(exact)} exact and {len(prefixes)} prefix routes from {path}\n",
                  new=lambda old: next(news), config=new)


def verb_add(nfctl, args):
    try:
        r = parse_route(" ".join(args), _ports(nfctl))
    except ValueError as e:
        raise UsageError(f"route add: {e}") from None
    if r[0] == "exact":
        _, ip, port = r
        return Change(f"route {format_ipv4(ip)} -> port {port}\n", each=lambda st: route_add(st, ip, port))
    if not nfctl.config.router:
        raise UsageError("route add: prefix routes need router mode (a prefix route or --iface at start)")
    _, p, n, port, nh = r
    return Change(f"route {format_ipv4(p)}/{n} -> port {port}{' via ' + format_ipv4(nh) if nh else ''}\n",
                  each=lambda st: prefix_add(st, p, n, port, nh))


def verb_del(nfctl, args):
    addr, slash, plen = args[0].partition("/")
    ip = parse_ipv4(addr)
    if ip is None or (slash and (not is_decimal(plen) or int(plen) > 32)):
        raise UsageError(f"route del: bad prefix {args[0]!r} (want a.b.c.d or a.b.c.d/len)")
    st = nfctl.states()[0]
    if not slash:
        if table.find(st.routes, ip, 0, hash32(ip)) < 0:
            raise UsageError(f"route del: no route {args[0]}")
        return Change(f"route {args[0]} deleted\n", each=lambda st: route_del(st, ip))
    n = int(plen)
    rid = _rid(st, ip, n) if st.opts[O_ROUTER] else -1
    if rid < 0 or st.rt_kind[rid] == K_LOCAL:
        raise UsageError(f"route del: no route {args[0]}" if rid < 0 else
                         f"route del: {args[0]} is one of pynf's own addresses")
    return Change(f"route {args[0]} deleted\n", each=lambda st: prefix_del(st, ip, n))


FILES = [File("--routes", "routes for l3fwd: a.b.c.d/len PORT [NEXTHOP] (LPM) or a.b.c.d PORT (exact)",
              reload="route load")]
VERBS = [Verb("route add", "PREFIX PORT [NEXTHOP]", "a.b.c.d (exact) or a.b.c.d/len (router mode)", verb_add),
         Verb("route del", "PREFIX", "remove a route", verb_del),
         Verb("route list", "", "the routes in force", verb_list),
         Verb("route load", "FILE", "replace every route by the file's, between bursts", verb_load)]


def set_options(st, cfg):
    """Live settings: default_port, verify_ip_csum."""
    st.opts[O_DEFAULT_PORT] = cfg.default_port
    st.opts[O_VERIFY] = int(cfg.verify_ip_csum)


def l3_stats(states):
    st = states[0]          # (every replica holds the same routes)
    return {"routes": int(st.routes.info[table.I_COUNT]),
            "prefixes": int(lpm.routes(st.lpm)[0].size) if st.opts[O_ROUTER] else 0}


def resolve_slow(sp, frame, code):
    """Slow path: a packet whose next hop had no MAC. Its Ethernet
    destination carries port << 32 | next hop (see the docstring)."""
    v = int.from_bytes(bytes(frame.data[0:6]), "big")
    if sp.resolver is None:
        return sp.drop(frame, "neigh_unresolved")
    sp.resolver.resolve(frame, v >> 32, v & 0xFFFFFFFF)


@hot(inline="always")
def echo_reply(pkts, i, st):
    """Turn an ICMP echo request to pynf into its reply, back out of the port
    it came in on (RFC 792). False if it is anything else."""
    o = pkts.l4[i]
    if pkts.proto[i] != 1 or pkts.frag[i] != 0 or load8(pkts, i, o) != 8 or load8(pkts, i, o + 1) != 0:
        return False
    ck = load16(pkts, i, o + 2)
    if ck < 0:
        return False
    store8(pkts, i, o, 0)
    store16(pkts, i, o + 2, csum_apply(ck, csum_delta16(0x0800, 0x0000)))
    src = pkts.src_ip[i]
    pkts.src_ip[i] = pkts.dst_ip[i]
    pkts.dst_ip[i] = src
    pkts.ttl[i] = ICMP_ECHO_TTL
    pkts.eth_dst[i] = pkts.eth_src[i]
    pkts.eth_src[i] = st.src_mac[pkts.in_port[i]]
    pkts.port[i] = pkts.in_port[i]
    return True


@hot(inline="always")
def cache_guard(pkts, i, st):
    """Flow cache: the checksum is per packet, and so is an echo request's
    answer (router mode: ICMP is never served from the cache)."""
    if st.opts[O_ROUTER] != 0 and pkts.proto[i] == 1:
        return False
    return st.opts[O_VERIFY] == 0 or ipv4_csum_ok(pkts.mem, pkts.off[i] + pkts.l3[i])


@hot(inline="always")
def cache_replay(st, nh):
    """Flow cache: the neighbour a recorded flow goes through is marked used,
    as the lookup marks it (its entry is refreshed, not aged out)."""
    if st.opts[O_ROUTER] != 0:
        neigh.lookup(st.nkeys, st.nvals, st.nhits, nh)


@hot(inline="always")
def cache_version(st):
    return st.nver[0]


@nf("l3fwd", drops=("ttl", "no_route", "local", "ip_csum"), config=L3fwdConfig, state=make_state,
    slow=resolve_slow, files=FILES, verbs=VERBS, stats=l3_stats,
    cache=Cacheable(guard=cache_guard, replay=cache_replay, version=cache_version),
    live={"default_port": set_options, "verify_ip_csum": set_options})
def l3fwd(pkts, live, n, st):
    """Exact match (the paper's mode); router mode is the form below."""
    t = st.routes
    for j in range(n):
        h = hash32(pkts.dst_ip[live[j]])
        st.h[j] = h
        table.prefetch_slot(t, h)
    verify = st.opts[O_VERIFY] != 0
    for j in range(n):
        i = live[j]
        if verify and not ipv4_csum_ok(pkts.mem, pkts.off[i] + pkts.l3[i]):
            pkts.port[i] = drop(IP_CSUM)
            continue
        if pkts.ttl[i] <= 1:
            pkts.port[i] = drop(TTL)
            continue
        s = table.find(t, int(pkts.dst_ip[i]), 0, st.h[j])
        if s >= 0:
            p = table.value(t, s)
        else:
            p = st.opts[O_DEFAULT_PORT]
            if p < 0:
                pkts.port[i] = drop(NO_ROUTE)
                continue
        pkts.ttl[i] = pkts.ttl[i] - 1
        pkts.port[i] = p
        pkts.eth_src[i] = st.src_mac[p]
        pkts.eth_dst[i] = st.dst_mac[p]


@l3fwd.form("router", when=lambda cfg: cfg.router)
def l3fwd_router(pkts, live, n, st):
    """Router mode (see the docstring): LPM, neighbours, ICMP echo."""
    for j in range(n):
        lpm.prefetch(st.lpm, pkts.dst_ip[live[j]])
    for j in range(n):
        i = live[j]
        if st.opts[O_VERIFY] != 0 and not ipv4_csum_ok(pkts.mem, pkts.off[i] + pkts.l3[i]):
            pkts.port[i] = drop(IP_CSUM)
            continue
        dst = int(pkts.dst_ip[i])
        p = -1
        r = -1
        if st.opts[O_EXACT] != 0:
            s = table.find(st.routes, dst, 0, hash32(dst))
            if s >= 0:
                p = table.value(st.routes, s)
        if p < 0:
            r = lpm.lookup(st.lpm, dst)
            if r < 0:
                p = st.opts[O_DEFAULT_PORT]
                if p < 0:
                    pkts.port[i] = drop(NO_ROUTE)
                    continue
        nh = dst
        if r >= 0:
            if st.rt_kind[r] == K_LOCAL:
                if not echo_reply(pkts, i, st):
                    pkts.port[i] = drop(LOCAL)
                continue
            p = st.rt_port[r]
            if st.rt_nh[r] != 0:
                nh = int(st.rt_nh[r])
        if pkts.ttl[i] <= 1:
            pkts.port[i] = drop(TTL)
            continue
        pkts.ttl[i] = pkts.ttl[i] - 1
        pkts.eth_src[i] = st.src_mac[p]
        pkts.tag[i] = nh
        mac = neigh.lookup(st.nkeys, st.nvals, st.nhits, nh)
        if mac < 0:
            pkts.eth_dst[i] = (int(p) << 32) | nh
            pkts.port[i] = slowpath(0)
        else:
            pkts.eth_dst[i] = mac
            pkts.port[i] = p
