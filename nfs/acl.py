"""acl: access control on the 5-tuple, ClassBench rules, first match wins.

Synopsis:   pynf run --rtc acl,... [--acl-rules FILE]
Rules:      one per line, '#' comments (pynf.classify has the grammar):
              @<src>/<len> <dst>/<len> <sport_lo> : <sport_hi> <dport_lo> : <dport_hi> <proto>/<mask> [allow|deny]
            The action defaults to deny. The first matching rule in file
            order decides; a packet no rule matches is allowed.
Matching:   ports are 0 for non-first fragments and for protocols other
            than TCP and UDP, so a rule with a port range that excludes 0
            does not match them.
Drops:      acl   a deny rule matched
Settings:   (none beyond the file)
Default:    without --acl-rules, 32 generated rules: 30 that the built-in
            traffic never meets (198.18.0.0/15, the benchmarking range),
            then 'deny TCP to port 23', then 'allow all'. The built-in
            traffic sends 1/16 of its flows to TCP port 23 (pynf.flows),
            so the default ACL denies 1/16 of the flows.
State:      the compiled classifier (pynf.classify) and per-rule hit
            counters (hits[r]; hits[-1] counts packets no rule matched).
Example:    pynf run --rtc acl,lb,l3fwd --acl-rules rules.txt
Follows:    the paper's ACL NF ("a 5-tuple lookup using a set of configured
            rules to decide whether to block a flow"), rule format of
            DPDK's l3fwd -E/-P ACL mode.
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf import classify
from pynf.nf import DROP, nf


@dataclass(frozen=True)
class AclConfig:
    rules: tuple = ()

    @classmethod
    def from_context(cls, ctx):
        if ctx.acl_rules:
            return cls(tuple(classify.parse_rules(ctx.acl_rules)))
        return cls(tuple(classify.parse_rule(t) for t in default_rules(ctx.seed)))


def default_rules(seed=1):
    rng = np.random.default_rng(seed + 1000)
    out = []
    for _ in range(30):
        net = 0xC6120000 | (int(rng.integers(0, 1 << 9)) << 8)   # 198.18.0.0/15, /24s
        a = f"{net >> 24 & 255}.{net >> 16 & 255}.{net >> 8 & 255}.0/24"
        lo = int(rng.integers(0, 60000))
        out.append(f"@{a} 0.0.0.0/0 0 : 65535 {lo} : {lo + int(rng.integers(0, 5000))} 0x06/0xff deny")
    out.append("@0.0.0.0/0 0.0.0.0/0 0 : 65535 23 : 23 0x06/0xff deny")
    out.append("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow")
    return out


AclState = namedtuple("AclState", "cls hits")


def make_state(cfg):
    c = classify.build(list(cfg.rules))
    return AclState(c, np.zeros(len(cfg.rules) + 1, dtype=np.int64))


@nf("acl", drops=("acl",), config=AclConfig, state=make_state)
def acl(pkts, live, n, st):
    c = st.cls
    for j in range(n):
        i = live[j]
        r = np.uint64(classify.first_match(c, pkts.src_ip[i], pkts.dst_ip[i],
                                           pkts.sport[i], pkts.dport[i], pkts.proto[i]))
        st.hits[r] += 1
        if c.allow[r] == 0:
            pkts.port[i] = DROP
