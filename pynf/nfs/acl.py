"""acl: access control on the 5-tuple, ClassBench rules, first match wins.

Synopsis:   pynf run --rtc acl,... [--acl-rules FILE]
Rules:      one per line, '#' comments (pynf.tables.classifier has the grammar):
              @<src>/<len> <dst>/<len> <sport_lo> : <sport_hi> <dport_lo> : <dport_hi> <proto>/<mask> [allow|deny]
            The action defaults to deny. The first matching rule in file
            order decides; a packet no rule matches is allowed.
Matching:   ports are 0 for non-first fragments and for protocols other
            than TCP and UDP, so a rule with a port range that excludes 0
            does not match them.
Drops:      acl   a deny rule matched
Settings:   (none beyond the file)
Control:    pynf ctl acl load FILE   the whole rule set, parsed and compiled
                                     off the fast path, swapped in between
                                     bursts (per-rule hits start again at 0)
            pynf ctl acl list        the rules in force, with their hits
Default:    without --acl-rules, 32 generated rules: 30 that the built-in
            traffic never meets (198.18.0.0/15, the benchmarking range),
            then 'deny TCP to port 23', then 'allow all'. The built-in
            traffic sends 1/16 of its flows to TCP port 23 (pynf.traffic.flows),
            so the default ACL denies 1/16 of the flows.
State:      the compiled classifier (pynf.tables.classifier) and per-rule hit
            counters (hits[r]; hits[-1] counts packets no rule matched).
Flow cache: cacheable (its verdict depends on the 5-tuple and the rules);
            a packet the cache serves still counts in its rule's hits.
Example:    pynf run --rtc acl,lb,l3fwd --acl-rules rules.txt
Follows:    the paper's ACL NF ("a 5-tuple lookup using a set of configured
            rules to decide whether to block a flow"), rule format of
            DPDK's l3fwd -E/-P ACL mode.
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.compiler.jit import hot
from pynf.flowcache import Cacheable
from pynf.nf import DROP, Change, File, Verb, nf
from pynf.tables import classifier as classify
from pynf.tables import rules as aclrules


@dataclass(frozen=True, eq=False)
class AclConfig:
    rules: aclrules.RuleSet

    @classmethod
    def from_context(cls, ctx):
        if ctx.file("acl_rules"):
            return cls(aclrules.parse_rules(ctx.file("acl_rules")))
        return cls(aclrules.RuleSet.of(aclrules.parse_rule(t) for t in default_rules(ctx.seed)))


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
    c = classify.build(cfg.rules)
    return AclState(c, np.zeros(len(cfg.rules) + 1, dtype=np.int64))


def acl_list(nfctl, args):
    rules = nfctl.config.rules
    hits = sum(st.hits for st in nfctl.states())
    lines = [f"{k:6d} {int(h):14,d}  {r.text()}" for k, (r, h) in enumerate(zip(rules, hits))]
    lines.append(f"{'-':>6s} {int(hits[-1]):14,d}  (no rule matched: allowed)")
    return "".join(ln + "\n" for ln in lines)


def acl_load(nfctl, args):
    path = args[0]
    new = AclConfig(aclrules.parse_rules(path))
    c = classify.build(new.rules)          # compiled once, here, shared read-only
    return Change(f"acl: loaded {len(new.rules)} rules from {path}\n", config=new,
                  new=lambda old: AclState(c, np.zeros(len(new.rules) + 1, dtype=np.int64)))


FILES = [File("--acl-rules", "ClassBench rules for acl", reload="acl load")]
VERBS = [Verb("acl load", "FILE", "swap in the file's whole rule set between bursts (hits start at 0)",
              acl_load),
         Verb("acl list", "", "the rules in force, with their hits", acl_list)]


def acl_stats(states):
    hits = [st.hits for st in states]
    return {"rules": len(hits[0]) - 1, "matched_total": sum(int(h[:-1].sum()) for h in hits),
            "unmatched_total": sum(int(h[-1]) for h in hits)}


@hot(inline="always")
def replay(st, r):
    """Flow cache: a packet of a recorded flow counts in its rule's hits."""
    st.hits[r] += 1


@nf("acl", drops=("acl",), config=AclConfig, state=make_state, files=FILES, verbs=VERBS,
    stats=acl_stats, per_packet=True, cache=Cacheable(replay=replay))
def acl(pkts, i, st):
    c = st.cls
    r = np.uint64(classify.first_match(c, pkts.src_ip[i], pkts.dst_ip[i],
                                       pkts.sport[i], pkts.dport[i], pkts.proto[i]))
    st.hits[r] += 1
    pkts.tag[i] = r
    if c.allow[r] == 0:
        pkts.port[i] = DROP
