"""The built-in traffic's flows: deterministic 5-tuples from (flows, seed).

Both the traffic generator and the NFs' default configurations use these,
so a run without files forwards most packets:

- dst_ip is 10.0.0.1 + i (distinct per flow), src_ip random in
  172.16.0.0/12, sport random in 1024..65535;
- flow i with i % 16 == 7 is TCP to port 23 (telnet), which the default ACL
  denies: a known 1/16 of the flows;
- the others draw (dport, proto) from a fixed web/DNS/NTP mix.

The LB's paper-mode default backends are here too (192.168.0.1..8, port
8080): l3fwd's default routes cover them, so acl,lb,l3fwd forwards.
"""
import functools
from collections import namedtuple

import numpy as np

FlowSet = namedtuple("FlowSet", "src_ip dst_ip sport dport proto")

DST_BASE = 0x0A000001          # 10.0.0.1
SRC_NET = 0xAC100000           # 172.16.0.0/12
DEFAULT_BACKENDS = tuple((0xC0A80001 + k, 8080) for k in range(8))
DENIED_EVERY = 16              # flow i with i % 16 == DENIED_SLOT is denied by default
DENIED_SLOT = 7
SERVICES = ((80, 6), (443, 6), (53, 17), (8080, 6), (123, 17), (5001, 17))


@functools.lru_cache(maxsize=2)
def make_flows(flows, seed=1):
    """The flows (arrays: read, never change them; the result is shared by
    the traffic generator and the NFs' default configurations)."""
    if flows < 1:
        raise ValueError("need at least one flow")
    if flows > (1 << 24) - 2:
        raise ValueError("at most 16777214 flows")
    rng = np.random.default_rng(seed)
    i = np.arange(flows, dtype=np.int64)
    src = (SRC_NET | rng.integers(0, 1 << 20, flows)).astype(np.uint32)
    dst = (DST_BASE + i).astype(np.uint32)
    sport = rng.integers(1024, 65536, flows).astype(np.uint16)
    svc = rng.integers(0, len(SERVICES), flows)
    table = np.array(SERVICES, dtype=np.int64)
    dport = table[svc, 0].astype(np.uint16)
    proto = table[svc, 1].astype(np.uint8)
    denied = (i % DENIED_EVERY) == DENIED_SLOT
    dport[denied] = 23
    proto[denied] = 6
    for a in (src, dst, sport, dport, proto):
        a.setflags(write=False)         # shared (lru_cache): nobody may change them
    return FlowSet(src, dst, sport, dport, proto)


# Traffic profiles (--traffic): what the built-in flows' packets are. The
# flows' addresses stay those above (the NFs' default configurations are
# made from them); a profile sets each flow's service and packet kind.
PROFILES = ("web", "syn", "dns", "mix")
KIND_PLAIN, KIND_SYN, KIND_DNS = 0, 1, 2     # TCP ACK or UDP of zeros; TCP SYN; a DNS query


def profile_flows(fs, profile):
    """(flows, kinds) for a traffic profile: web, today's mix of TCP ACKs
    and UDP; syn, every flow a TCP SYN to port 80; dns, every flow a DNS
    query (UDP to 53); mix, a quarter each of syn and dns, the rest web.
    The flows ACL denies by default (TCP to 23) stay as they are."""
    if profile not in PROFILES:
        raise ValueError(f"traffic profile {profile!r}: want one of {', '.join(PROFILES)}")
    n = len(fs.src_ip)
    i = np.arange(n)
    kind = np.zeros(n, dtype=np.uint8)
    if profile == "web":
        return fs, kind
    denied = (i % DENIED_EVERY) == DENIED_SLOT
    syn = ~denied & ((profile == "syn") | ((profile == "mix") & (i % 4 == 2)))
    dns = ~denied & ((profile == "dns") | ((profile == "mix") & (i % 4 == 3)))
    dport, proto = fs.dport.copy(), fs.proto.copy()
    dport[syn], proto[syn], kind[syn] = 80, 6, KIND_SYN
    dport[dns], proto[dns], kind[dns] = 53, 17, KIND_DNS
    return FlowSet(fs.src_ip, fs.dst_ip, fs.sport, dport, proto), kind
