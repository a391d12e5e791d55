"""lb's configuration: the backends file, settings, slot numbers and keys."""
from collections import namedtuple
from dataclasses import dataclass

from pynf.compiler.jit import NO_JIT
from pynf.errors import ConfigError, UsageError, is_decimal, parse_ipv4, read_lines
from pynf.packet.batch import BURST_MAX
from pynf.tables import flowtable as ct
from pynf.tables import maglev
from pynf.tables.hashing import hash5, hash32
from pynf.traffic.flows import DEFAULT_BACKENDS

ON_FULL = ("evict", "drop", "hash")
NON_L4 = ("pass", "drop")
REVERSE_NAT = ("table+backend", "table")   # index order is the kernel's opts code

# Entry states (pynf.tables.flowtable: 3 bits; each picks a timeout):
# established TCP, closing TCP, UDP, a fragmented datagram, and a TCP
# connection whose handshake the client has not finished. Half-open and
# closing are the flow table's weak states: evicted first, and a new
# half-open connection takes only a weak entry's place
S_TCP, S_FIN, S_UDP, S_FRAG, S_SYN = 0, 1, 2, 3, 4

# Counter slots of st.counters
C_EXPIRED = ct.C_EXPIRED
C_EVICTED = ct.C_EVICTED
C_NEW, C_FRAGS, C_CLOSED, C_REVERSE_STATELESS = 2, 3, 4, 5
COUNTERS = ("expired", "evicted", "new", "fragments", "closed", "reverse_stateless")

# st.ctl: pynf.tables.flowtable's info (bucket mask, count, timeouts by state at
# ct.I_TMO + state), then these slots; one array, as each array in the
# state is passed on every call
CLOCK, O_MODE, O_ON_FULL, O_NON_L4, O_M, O_HZ, O_REV, O_RATE, O_TOKENS, O_FILLED = range(ct.I_END, ct.I_END + 10)
# (O_TOKENS, O_FILLED: max_new_per_s's bucket, pynf.nf.blocks.take_in's two slots in this order)
# ... and a filter (services mode): bit hash32(a) & FILTER_MASK of st.ctl's
# words from FILTER is set for each VIP and, with reverse_nat=table+backend,
# each backend address. A packet that is not a live flow's and whose
# addresses' bits are clear is not ours: it passes without the slow path.
FILTER = ct.I_END + 10
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
LB_FULL, LB_NON_L4, LB_FRAG, LB_NO_BACKEND, LB_SYN_FULL, LB_RATE = range(6)   # drop reasons, in @nf's drops= order
DROPS = ("lb_full", "lb_non_l4", "lb_frag", "lb_no_backend", "lb_syn_full", "lb_rate")
SVC_ROOM = 16                   # services mode: rows for services added while running
K_SERVICE, K_VIP, K_BACKEND = 1, 2, 3
AMBIGUOUS = -2                  # a backend in more than one service

# The flow table's cap, per replica: 8M entries, 256 MiB of memory at most
# (32 bytes an entry; touched only as the table grows). It holds 2M NAT'd
# connections (two entries each) at the load where the table stops
# doubling (pynf.tables.flowtable.GROW_LOAD), with room to fill further
# before buckets evict: 16 replicas take 4 GiB at the very most.
MAX_ENTRIES = 1 << 23

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True)
class LbConfig:
    backends: tuple = DEFAULT_BACKENDS      # paper mode: ((ip, port), ...)
    services: tuple = ()                    # services mode: ((vip, vport, ((ip, port), ...)), ...)
    capacity: int = 65536
    max_entries: int = MAX_ENTRIES
    on_full: str = "evict"
    non_l4: str = "pass"
    table_size: int = maglev.DEFAULT_M
    tcp_timeout: float = 900.0
    tcp_fin_timeout: float = 120.0
    tcp_syn_timeout: float = 60.0
    max_new_per_s: int = 0
    udp_timeout: float = 300.0
    frag_timeout: float = 30.0
    reverse_nat: str = "table"

    @classmethod
    def from_context(cls, ctx):
        cap = max(65536, 4 * ctx.flows)
        if ctx.file("backends"):
            backends, services = parse_backends(ctx.file("backends"))
            if services:
                # replicas that share no state: a reply may meet another
                # replica than its connection's, so with more than one a
                # reply from a backend is rewritten by the backend alone
                rev = "table+backend" if getattr(ctx, "replicas", 1) > 1 else "table"
                return cls(services=services, capacity=cap, reverse_nat=rev)
            return cls(backends=backends, capacity=cap)
        if getattr(ctx, "host", None) is not None:
            raise UsageError("lb with --iface needs --backends: without one it runs the paper's "
                             "mode and would send every TCP/UDP packet to its test backends")
        return cls(capacity=cap)

    def validate(self):
        if self.capacity < 1:
            raise UsageError("--set lb.capacity: must be at least 1")
        if not 1 <= self.max_entries <= 1 << 31:
            raise UsageError("--set lb.max_entries: want 1 to 2**31 entries (32 bytes each)")
        for key, allowed in (("on_full", ON_FULL), ("non_l4", NON_L4), ("reverse_nat", REVERSE_NAT)):
            if getattr(self, key) not in allowed:
                raise UsageError(f"--set lb.{key}: want one of {', '.join(allowed)}")
        if not maglev.is_prime(self.table_size) or self.table_size >= 1 << 31:
            raise UsageError(f"--set lb.table_size: {self.table_size} is not a prime below 2**31")
        most = max([len(b) for _, _, b in self.services] or [len(self.backends)])
        if self.table_size < most:
            raise UsageError(f"--set lb.table_size: {self.table_size} is smaller than a "
                             f"service's {most} backends")
        if self.max_new_per_s < 0:
            raise UsageError("--set lb.max_new_per_s: want new flows a second per replica, 0 for no cap")
        for key in ("tcp_timeout", "tcp_fin_timeout", "tcp_syn_timeout", "udp_timeout", "frag_timeout"):
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
    from pynf.packet.clock import tsc_hz
    return tsc_hz()


# ---- keys of the services table (st.svcs: a pynf.tables.hashtable) ----

def _svc_key(vip, vport):
    return (int(vip) << 16) | int(vport), K_SERVICE, int(hash5(vip, 0, 0, vport, 0))


def _vip_key(vip):
    return int(vip), K_VIP, int(hash32(vip))


def _be_key(ip, port):
    return (int(ip) << 16) | int(port), K_BACKEND, int(hash5(0, ip, port, 0, 0))
