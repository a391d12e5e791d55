"""ClassBench-style ACL rule sets of any size, deterministic from a seed.

    python -m bench.acl_rules N [--seed S] > rules.txt

Not ClassBench's own generator (its seed files are not here) but its
shape, after Taylor and Turner's ACL seeds: source and destination
prefixes drawn from a few thousand address blocks with ACL-like length
mixes (many /32 hosts and /24s, some /16s and wildcards), ports either
any, one well-known port, a range of them, or 1024:65535, protocol TCP,
UDP, ICMP or any; allow or deny; the last rule allows everything. Rules
nest and overlap as real ACLs do, which is what makes classifiers work.
"""
import argparse
import random
import sys

SRC_LENS = [(32, 30), (24, 25), (16, 10), (28, 10), (20, 5), (8, 5), (0, 15)]
DST_LENS = [(32, 45), (24, 25), (16, 10), (28, 10), (0, 10)]
WELL_KNOWN = [21, 22, 23, 25, 53, 80, 110, 123, 137, 139, 143, 161, 389, 443, 445, 514, 993, 1433, 3306, 8080]


def _pick(rng, table):
    return rng.choices([v for v, _ in table], [w for _, w in table])[0]


def _prefix(rng, blocks, lens):
    n = _pick(rng, lens)
    if n == 0:
        return "0.0.0.0/0"
    v = rng.choice(blocks) | rng.getrandbits(32 - 8)     # inside one of the /8 .. /16 blocks
    v &= (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF
    return f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}/{n}"


def _ports(rng):
    k = rng.random()
    if k < 0.45:
        return "0 : 65535"
    if k < 0.8:
        p = rng.choice(WELL_KNOWN)
        return f"{p} : {p}"
    if k < 0.9:
        lo = rng.randrange(1, 60000)
        return f"{lo} : {lo + rng.randrange(1, 2000)}"
    return "1024 : 65535"


def rules(n, seed=1):
    rng = random.Random(seed)
    blocks = [rng.getrandbits(8) << 24 | rng.getrandbits(8) << 16 for _ in range(max(16, n // 20))]
    out = []
    for _ in range(n - 1):
        proto = rng.choices(["0x06/0xff", "0x11/0xff", "0x01/0xff", "0x00/0x00"], [55, 25, 5, 15])[0]
        sp = "0 : 65535" if rng.random() < 0.8 else _ports(rng)
        dp = _ports(rng) if proto in ("0x06/0xff", "0x11/0xff") else "0 : 65535"
        act = "deny" if rng.random() < 0.6 else "allow"
        out.append(f"@{_prefix(rng, blocks, SRC_LENS)} {_prefix(rng, blocks, DST_LENS)} {sp} {dp} {proto} {act}")
    out.append("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    sys.stdout.write("\n".join(rules(a.n, a.seed)) + "\n")


if __name__ == "__main__":
    main()
