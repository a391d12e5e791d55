"""lb's state and the operations on it (plain Python between bursts):
services, backends, flushing, timeouts, listing, stats."""

import numpy as np

from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import NO_JIT
from pynf.errors import format_ipv4
from pynf.nfs.lb.config import (
    AMBIGUOUS,
    BE_ACTIVE,
    BE_DRAINING,
    BE_FLAG,
    BE_FREE,
    BE_IP,
    BE_LIMIT,
    BE_PORT,
    BE_SHIFT,
    BE_SVC,
    CLOCK,
    COUNTERS,
    CTL_EXTRA,
    FILTER,
    FILTER_BITS,
    FILTER_MASK,
    FRAG_KEY,
    MODE_PAPER,
    MODE_SERVICES,
    NON_L4,
    O_FILLED,
    O_HZ,
    O_M,
    O_MODE,
    O_NON_L4,
    O_ON_FULL,
    O_RATE,
    O_REV,
    O_TOKENS,
    ON_FULL,
    REV,
    REVERSE_NAT,
    S_FIN,
    S_FRAG,
    S_SYN,
    S_TCP,
    S_UDP,
    SVC_ROOM,
    LbState,
    _addr,
    _be_key,
    _svc_key,
    _vip_key,
    ticks_per_second,
)
from pynf.packet.batch import BURST_MAX
from pynf.tables import flowtable as ct
from pynf.tables import hashtable as table
from pynf.tables import maglev
from pynf.tables.hashing import hash32


def make_state(cfg):
    services = cfg.services or ((0, 0, cfg.backends),)
    nbe = sum(len(b) for _, _, b in services)
    room = min(BE_LIMIT, nbe + max(64, nbe))        # room for control-path additions
    rows = len(services) + (SVC_ROOM if cfg.services else 0)
    hz = int(ticks_per_second())
    tab, ctl = ct.make(cfg.capacity, CTL_EXTRA, max(cfg.capacity, cfg.max_entries))
    ctl[O_HZ] = hz
    ctl[ct.I_WEAK] = (1 << S_SYN) | (1 << S_FIN)       # evicted first: half-open and closing connections
    ctl[CLOCK] = -1
    ctl[O_MODE] = MODE_SERVICES if cfg.services else MODE_PAPER
    ctl[O_M] = cfg.table_size
    st = LbState(
        flows=tab, ctl=ctl,
        counters=np.zeros(8, dtype=np.int64),
        maglev=np.full((rows, cfg.table_size), -1, dtype=np.int16),
        svcs=table.make_table(2 * rows + room),
        svc_addr=np.full(rows, -1, dtype=np.int64),
        be=np.zeros((room, 4), dtype=np.int64),
        scratch=np.zeros(3 * BURST_MAX, dtype=np.int64),
    )
    k = 0
    for s, (vip, vport, bes) in enumerate(services):
        st.svc_addr[s] = (vip << 16) | vport
        if cfg.services:
            table.add(st.svcs, *_svc_key(vip, vport), s)
            table.add(st.svcs, *_vip_key(vip), 1)
        for ip, port in bes:
            st.be[k] = (ip, port, s, BE_ACTIVE)
            k += 1
        _rebuild(st, s)
    if cfg.services:
        for ip, port in {(ip, port) for _, _, bes in services for ip, port in bes}:
            _index_backend(st, ip, port)
    set_timeouts(st, cfg)           # (and the filter, which needs the services)
    return st


def set_timeouts(st, cfg):
    """Live settings: the idle timeouts, on_full, non_l4, reverse_nat,
    max_new_per_s."""
    hz = st.ctl[O_HZ]
    for s, secs in ((S_TCP, cfg.tcp_timeout), (S_FIN, cfg.tcp_fin_timeout), (S_SYN, cfg.tcp_syn_timeout),
                    (S_UDP, cfg.udp_timeout), (S_FRAG, cfg.frag_timeout)):
        st.ctl[ct.I_TMO + s] = int(secs * hz)
    st.ctl[O_ON_FULL] = ON_FULL.index(cfg.on_full)
    st.ctl[O_NON_L4] = NON_L4.index(cfg.non_l4)
    st.ctl[O_REV] = REVERSE_NAT.index(cfg.reverse_nat)
    if st.ctl[O_RATE] != cfg.max_new_per_s:
        st.ctl[O_RATE] = cfg.max_new_per_s
        st.ctl[O_TOKENS] = st.ctl[O_FILLED] = 0           # a fresh bucket: full
    _rebuild_filter(st)


LIVE_SETTINGS = {k: set_timeouts for k in ("tcp_timeout", "tcp_fin_timeout", "tcp_syn_timeout", "udp_timeout",
                                           "frag_timeout", "on_full", "non_l4", "reverse_nat", "max_new_per_s")}


def _service_index(st, service):
    """Service index from None (paper mode, or the only service), 'VIP:PORT'
    or (vip, vport)."""
    if service is None:
        used = np.flatnonzero(st.svc_addr >= 0)
        if len(used) != 1:
            raise ValueError("name the service (VIP:PORT): there are several")
        return int(used[0])
    if isinstance(service, str):
        a = _addr(service)
        if a is None:
            raise ValueError(f"bad service {service!r} (want VIP:PORT)")
        service = a
    key = (int(service[0]) << 16) | int(service[1])
    hit = np.flatnonzero(st.svc_addr == key)
    if st.ctl[O_MODE] != MODE_SERVICES or len(hit) == 0:
        raise ValueError(f"no service {format_ipv4(service[0])}:{service[1]}")
    return int(hit[0])


def _rebuild_filter(st):
    """Set the filter's bits for the VIPs and (reverse_nat=table+backend)
    the backends in use."""
    ctl = st.ctl
    ctl[FILTER:FILTER + FILTER_BITS // 64] = 0
    if ctl[O_MODE] != MODE_SERVICES:
        return
    ips = [int(a) >> 16 for a in st.svc_addr if a >= 0]
    if ctl[O_REV] == 0:
        ips += [int(ip) for ip in st.be[st.be[:, BE_FLAG] != BE_FREE, BE_IP]]
    for ip in ips:
        x = int(hash32(ip)) & FILTER_MASK
        ctl[FILTER + (x >> 6)] |= np.int64(1 << (x & 63)) if (x & 63) < 63 else np.int64(-(1 << 63))


def _rebuild(st, s):
    """Rebuild service s's Maglev table from its active backends."""
    be = st.be
    ks = np.flatnonzero((be[:, BE_SVC] == s) & (be[:, BE_FLAG] == BE_ACTIVE))
    t = maglev.build([(int(be[k, BE_IP]), int(be[k, BE_PORT])) for k in ks], int(st.ctl[O_M]))
    st.maglev[s, :] = np.where(t >= 0, ks[np.maximum(t, 0)] if len(ks) else -1, -1)


def _index_backend(st, ip, port):
    """Keep the reply map (backend ip:port -> its one service) right for ip:port."""
    if st.ctl[O_MODE] != MODE_SERVICES:
        return
    be = st.be
    ks = np.flatnonzero((be[:, BE_IP] == ip) & (be[:, BE_PORT] == port) & (be[:, BE_FLAG] != BE_FREE))
    k0, k1, h = _be_key(ip, port)
    if len(ks) == 0:
        table.delete(st.svcs, k0, k1, h)
        return
    svcs = set(int(be[k, BE_SVC]) for k in ks)
    table.add(st.svcs, k0, k1, h, svcs.pop() if len(svcs) == 1 else AMBIGUOUS)


def _slot(st, s, ip, port):
    be = st.be
    ks = np.flatnonzero((be[:, BE_SVC] == s) & (be[:, BE_IP] == ip) & (be[:, BE_PORT] == port)
                        & (be[:, BE_FLAG] != BE_FREE))
    return int(ks[0]) if len(ks) else -1


def _parse_backend(backend):
    if isinstance(backend, str):
        a = _addr(backend)
        if a is None:
            raise ValueError(f"bad backend {backend!r} (want a.b.c.d:port)")
        return a
    return int(backend[0]), int(backend[1])


def add_backend(st, backend, service=None):
    """Add backend ('a.b.c.d:port' or (ip, port)) to a service (or re-activate
    a drained one) and rebuild the service's Maglev table. New flows spread
    over it at once; existing flows keep their backends."""
    s = _service_index(st, service)
    ip, port = _parse_backend(backend)
    k = _slot(st, s, ip, port)
    if k < 0:
        free = np.flatnonzero(st.be[:, BE_FLAG] == BE_FREE)
        if len(free) == 0:
            raise ValueError(f"no room for another backend ({len(st.be)} slots)")
        k = int(free[0])
        st.be[k, BE_IP], st.be[k, BE_PORT], st.be[k, BE_SVC] = ip, port, s
    st.be[k, BE_FLAG] = BE_ACTIVE
    _rebuild(st, s)
    _index_backend(st, ip, port)
    _rebuild_filter(st)


def _existing(st, backend, service):
    """(service index, ip, port, slot) of a backend the service has."""
    s = _service_index(st, service)
    ip, port = _parse_backend(backend)
    k = _slot(st, s, ip, port)
    if k < 0:
        raise ValueError(f"no backend {format_ipv4(ip)}:{port} in that service")
    return s, ip, port, k


def drain_backend(st, backend, service=None):
    """Send no new flows to a backend; its flows stay until they end."""
    s, _, _, k = _existing(st, backend, service)
    st.be[k, BE_FLAG] = BE_DRAINING
    _rebuild(st, s)


def remove_backend(st, backend, service=None):
    """Remove a backend and its flows (their next packets are balanced anew).
    Returns how many flow entries were removed."""
    s, ip, port, k = _existing(st, backend, service)
    st.be[k, BE_FLAG] = BE_FREE
    _rebuild(st, s)
    _index_backend(st, ip, port)
    _rebuild_filter(st)
    return _flush_where(st, lambda slot: slot == k)


def _flush_where(st, pick):
    e = ct.entries(st.flows, st.ctl)
    slot = (e[:, 2] >> BE_SHIFT) & BE_LIMIT
    return ct.flush(st.flows, st.ctl, pick(slot))


def flush_flows(st, service=None):
    """Remove every flow entry (of one service, when named). Returns how many."""
    if service is None:
        return ct.flush(st.flows, st.ctl)
    s = _service_index(st, service)
    return _flush_where(st, lambda slot: st.be[np.minimum(slot, len(st.be) - 1), BE_SVC] == s)


def set_clock(st, seconds):
    """Fix the NF's clock at `seconds` (tests simulate time); None: the TSC again."""
    st.ctl[CLOCK] = -1 if seconds is None else int(seconds * st.ctl[O_HZ])


def ticks(st, seconds):
    """Seconds in the NF's clock ticks."""
    return int(seconds * st.ctl[O_HZ])


def timeouts(st):
    """Idle timeouts by state (S_TCP, S_FIN, S_UDP, S_FRAG, S_SYN), in ticks."""
    return [int(st.ctl[ct.I_TMO + s]) for s in (S_TCP, S_FIN, S_UDP, S_FRAG, S_SYN)]


def counters(st):
    """The counters by name."""
    return {name: int(st.counters[k]) for k, name in enumerate(COUNTERS)}


def flow_count(st):
    """Used entries (live or not yet found dead): the table's own count."""
    return int(st.ctl[ct.I_COUNT])


def add_service(st, vip, vport, backends):
    """Add service VIP:PORT with backends ((ip, port), ...) (services mode)."""
    if st.ctl[O_MODE] != MODE_SERVICES:
        raise ValueError("lb runs the paper's mode (one pool of backends, no VIPs): services "
                         "need a services file (--backends) at start")
    key = (int(vip) << 16) | int(vport)
    if np.any(st.svc_addr == key):
        raise ValueError(f"service {format_ipv4(vip)}:{vport} exists")
    if len(set(backends)) != len(backends):
        raise ValueError("a backend is listed twice")
    rows = np.flatnonzero(st.svc_addr < 0)
    if len(rows) == 0:
        raise ValueError(f"no room for another service ({len(st.svc_addr)} rows)")
    free = np.flatnonzero(st.be[:, BE_FLAG] == BE_FREE)
    if len(free) < len(backends):
        raise ValueError(f"no room for {len(backends)} more backends ({len(free)} free slots)")
    if len(backends) > st.ctl[O_M]:
        raise ValueError("more backends than the Maglev table size")
    s = int(rows[0])
    keys = [_svc_key(vip, vport)] + ([] if _vip_used(st, vip) else [_vip_key(vip)])
    if table.find(st.svcs, *keys[0]) < 0 and \
            st.svcs.info[table.I_COUNT] + len(keys) + len(backends) > st.svcs.info[table.I_CAP]:
        raise ValueError("the services table is full")
    for (ip, port), k in zip(backends, free):
        st.be[k] = (ip, port, s, BE_ACTIVE)
    st.svc_addr[s] = key
    table.add(st.svcs, *_svc_key(vip, vport), s)
    table.add(st.svcs, *_vip_key(vip), 1)
    _rebuild(st, s)
    for ip, port in backends:
        _index_backend(st, ip, port)
    _rebuild_filter(st)


def _vip_used(st, vip):
    return bool(np.any((st.svc_addr >= 0) & ((st.svc_addr >> 16) == int(vip))))


def del_service(st, service):
    """Remove a service, its backends and their flows. Returns the flow
    entries removed."""
    s = _service_index(st, service)
    n = _flush_where(st, lambda slot: (st.be[np.minimum(slot, len(st.be) - 1), BE_SVC] == s)
                     & (st.be[np.minimum(slot, len(st.be) - 1), BE_FLAG] != BE_FREE))
    vip, vport = int(st.svc_addr[s]) >> 16, int(st.svc_addr[s]) & 0xFFFF
    ks = np.flatnonzero((st.be[:, BE_SVC] == s) & (st.be[:, BE_FLAG] != BE_FREE))
    gone = [(int(st.be[k, BE_IP]), int(st.be[k, BE_PORT])) for k in ks]
    st.be[ks, BE_FLAG] = BE_FREE
    st.svc_addr[s] = -1
    st.maglev[s, :] = -1
    table.delete(st.svcs, *_svc_key(vip, vport))
    if not _vip_used(st, vip):
        table.delete(st.svcs, *_vip_key(vip))
    for ip, port in gone:
        _index_backend(st, ip, port)
    _rebuild_filter(st)
    return n


def services(st):
    """[(vip, vport, [(ip, port, 'active'|'draining'), ...]), ...] in force
    (paper mode: one with vip 0, port 0)."""
    out = []
    for s in np.flatnonzero(st.svc_addr >= 0):
        a = int(st.svc_addr[s])
        ks = np.flatnonzero((st.be[:, BE_SVC] == s) & (st.be[:, BE_FLAG] != BE_FREE))
        out.append((a >> 16, a & 0xFFFF, [(int(st.be[k, BE_IP]), int(st.be[k, BE_PORT]),
                                           "active" if st.be[k, BE_FLAG] == BE_ACTIVE else "draining")
                                          for k in ks]))
    return out


def flow_rows(st, limit):
    """Up to `limit` flow entries, as (k0, k1, value, meta) rows (a copy;
    take it between bursts, through the mailbox (rt.mail.control))."""
    e = ct.entries(st.flows, st.ctl)
    return e[np.flatnonzero(e[:, 1] != 0)[:limit]].copy()


def _now(st):
    """The NF's clock, read on the control path."""
    if st.ctl[CLOCK] >= 0:
        return int(st.ctl[CLOCK])
    if NO_JIT:
        return int(rdtsc())
    from pynf.shim import rdtsc as shim_rdtsc
    return int(shim_rdtsc())


STATE_NAMES = {S_TCP: "tcp", S_FIN: "tcp_closing", S_UDP: "udp", S_FRAG: "fragment", S_SYN: "tcp_half_open"}
PROTO_NAMES = {6: "tcp", 17: "udp"}


def format_flow(st, row, now):
    """One line for a flow entry: client -> service => backend, state, idle."""
    k0, k1, v, meta = (int(x) for x in row)
    k1 &= ~ct.USED
    src, sport, proto = k0 >> 24, (k0 >> 8) & 0xFFFF, k0 & 0xFF
    state = meta & ct.STATE_MASK
    idle = max(0, now - (meta >> ct.STATE_BITS)) / float(st.ctl[O_HZ])
    dead = idle * st.ctl[O_HZ] >= st.ctl[ct.I_TMO + state]
    tgt = f"{format_ipv4((v & ((1 << 48) - 1)) >> 16)}:{v & 0xFFFF}"
    p = PROTO_NAMES.get(proto, str(proto))
    if k1 & FRAG_KEY:
        what = f"{p} {format_ipv4(src)} -> {format_ipv4((k1 & ~FRAG_KEY) >> 16)} ip-id {sport}"
    else:
        what = f"{p} {format_ipv4(src)}:{sport} -> {format_ipv4(k1 >> 16)}:{k1 & 0xFFFF}"
    arrow = "reply, source becomes" if v & REV else "=>"
    return (f"{what} {arrow} {tgt}  {STATE_NAMES[state]} idle {idle:.1f} s"
            f"{' (expired)' if dead else ''}")


def _half_open(st):
    e = ct.entries(st.flows, st.ctl)
    return int(np.count_nonzero((e[:, 1] != 0) & ((e[:, 3] & ct.STATE_MASK) == S_SYN)))


def lb_stats(states):
    """Flow-table occupancy and counters, summed over the replicas' tables;
    the services and backends (the same in each replica)."""
    out = {"flows": sum(flow_count(st) for st in states),
           "half_open": sum(_half_open(st) for st in states),
           "flow_capacity": sum(len(ct.entries(st.flows, st.ctl)) for st in states),
           "flow_max_entries": sum(ct.geometry(st.ctl)["max_entries"] for st in states),
           "resizes_total": sum(ct.geometry(st.ctl)["resizes"] for st in states)}
    for st in states:
        for k, v in counters(st).items():
            out[f"{k}_total"] = out.get(f"{k}_total", 0) + v
    st = states[0]
    out["services"] = int(np.count_nonzero(st.svc_addr >= 0)) if st.ctl[O_MODE] == MODE_SERVICES else 0
    out["backends_active"] = int(np.count_nonzero(st.be[:, BE_FLAG] == BE_ACTIVE))
    out["backends_draining"] = int(np.count_nonzero(st.be[:, BE_FLAG] == BE_DRAINING))
    return out
