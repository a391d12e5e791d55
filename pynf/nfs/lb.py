"""lb: stateful layer-4 load balancer: Maglev hashing, NAT, idle timeouts.

Synopsis:   pynf run --rtc ...,lb,... [--backends FILE] [--set lb.KEY=VALUE]
Backends:   one of two formats, '#' comments, not mixed in one file:
              a.b.c.d:port                        paper mode: one backend a line
              VIP:PORT BACKEND:PORT [BACKEND:PORT ...]
                                                  services mode: one service a line
            A service takes TCP and UDP to VIP:PORT. Errors (exit 2,
            FILE:LINE): a bad address or port, a service line without
            backends, a file mixing the formats, VIP:PORT defined twice, a
            backend listed twice in one service.
Behaviour:  Flows live in a set-associative flow table (pynf.tables.flowtable).
            A new flow's backend is chosen by Maglev consistent hashing
            (pynf.tables.maglev): table[hash5 % table_size], one lookup table per
            service, built on the control path; instances and replicas with
            the same backends choose the same backend for a flow, and
            removing one of N backends moves its own flows and few others.
            Paper mode: every TCP/UDP packet is balanced, its destination
            IP and port rewritten to the flow's backend (the paper's LB).
            Services mode: only packets to a VIP:PORT are balanced (dst
            rewritten VIP:PORT -> BACKEND:PORT) and each new connection
            also gets a reverse entry, keyed by the backend -> client
            5-tuple, that rewrites the reply's source back to VIP:PORT
            (NAT, as IPVS and VPP's lb do), so TCP works end to end. A reply
            that finds no entry passes untouched (a client may talk to a
            backend directly); with reverse_nat=table+backend, one from a
            backend serving exactly one service is rewritten all the same
            (for replicas whose forward packets went to another replica:
            replicas share no state). Everything else passes untouched
            (a filter of the VIP and backend addresses lets most of it
            by without a table lookup). The stage fixes IPv4 and TCP/UDP
            checksums (RFC 1624; UDP 0 stays 0).
State:      each entry has a last-seen time and a state: TCP, TCP closing
            (a FIN or RST was seen, either way), UDP, or fragment. An entry
            idle for its state's timeout is dead: the next packet of the
            5-tuple starts a new flow in it, and a new flow may take its
            place. A new flow whose bucket (8 entries) holds only live
            entries evicts the bucket's least recently seen (LRU within the
            bucket; on_full=drop drops instead). A SYN (without ACK) on a
            closing entry reopens it (port reuse). Time is the TSC, read
            once a burst.
Fragments:  paper mode: fragments pass unchanged (the paper's rule), or
            are dropped with non_l4=drop. Services mode: a first fragment
            is balanced by its 5-tuple like any packet, and leaves an entry
            keyed by (src, dst, proto, IP id) with the same rewrite; the
            later fragments of that datagram find it and get the same
            addresses (no ports: they carry none), so all fragments of a
            datagram go to the flow's backend. A non-first fragment to a
            VIP that arrives before its first fragment is dropped (lb_frag).
Drops:      lb_full        new flow in a bucket of live entries, with on_full=drop
            lb_non_l4      not TCP/UDP (paper mode: or a fragment), with
                           non_l4=drop; services mode: only those to a VIP
            lb_frag        services mode: non-first fragment to a VIP with
                           no entry (its first fragment not seen)
            lb_no_backend  new flow to a service whose backends were all
                           drained or removed (control path)
Settings:   capacity         flow-table entries per replica, rounded up to
                             8 x a power of two (default: max(65536, 4 x --flows):
                             a connection takes two entries in services mode;
                             32 bytes an entry, so 2 MiB at least)
            on_full          evict | drop | hash (send without an entry)
            non_l4           pass | drop
            table_size       Maglev table size M, a prime (65537)
            tcp_timeout      idle seconds, established TCP (900)
            tcp_fin_timeout  idle seconds after a FIN or RST (120)
            udp_timeout      idle seconds, UDP (300)
            frag_timeout     idle seconds, a fragmented datagram (30)
            reverse_nat      table (the default) | table+backend
            Timeout defaults are IPVS's (ipvsadm --set tcp tcpfin udp:
            900 120 300); the fragment timeout is Linux's ipfrag_time.
Counters:   st.counters[C_NEW, C_EXPIRED, C_EVICTED, C_FRAGS, C_CLOSED,
            C_REVERSE_STATELESS]: flows created, expired entries taken by
            a new flow, live entries evicted, fragments rewritten,
            entries closed by FIN/RST, replies rewritten without an entry.
Control:    add_backend, remove_backend (and flush its flows),
            drain_backend (no new flows), flush_flows: plain Python over
            the state arrays; call them through Runtime.control so each
            replica applies them between bursts. set_clock(st, seconds)
            fixes the NF's clock (tests simulate time passing: it sets
            st.ctl[CLOCK], which overrides the TSC when >= 0).
Default:    without --backends, paper mode with 8 backends
            192.168.0.1..8, port 8080 (with --iface, --backends is required).
Example:    pynf run --rtc acl,lb,l3fwd --backends services.txt --set lb.tcp_timeout=300
Follows:    the paper's LB NF (5-tuple flow table, dst rewrite); Maglev
            (Eisenbud et al., NSDI '16) for the choice; IPVS NAT mode for
            the reverse path and the timeouts.
"""
import dataclasses
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.compiler.intrinsics import ld8, ld16, rdtsc
from pynf.compiler.jit import NO_JIT, hot
from pynf.errors import ConfigError, UsageError, format_ipv4, is_decimal, parse_ipv4, read_lines
from pynf.nf import drop, nf
from pynf.packet.batch import BURST_MAX
from pynf.tables import flowtable as ct
from pynf.tables import hashtable as table
from pynf.tables import maglev
from pynf.tables.hashing import hash5, hash32, key5
from pynf.traffic.flows import DEFAULT_BACKENDS

ON_FULL = ("evict", "drop", "hash")
NON_L4 = ("pass", "drop")
REVERSE_NAT = ("table+backend", "table")   # index order is the kernel's opts code

# Entry states (pynf.tables.flowtable: 2 bits; each picks a timeout)
S_TCP, S_FIN, S_UDP, S_FRAG = 0, 1, 2, 3

# Counter slots of st.counters
C_EXPIRED = ct.C_EXPIRED
C_EVICTED = ct.C_EVICTED
C_NEW, C_FRAGS, C_CLOSED, C_REVERSE_STATELESS = 2, 3, 4, 5
COUNTERS = ("expired", "evicted", "new", "fragments", "closed", "reverse_stateless")

# st.ctl: pynf.tables.flowtable's info (bucket mask, count, timeouts by state at
# ct.I_TMO + state), then these slots; one array, as each array in the
# state is passed on every call
CLOCK, O_MODE, O_ON_FULL, O_NON_L4, O_M, O_HZ, O_REV = range(ct.I_END, ct.I_END + 7)
# ... and a filter (services mode): bit hash32(a) & FILTER_MASK of st.ctl's
# words from FILTER is set for each VIP and, with reverse_nat=table+backend,
# each backend address. A packet that is not a live flow's and whose
# addresses' bits are clear is not ours: it passes without the slow path.
FILTER = ct.I_END + 8
FILTER_BITS = 1 << 16
FILTER_MASK = FILTER_BITS - 1
CTL_EXTRA = FILTER + FILTER_BITS // 64 - ct.I_END
MODE_PAPER, MODE_SERVICES = 0, 1
# st.be[slot]: a backend slot's columns; BE_FLAG is
BE_IP, BE_PORT, BE_SVC, BE_FLAG = 0, 1, 2, 3
BE_FREE, BE_ACTIVE, BE_DRAINING = 0, 1, 2
# st.scratch: a burst's keys and hashes, k0 at K0 + j, k1 at K1 + j, h at H + j
K0, K1, H = 0, BURST_MAX, 2 * BURST_MAX

# Entry value: target ip << 16 | port, REV (rewrite the source, not the
# destination), backend slot << BE_SHIFT (control path: flush by backend)
REV = 1 << 48
BE_SHIFT = 49
BE_LIMIT = (1 << 13) - 1        # backend slots: 13 bits of the value
# Key marks: k1 of a fragment entry; svcs-table k1 of each kind of key
FRAG_KEY = 1 << 48
LB_FULL, LB_NON_L4, LB_FRAG, LB_NO_BACKEND = range(4)     # drop reasons, in @nf's drops= order
SVC_ROOM = 16                   # services mode: rows for services added while running
K_SERVICE, K_VIP, K_BACKEND = 1, 2, 3
AMBIGUOUS = -2                  # a backend in more than one service

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True)
class LbConfig:
    backends: tuple = DEFAULT_BACKENDS      # paper mode: ((ip, port), ...)
    services: tuple = ()                    # services mode: ((vip, vport, ((ip, port), ...)), ...)
    capacity: int = 65536
    on_full: str = "evict"
    non_l4: str = "pass"
    table_size: int = maglev.DEFAULT_M
    tcp_timeout: float = 900.0
    tcp_fin_timeout: float = 120.0
    udp_timeout: float = 300.0
    frag_timeout: float = 30.0
    reverse_nat: str = "table"

    @classmethod
    def from_context(cls, ctx):
        cap = max(65536, 4 * ctx.flows)
        if ctx.backends:
            backends, services = parse_backends(ctx.backends)
            if services:
                return cls(services=services, capacity=cap)
            return cls(backends=backends, capacity=cap)
        if getattr(ctx, "host", None) is not None:
            raise UsageError("lb with --iface needs --backends: without one it runs the paper's "
                             "mode and would send every TCP/UDP packet to its test backends")
        return cls(capacity=cap)

    def validate(self):
        if self.capacity < 1:
            raise UsageError("--set lb.capacity: must be at least 1")
        for key, allowed in (("on_full", ON_FULL), ("non_l4", NON_L4), ("reverse_nat", REVERSE_NAT)):
            if getattr(self, key) not in allowed:
                raise UsageError(f"--set lb.{key}: want one of {', '.join(allowed)}")
        if not maglev.is_prime(self.table_size) or self.table_size >= 1 << 31:
            raise UsageError(f"--set lb.table_size: {self.table_size} is not a prime below 2**31")
        most = max([len(b) for _, _, b in self.services] or [len(self.backends)])
        if self.table_size < most:
            raise UsageError(f"--set lb.table_size: {self.table_size} is smaller than a "
                             f"service's {most} backends")
        for key in ("tcp_timeout", "tcp_fin_timeout", "udp_timeout", "frag_timeout"):
            if not getattr(self, key) > 0:
                raise UsageError(f"--set lb.{key}: want seconds > 0")


def _addr(text):
    """'a.b.c.d:port' -> (ip, port) or None."""
    ip, sep, port = text.rpartition(":")
    v = parse_ipv4(ip)
    if not sep or v is None or not is_decimal(port) or not 0 < int(port) < 65536:
        return None
    return v, int(port)


def parse_backends(path):
    """(backends, services) from a backends file; exactly one is non-empty.

    Paper mode: 'ip:port' a line. Services mode: 'VIP:PORT BACKEND:PORT ...'
    a line. The first line decides which the file is."""
    lines = read_lines(path)
    if not lines:
        raise ConfigError(path, 0, "no backends")
    services_mode = len(lines[0][1].split()) > 1
    backends, services, seen = [], [], {}
    total = 0
    for no, text in lines:
        toks = text.split()
        addrs = []
        for t in toks:
            a = _addr(t)
            if a is None:
                want = "a.b.c.d:port" if not services_mode else "VIP:PORT BACKEND:PORT ..."
                raise ConfigError(path, no, f"bad address {t!r} (want {want})")
            addrs.append(a)
        if not services_mode:
            if len(addrs) > 1:
                raise ConfigError(path, no, "a service line in a file of paper-mode backends "
                                            f"(line {lines[0][0]} is one ip:port): use one format")
            backends.append(addrs[0])
            total += 1
        else:
            if len(addrs) == 1:
                raise ConfigError(path, no, f"service {toks[0]} has no backends (want VIP:PORT "
                                            "BACKEND:PORT ...; a services file takes no paper-mode "
                                            "backend lines)")
            vip, bes = addrs[0], addrs[1:]
            if vip in seen:
                raise ConfigError(path, no, f"service {toks[0]} is already defined on line {seen[vip]}")
            seen[vip] = no
            dup = next((toks[1 + k] for k, b in enumerate(bes) if b in bes[:k]), None)
            if dup is not None:
                raise ConfigError(path, no, f"backend {dup} is listed twice for {toks[0]}")
            services.append((vip[0], vip[1], tuple(bes)))
            total += len(bes)
        if total > BE_LIMIT:
            raise ConfigError(path, no, f"more than {BE_LIMIT} backends")
    return tuple(backends), tuple(services)


LbState = namedtuple("LbState", "flows ctl counters maglev svcs svc_addr be scratch")


def ticks_per_second():
    """Clock ticks a second: TSC cycles compiled, nanoseconds without the JIT
    (pynf.compiler.intrinsics.rdtsc)."""
    if NO_JIT:
        return 1e9
    from pynf.runtime.report import tsc_hz
    return tsc_hz()


def make_state(cfg):
    services = cfg.services or ((0, 0, cfg.backends),)
    nbe = sum(len(b) for _, _, b in services)
    room = min(BE_LIMIT, nbe + max(64, nbe))        # room for control-path additions
    rows = len(services) + (SVC_ROOM if cfg.services else 0)
    hz = int(ticks_per_second())
    tab, ctl = ct.make(cfg.capacity, CTL_EXTRA)
    for s, secs in ((S_TCP, cfg.tcp_timeout), (S_FIN, cfg.tcp_fin_timeout),
                    (S_UDP, cfg.udp_timeout), (S_FRAG, cfg.frag_timeout)):
        ctl[ct.I_TMO + s] = int(secs * hz)
    ctl[CLOCK] = -1
    ctl[O_MODE] = MODE_SERVICES if cfg.services else MODE_PAPER
    ctl[O_ON_FULL] = ON_FULL.index(cfg.on_full)
    ctl[O_NON_L4] = NON_L4.index(cfg.non_l4)
    ctl[O_M] = cfg.table_size
    ctl[O_HZ] = hz
    ctl[O_REV] = REVERSE_NAT.index(cfg.reverse_nat)
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
    _rebuild_filter(st)
    return st


# ---- keys of the services table (st.svcs: a pynf.tables.hashtable) ----

def _svc_key(vip, vport):
    return (int(vip) << 16) | int(vport), K_SERVICE, int(hash5(vip, 0, 0, vport, 0))


def _vip_key(vip):
    return int(vip), K_VIP, int(hash32(vip))


def _be_key(ip, port):
    return (int(ip) << 16) | int(port), K_BACKEND, int(hash5(0, ip, port, 0, 0))


# ---- fast path ----

@hot(inline="always")
def _in_filter(ctl, ip):
    x = hash32(ip) & FILTER_MASK
    return (ctl[FILTER + (x >> 6)] >> (x & 63)) & 1 != 0


@hot(inline="always")
def _lookup(svcs, k0, k1, h):
    s = table.find(svcs, k0, k1, h)
    return -1 if s < 0 else table.value(svcs, s)


@hot(inline="always")
def _service(svcs, vip, vport):
    """Service index of VIP:PORT, or -1."""
    return _lookup(svcs, (int(vip) << 16) | int(vport), K_SERVICE, hash5(vip, 0, 0, vport, 0))


@hot(inline="always")
def _is_vip(svcs, ip):
    return _lookup(svcs, int(ip), K_VIP, hash32(ip)) >= 0


@hot(inline="always")
def _backend_service(svcs, ip, port):
    """Service of backend ip:port (AMBIGUOUS when it serves several), or -1."""
    return _lookup(svcs, (int(ip) << 16) | int(port), K_BACKEND, hash5(0, ip, port, 0, 0))


@hot(inline="always")
def _put(tab, ctl, k0, k1, h, v, meta, now, counters):
    """Insert or update an entry, evicting the bucket's LRU entry if need be."""
    e, _ = ct.claim(tab, ct.base(ctl, h), k0, k1, now, ctl, counters, True)
    tab[e + 2] = v
    tab[e + 3] = meta


@hot(inline="always")
def _close(tab, ctl, src, dst, sport, dport, proto):
    """Mark a 5-tuple's entry closing: the other direction saw a FIN or RST."""
    k0, k1 = key5(src, dst, sport, dport, proto)
    e = ct.find(tab, ct.base(ctl, hash5(src, dst, sport, dport, proto)), k0, k1)
    if e >= 0:
        tab[e + 3] = (tab[e + 3] & ~ct.STATE_MASK) | S_FIN


@hot
def _tcp_event(st, e, flags, v, src, dst, sport, dport):
    """New state of live TCP entry e on a packet with SYN, FIN or RST: a FIN
    or RST closes it and (services mode) its other direction's entry; a SYN
    without ACK reopens a closing entry (the 5-tuple is reused)."""
    tab = st.flows
    state = tab[e + 3] & ct.STATE_MASK
    if flags & (TCP_FIN | TCP_RST):
        if state != S_FIN:
            st.counters[C_CLOSED] += 1
            if st.ctl[O_MODE] == MODE_SERVICES:
                if v & REV:         # a reply: close the client's entry
                    _close(tab, st.ctl, dst, (v >> 16) & 0xFFFFFFFF, dport, v & 0xFFFF, 6)
                else:               # from the client: close the reply's entry
                    _close(tab, st.ctl, (v >> 16) & 0xFFFFFFFF, src, v & 0xFFFF, sport, 6)
        return S_FIN
    if (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN:
        return S_TCP
    return state


PASS = -1                       # _slow's answer for a packet to leave untouched; drop k: -2 - k


@hot
def _slow(st, src, dst, sp, dp, proto, fr, ident, flags, now):
    """Everything but a live flow's non-fragment packet: a new or dead flow,
    a fragment, a reply without an entry. Returns the entry value to apply,
    PASS, or -2 - k to drop the packet under reason k."""
    tab = st.flows
    ctl = st.ctl
    cnt = st.counters
    stamp = now << ct.STATE_BITS
    services = ctl[O_MODE] == MODE_SERVICES
    if fr == 2:                     # no ports: (src, dst, proto, IP id)
        k0, k1 = key5(src, dst, ident, 0, proto)
        k1 |= FRAG_KEY
        h = hash5(src, dst, ident, 0, proto)
    else:
        k0, k1 = key5(src, dst, sp, dp, proto)
        h = hash5(src, dst, sp, dp, proto)
    b = ct.base(ctl, h)
    e = ct.find(tab, b, k0, k1)
    v = -1
    if e >= 0 and not ct.expired(tab[e + 3], now, ctl):
        v = tab[e + 2]              # a live fragment entry or first fragment's flow
        tab[e + 3] = stamp | (tab[e + 3] & ct.STATE_MASK)
    # (a dead entry of this key stays e: a new flow of the key takes it)
    if v < 0:
        if fr == 2:                 # a later fragment whose first was not seen
            return -2 - LB_FRAG if _is_vip(st.svcs, dst) else PASS
        svc = 0
        if services:
            svc = _service(st.svcs, dst, dp)
        if svc < 0:
            if ctl[O_REV] == 0:     # a reply whose entry is in another replica?
                r = _backend_service(st.svcs, src, sp)
                if r >= 0:
                    v = st.svc_addr[r] | REV
                    cnt[C_REVERSE_STATELESS] += 1
            if v < 0:
                return PASS             # not ours: untouched
        else:
            k = np.int64(st.maglev[svc, h % ctl[O_M]])
            if k < 0:
                return -2 - LB_NO_BACKEND
            bip = st.be[k, BE_IP]
            bport = st.be[k, BE_PORT]
            v = (bip << 16) | bport | (k << BE_SHIFT)
            state = S_UDP if proto == 17 else (S_FIN if flags & (TCP_FIN | TCP_RST) else S_TCP)
            if e >= 0:
                cnt[C_EXPIRED] += 1     # the 5-tuple's own dead entry, taken over
            else:
                e, _ = ct.claim(tab, b, k0, k1, now, ctl, cnt, ctl[O_ON_FULL] == 0)
            if e >= 0:
                cnt[C_NEW] += 1
                tab[e + 2] = v
                tab[e + 3] = stamp | state
                if services:            # the reply's entry: backend -> client
                    rk0, rk1 = key5(bip, src, bport, sp, proto)
                    _put(tab, ctl, rk0, rk1, hash5(bip, src, bport, sp, proto),
                         st.svc_addr[svc] | REV | (k << BE_SHIFT), stamp | state, now, cnt)
            elif ctl[O_ON_FULL] == 1:
                return -2 - LB_FULL
            # else on_full=hash: the backend, without an entry
    if fr != 0:
        cnt[C_FRAGS] += 1
        if fr == 1:                     # the datagram's later fragments follow this one
            fk0, fk1 = key5(src, dst, ident, 0, proto)
            _put(tab, ctl, fk0, fk1 | FRAG_KEY, hash5(src, dst, ident, 0, proto), v,
                 stamp | S_FRAG, now, cnt)
    return v


NOT_L4, FRAGMENT = -1, -2       # scratch h of a packet with no flow key
EVENT = -16                     # scratch h = EVENT - entry: a SYN, FIN or RST on a live entry


def set_timeouts(st, cfg):
    """Live settings: the idle timeouts, on_full, non_l4, reverse_nat."""
    hz = st.ctl[O_HZ]
    for s, secs in ((S_TCP, cfg.tcp_timeout), (S_FIN, cfg.tcp_fin_timeout),
                    (S_UDP, cfg.udp_timeout), (S_FRAG, cfg.frag_timeout)):
        st.ctl[ct.I_TMO + s] = int(secs * hz)
    st.ctl[O_ON_FULL] = ON_FULL.index(cfg.on_full)
    st.ctl[O_NON_L4] = NON_L4.index(cfg.non_l4)
    st.ctl[O_REV] = REVERSE_NAT.index(cfg.reverse_nat)
    _rebuild_filter(st)


LIVE_SETTINGS = {k: set_timeouts for k in ("tcp_timeout", "tcp_fin_timeout", "udp_timeout", "frag_timeout",
                                  "on_full", "non_l4", "reverse_nat")}


@nf("lb", drops=("lb_full", "lb_non_l4", "lb_frag", "lb_no_backend"), config=LbConfig, state=make_state,
    ctl={"lb": lambda nfctl, args: ctl_lb(nfctl, args)}, live=LIVE_SETTINGS,
    stats=lambda states: lb_stats(states),      # (lambdas: defined below, with the control path)
    migrate=lambda src, dst, moving: migrate(src, dst, moving),
    writes=lambda cfg: None if cfg.services else ("dst_ip", "dport"))   # paper mode: no reverse NAT
def lb(pkts, live, n, st):
    tab = st.flows
    ctl = st.ctl
    sc = st.scratch
    mem = pkts.mem
    services = ctl[O_MODE] == MODE_SERVICES
    now = ctl[CLOCK]                    # once per burst; >= 0: set by a test
    if now < 0:
        now = np.int64(rdtsc())
    stamp = now << ct.STATE_BITS
    # Pass 1: key and hash of every TCP/UDP non-fragment, and start loading
    # its bucket, so that the table misses of the whole burst overlap.
    for j in range(n):
        i = live[j]
        proto = pkts.proto[i]
        fr = pkts.frag[i]
        if (proto != 6 and proto != 17) or fr != 0:
            sc[H + j] = FRAGMENT if (services and fr != 0 and (proto == 6 or proto == 17)) else NOT_L4
            continue
        # NB: all int64: Numba's int() of an unsigned value is uint64, and
        # uint64 | int64 is a float64, which rounds 56-bit keys
        src = np.int64(pkts.src_ip[i])
        dst = np.int64(pkts.dst_ip[i])
        sp = np.int64(pkts.sport[i])
        dp = np.int64(pkts.dport[i])
        k0, k1 = key5(src, dst, sp, dp, np.int64(proto))
        h = hash5(src, dst, sp, dp, np.int64(proto))
        sc[K0 + j] = k0
        sc[K1 + j] = k1
        # TCP flags ride in h's upper bits: read whatever the protocol and
        # masked (a select, not a branch: a TCP/UDP mix would make a branch a
        # coin toss). The byte lies inside the buffer (at most 91 bytes in),
        # and for TCP inside the frame: the parser checked 20 bytes of TCP.
        sc[H + j] = h | ((ld8(mem, pkts.off[i] + pkts.l4[i] + 13) * (proto == 6)) << 32)
        ct.prefetch_bucket(tab, ctl, h)
    # Pass 2: a live flow's packet is handled here; anything else in _slow.
    events = 0
    for j in range(n):
        i = live[j]
        h = sc[H + j]
        if h == NOT_L4:
            if ctl[O_NON_L4] == 1 and (not services or _is_vip(st.svcs, np.int64(pkts.dst_ip[i]))):
                pkts.port[i] = drop(LB_NON_L4)
            continue
        flags = 0
        if h >= 0:                      # TCP/UDP, not a fragment
            flags = h >> 32
            h &= 0xFFFFFFFF
            e = ct.find(tab, ct.base(ctl, h), sc[K0 + j], sc[K1 + j])
            if e >= 0:
                meta = tab[e + 3]
                state = meta & ct.STATE_MASK
                if now - (meta >> ct.STATE_BITS) <= ctl[ct.I_TMO + state]:
                    tab[e + 3] = stamp | state
                    v = tab[e + 2]
                    if flags & (TCP_FIN | TCP_SYN | TCP_RST):
                        sc[H + j] = EVENT - e   # its state changes after this loop
                        events += 1
                    if v & REV:
                        pkts.src_ip[i] = (v >> 16) & 0xFFFFFFFF
                        pkts.sport[i] = v & 0xFFFF
                    else:
                        pkts.dst_ip[i] = (v >> 16) & 0xFFFFFFFF
                        pkts.dport[i] = v & 0xFFFF
                    continue
        # not a live flow's packet: a new or dead flow, a fragment, a reply
        # without an entry, or not ours
        fr = pkts.frag[i]
        if services and fr == 0:
            if not (_in_filter(ctl, np.int64(pkts.dst_ip[i]))
                    or (ctl[O_REV] == 0 and _in_filter(ctl, np.int64(pkts.src_ip[i])))):
                continue                # not to a VIP, not from a backend: untouched
        ident = 0
        if fr != 0:
            ident = ld16(mem, pkts.off[i] + pkts.l3[i] + 4)
        v = _slow(st, np.int64(pkts.src_ip[i]), np.int64(pkts.dst_ip[i]),
                  np.int64(pkts.sport[i]), np.int64(pkts.dport[i]), np.int64(pkts.proto[i]),
                  np.int64(fr), ident, flags, now)
        if v < 0:
            if v != PASS:
                pkts.port[i] = drop(-2 - v)
            continue
        if v & REV:
            pkts.src_ip[i] = (v >> 16) & 0xFFFFFFFF
            if fr != 2:                 # a later fragment has no ports
                pkts.sport[i] = v & 0xFFFF
        else:
            pkts.dst_ip[i] = (v >> 16) & 0xFFFFFFFF
            if fr != 2:
                pkts.dport[i] = v & 0xFFFF
    # Pass 3 (rare): state changes by TCP flags, out of the loop above so
    # that its hot path holds no call. The fields used are those the
    # rewrite left alone (the client's side), and an entry taken by a new
    # flow since (a full bucket) is recognised by its key and skipped.
    if events:
        for j in range(n):
            h = sc[H + j]
            if h > EVENT:
                continue
            e = EVENT - h
            if tab[e] != sc[K0 + j] or tab[e + 1] != (sc[K1 + j] | ct.USED):
                continue
            i = live[j]
            flags = ld8(mem, pkts.off[i] + pkts.l4[i] + 13)
            state = _tcp_event(st, e, flags, tab[e + 2], np.int64(pkts.src_ip[i]), np.int64(pkts.dst_ip[i]),
                               np.int64(pkts.sport[i]), np.int64(pkts.dport[i]))
            tab[e + 3] = (tab[e + 3] & ~ct.STATE_MASK) | state


# ---- control path: plain Python over the state arrays, between bursts ----

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
    e = ct.entries(st.flows)
    slot = (e[:, 2] >> BE_SHIFT) & BE_LIMIT
    return ct.flush(st.flows, pick(slot))


def flush_flows(st, service=None):
    """Remove every flow entry (of one service, when named). Returns how many."""
    if service is None:
        return ct.flush(st.flows)
    s = _service_index(st, service)
    return _flush_where(st, lambda slot: st.be[np.minimum(slot, len(st.be) - 1), BE_SVC] == s)


def set_clock(st, seconds):
    """Fix the NF's clock at `seconds` (tests simulate time); None: the TSC again."""
    st.ctl[CLOCK] = -1 if seconds is None else int(seconds * st.ctl[O_HZ])


def ticks(st, seconds):
    """Seconds in the NF's clock ticks."""
    return int(seconds * st.ctl[O_HZ])


def timeouts(st):
    """Idle timeouts by state (S_TCP, S_FIN, S_UDP, S_FRAG), in ticks."""
    return [int(st.ctl[ct.I_TMO + s]) for s in (S_TCP, S_FIN, S_UDP, S_FRAG)]


def counters(st):
    """The counters by name."""
    return {name: int(st.counters[k]) for k, name in enumerate(COUNTERS)}


def flow_count(st):
    """Used entries (live or not yet found dead)."""
    return int(np.count_nonzero(ct.used(st.flows)))


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
    take it between bursts, through Runtime.control)."""
    e = ct.entries(st.flows)
    return e[np.flatnonzero(e[:, 1] != 0)[:limit]].copy()


def _now(st):
    """The NF's clock, read on the control path."""
    if st.ctl[CLOCK] >= 0:
        return int(st.ctl[CLOCK])
    if NO_JIT:
        return int(rdtsc())
    from pynf.shim import rdtsc as shim_rdtsc
    return int(shim_rdtsc())


STATE_NAMES = {S_TCP: "tcp", S_FIN: "tcp_closing", S_UDP: "udp", S_FRAG: "fragment"}
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


# ---- `pynf ctl lb ...` (pynf.control.commands) ----

def _shadow(st):
    """A copy of a replica's control state with an empty flow table: a
    change is tried on it first, so one that fails changes nothing."""
    tab, _ = ct.make(8, CTL_EXTRA)
    return st._replace(flows=tab, ctl=st.ctl.copy(), counters=st.counters.copy(),
                       maglev=st.maglev.copy(), svcs=table.Table(st.svcs.slots.copy(), st.svcs.info.copy()),
                       svc_addr=st.svc_addr.copy(), be=st.be.copy())


def _prepared(nfctl, change, text, after=None):
    """A Change that runs change(st) in every replica, after a dry run (and
    then after(), where given)."""
    from pynf.control.commands import Change
    try:
        change(_shadow(nfctl.states()[0]))
    except ValueError as e:
        raise UsageError(f"lb: {e}") from None

    def apply():
        nfctl.control(change)
        if after is not None:
            after()
    return Change(apply, text)


def _addrs(words_, what):
    out = []
    for t in words_:
        a = _addr(t)
        if a is None:
            raise UsageError(f"lb: bad {what} {t!r} (want a.b.c.d:port)")
        out.append(a)
    return out


def _service_arg(text):
    """None for '*' (paper mode, or the only service), else (vip, vport)."""
    return None if text == "*" else _addrs([text], "service")[0]


def ctl_lb(nfctl, args):
    """`pynf ctl lb service add|del ...`, `lb backend add|del|drain ...`,
    `lb services`, `lb flows [--limit N]`, `lb flush [VIP:PORT]`, `lb load FILE`."""
    from pynf.control.commands import words
    usage = ("lb service add VIP:PORT BACKEND:PORT... | lb service del VIP:PORT | "
             "lb backend add|del|drain VIP:PORT BACKEND:PORT | lb services | "
             "lb flows [--limit N] | lb flush [VIP:PORT] | lb load FILE")
    verb = words(args, 1, 1 << 16, usage)[0]
    if verb == "service" and len(args) >= 3 and args[1] in ("add", "del"):
        if args[1] == "add":
            words(args, 4, 1 << 16, "lb service add VIP:PORT BACKEND:PORT...")
            (vip, vport), bes = _addrs(args[2:3], "service")[0], _addrs(args[3:], "backend")
            return _prepared(nfctl, lambda st: add_service(st, vip, vport, bes),
                             f"lb: service {args[2]} with {len(bes)} backends\n")
        words(args, 3, 3, "lb service del VIP:PORT")
        svc = _addrs(args[2:3], "service")[0]
        return _prepared(nfctl, lambda st: del_service(st, svc), f"lb: service {args[2]} removed\n")
    if verb == "backend" and len(args) >= 2 and args[1] in ("add", "del", "drain"):
        words(args, 4, 4, f"lb backend {args[1]} VIP:PORT BACKEND:PORT")
        svc, be = _service_arg(args[2]), _addrs(args[3:4], "backend")[0]
        fn = {"add": add_backend, "del": remove_backend, "drain": drain_backend}[args[1]]
        done = {"add": "added to", "del": "removed from", "drain": "draining in"}[args[1]]
        return _prepared(nfctl, lambda st: fn(st, be, svc), f"lb: backend {args[3]} {done} {args[2]}\n")
    if verb == "services":
        words(args, 1, 1, "lb services")
        lines = []
        for vip, vport, bes in services(nfctl.states()[0]):
            lines.append("(paper mode)" if not vip and not vport else f"{format_ipv4(vip)}:{vport}")
            lines += [f"  {format_ipv4(ip)}:{port} {flag}" for ip, port, flag in bes]
        return "".join(ln + "\n" for ln in lines)
    if verb == "flows":
        limit = 100
        if len(args) > 1:
            words(args, 3, 3, "lb flows [--limit N]")
            if args[1] != "--limit" or not is_decimal(args[2]):
                raise UsageError("usage: lb flows [--limit N]")
            limit = int(args[2])
        rows = []
        nfctl.control(lambda st: rows.append((st, flow_rows(st, limit - sum(len(r) for _, r in rows)))))
        lines = []
        for st, rs in rows:
            now = _now(st)
            lines += [format_flow(st, r, now) for r in rs]
        total = sum(flow_count(st) for st in nfctl.states())
        return "".join(ln + "\n" for ln in lines[:limit]) + f"({min(limit, len(lines))} of {total} entries)\n"
    if verb == "flush":
        words(args, 1, 2, "lb flush [VIP:PORT]")
        svc = _addrs(args[1:2], "service")[0] if len(args) == 2 else None
        return _prepared(nfctl, lambda st: flush_flows(st, svc), "lb: flows flushed\n")
    if verb == "load":
        path = words(args, 2, 2, "lb load FILE")[1]
        return _load(nfctl, path)
    raise UsageError(f"usage: {usage}")


def _load(nfctl, path):
    """`lb load FILE`: make the services and backends the file's: services
    and backends it no longer lists go (with their flows), new ones come,
    and flows to what stays keep their backends."""
    backends, svcs = parse_backends(path)
    cfg = nfctl.config
    if bool(svcs) != bool(cfg.services):
        raise UsageError(f"{path}: a {'services' if svcs else 'paper-mode'} file, but lb runs "
                         f"{'services' if cfg.services else 'the paper'} mode (fixed at start)")
    want = {(v, p): list(b) for v, p, b in svcs} if svcs else {None: list(backends)}

    def change(st):
        have = {(None if not svcs else (vip, vport)): bes for vip, vport, bes in services(st)}
        for key in have:
            if key not in want:
                del_service(st, key)
        for key, bes in want.items():
            if key not in have:
                add_service(st, key[0], key[1], bes)
                continue
            for ip, port, _ in have[key]:
                if (ip, port) not in bes:
                    remove_backend(st, (ip, port), key)
            active = {(ip, port) for ip, port, flag in have[key] if flag == "active"}
            for be in bes:
                if be not in active:        # new, or draining: (re)activated
                    add_backend(st, be, key)

    new = dataclasses.replace(cfg, backends=backends or cfg.backends, services=svcs)
    return _prepared(nfctl, change, f"lb: loaded {len(svcs) or len(backends)} "
                                    f"{'services' if svcs else 'backends'} from {path}\n",
                     after=lambda: nfctl.set_config(new))


def lb_stats(states):
    """Flow-table occupancy and counters, summed over the replicas' tables;
    the services and backends (the same in each replica)."""
    out = {"flows": sum(flow_count(st) for st in states),
           "flow_capacity": sum(len(ct.entries(st.flows)) for st in states)}
    for st in states:
        for k, v in counters(st).items():
            out[f"{k}_total"] = out.get(f"{k}_total", 0) + v
    st = states[0]
    out["services"] = int(np.count_nonzero(st.svc_addr >= 0)) if st.ctl[O_MODE] == MODE_SERVICES else 0
    out["backends_active"] = int(np.count_nonzero(st.be[:, BE_FLAG] == BE_ACTIVE))
    out["backends_draining"] = int(np.count_nonzero(st.be[:, BE_FLAG] == BE_DRAINING))
    return out


# ---- scaling: moving flows between replicas (pynf.control.scale) ----

@hot
def _move_flows(src, dst_tab, dst_ctl, dst_cnt, moving, gone):
    """Copy the entries of src.flows whose steering bucket is set in
    `moving` into dst_tab (claimed as a new flow would be: a full bucket
    evicts its least recently seen entry, counted), marking them in `gone`."""
    tab = src.flows
    nmask = len(moving) - 1
    moved = 0
    for x in range(len(tab) // ct.WORDS):
        e = x * ct.WORDS
        t1 = tab[e + 1]
        if t1 == 0:
            continue
        k0 = tab[e]
        k1 = t1 & ~ct.USED
        s_ip = k0 >> 24
        a = (k0 >> 8) & 0xFFFF
        proto = k0 & 0xFF
        if k1 & FRAG_KEY:           # (src, dst, IP id): later fragments carry no ports
            d_ip = (k1 & ~FRAG_KEY) >> 16
            steer = hash5(s_ip, d_ip, 0, 0, proto)
            h = hash5(s_ip, d_ip, a, 0, proto)
        else:
            d_ip = k1 >> 16
            steer = hash5(s_ip, d_ip, a, k1 & 0xFFFF, proto)
            h = steer
        if not moving[steer & nmask]:
            continue
        meta = tab[e + 3]
        d, _ = ct.claim(dst_tab, ct.base(dst_ctl, h), k0, k1, meta >> ct.STATE_BITS, dst_ctl, dst_cnt, True)
        dst_tab[d + 2] = tab[e + 2]
        dst_tab[d + 3] = meta
        gone[x] = True
        moved += 1
    return moved


def migrate(src, dst, moving):
    """Move the flow entries (forward, reply and fragment entries alike) of
    the steering buckets in `moving` from replica state src to dst: a moved
    flow keeps its backend, its NAT and its timers."""
    gone = np.zeros(len(src.flows) // ct.WORDS, dtype=np.bool_)
    n = _move_flows(src, dst.flows, dst.ctl, dst.counters, moving, gone)
    ct.flush(src.flows, gone)
    return int(n)
