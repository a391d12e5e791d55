"""ACL classifier lookup cost: the bit vector against the chunked
classifier on the same rules, the built-in flows' 5-tuples.

    python -m bench.acl_lookup [--rules 1000,10000,100000] [--flows 1000]

Cycles per lookup (TSC), the minimum of 3 passes of 50 rounds over the
flows, after a warm-up; plus the build time of each. Rules come from
bench.acl_rules. The bit vector at 100K rules takes minutes and gigabytes
to build: --bitvector-max (default 10,000) bounds it.
"""
import argparse
import time

from bench.acl_rules import rules as make_rules
from pynf.compiler.intrinsics import rdtsc
from pynf.compiler.jit import hot
from pynf.tables import classifier as classify
from pynf.tables import rules as aclrules
from pynf.traffic.flows import make_flows


@hot
def _lookups(c, src, dst, sport, dport, proto, rounds):
    t = rdtsc()
    acc = 0
    for _ in range(rounds):
        for i in range(len(src)):
            acc += classify.first_match(c, src[i], dst[i], sport[i], dport[i], proto[i])
    return (rdtsc() - t) / (rounds * len(src)), acc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default="1000,10000,100000")
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--bitvector-max", type=int, default=10000)
    a = ap.parse_args(argv)
    fs = make_flows(a.flows, 1)
    print("| rules | classifier | build s | cycles/lookup |")
    print("|---|---|---|---|")
    for n in (int(x) for x in a.rules.split(",")):
        rs = aclrules.RuleSet.of(aclrules.parse_rule(t) for t in make_rules(n))
        for kind, name in ((classify.KIND_BITVECTOR, "bit vector"), (classify.KIND_CHUNKED, "chunked")):
            if kind == classify.KIND_BITVECTOR and n > a.bitvector_max:
                continue
            t = time.perf_counter()
            c = classify.build(rs, kind)
            built = time.perf_counter() - t
            args = (c, fs.src_ip, fs.dst_ip, fs.sport, fs.dport, fs.proto)
            _lookups(*args, 1)
            cyc = min(_lookups(*args, 50)[0] for _ in range(3))
            print(f"| {n:,} | {name} | {built:.2f} | {cyc:.1f} |", flush=True)


if __name__ == "__main__":
    main()
