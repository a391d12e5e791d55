"""pynf.tables.lpm against a plain-Python longest match, incremental and bulk."""
import numpy as np
import pytest

from pynf.compiler.jit import NO_JIT
from pynf.tables import hashtable as table
from pynf.tables import lpm

M32 = 0xFFFFFFFF
SCALE = 1 if NO_JIT else 5      # plain Python is slow: fewer routes and steps


def net(p, n):
    return p & ~((1 << (32 - n)) - 1) & M32


class Ref:
    """Routes in a dict; the longest match by trying each length."""

    def __init__(self):
        self.r = {}

    def add(self, p, n, v):
        self.r[(net(p, n), n)] = v

    def delete(self, p, n):
        return self.r.pop((net(p, n), n), None) is not None

    def lookup(self, ip):
        for n in range(32, -1, -1):
            v = self.r.get((net(ip, n), n))
            if v is not None:
                return v
        return -1

    def arrays(self):
        k = sorted(self.r, key=lambda x: (x[1], x[0]))      # as lpm.routes: by length
        return [p for p, _ in k], [n for _, n in k], [self.r[x] for x in k]


LENGTHS = [0, 1, 7, 8, 12, 15, 16, 19, 20, 22, 23, 24, 24, 24, 25, 26, 27, 28, 29, 30, 31, 32, 32]


def random_routes(rng, count, short=True):
    """Overlapping routes: most near two base addresses (so /20../32 nest in
    each other and in the shorter ones), some anywhere; host bits left set."""
    lens = [n for n in LENGTHS if short or n >= 16]
    bases = rng.integers(0, 1 << 32, size=2)
    out = []
    for _ in range(count):
        if rng.random() < 0.8:
            p = int(bases[rng.integers(2)]) ^ int(rng.integers(0, 1 << 12))
        else:
            p = int(rng.integers(0, 1 << 32))
        out.append((p, int(rng.choice(lens)), int(rng.integers(0, 1 << 24))))
    return out


def queries(rng, routes, extra=200):
    """Each route's first and last address, those +-1, one inside; random ones."""
    q = []
    for p, n, _ in routes:
        a = net(p, n)
        b = a + (1 << (32 - n)) - 1
        q += [a, b, (a - 1) & M32, (b + 1) & M32, a + int(rng.integers(0, 1 << (32 - n)))]
    q += rng.integers(0, 1 << 32, size=extra).tolist()
    return np.array(q, dtype=np.uint32)


def check(t, ref, ips):
    out = np.empty(len(ips), dtype=np.int64)
    lpm.lookup_many(t, ips, out)
    want = [ref.lookup(int(ip)) for ip in ips]
    bad = [(hex(int(ip)), int(o), w) for ip, o, w in zip(ips, out, want) if o != w]
    assert not bad, bad[:5]


def same_tables(a, b):
    """The same entries (tbl8 groups compared by content, not number)."""
    ea, eb = (a.tbl24 & lpm.EXT) != 0, (b.tbl24 & lpm.EXT) != 0
    assert np.array_equal(ea, eb)
    assert np.array_equal(a.tbl24[~ea], b.tbl24[~eb])
    ga = a.tbl8.reshape(-1, 256)[a.tbl24[ea] & lpm.ID_MASK]
    gb = b.tbl8.reshape(-1, 256)[b.tbl24[eb] & lpm.ID_MASK]
    assert np.array_equal(ga, gb)
    assert lpm.tbl8_used(a) == lpm.tbl8_used(b) == int(ea.sum())


@pytest.mark.parametrize("seed", range(3))
def test_build_matches_reference(seed):
    rng = np.random.default_rng(seed)
    rs = random_routes(rng, 100 * SCALE)
    ref = Ref()
    for p, n, v in rs:
        ref.add(p, n, v)
    t = lpm.build(lpm.make_lpm(), *zip(*rs))
    check(t, ref, queries(rng, rs))
    assert [a.tolist() for a in lpm.routes(t)] == [list(a) for a in ref.arrays()]


@pytest.mark.parametrize("seed", range(2))
def test_incremental_matches_reference_and_build(seed):
    rng = np.random.default_rng(10 + seed)
    pool = random_routes(rng, 40 * SCALE, short=False) + random_routes(rng, 4, short=True)
    ips = queries(rng, pool)
    t, ref = lpm.make_lpm(max_tbl8_groups=256), Ref()
    for step in range(60 * SCALE):
        p, n, v = pool[rng.integers(len(pool))]
        if rng.random() < 0.6:
            assert lpm.add(t, p, n, v)
            ref.add(p, n, v)
        else:
            assert lpm.delete(t, p, n) == ref.delete(p, n)
        if step % 5 == 0:
            check(t, ref, ips)
    check(t, ref, ips)
    same_tables(t, lpm.build(lpm.make_lpm(), *ref.arrays()))
    # deleting everything leaves an empty table and every tbl8 group free
    for p, n, _ in pool:
        lpm.delete(t, p, n)
    assert not t.tbl24.any() and not t.tbl8.any() and lpm.tbl8_used(t) == 0


def test_edges_default_host_boundaries_masking():
    t = lpm.make_lpm(max_tbl8_groups=4)
    a = 0x0A0B0C00                                  # 10.11.12.0
    assert lpm.lookup(t, a) == -1
    assert lpm.add(t, 0, 0, 0)                      # default route, id 0
    assert lpm.add(t, a, 24, 1)
    assert lpm.add(t, a | 0xFF, 32, lpm.ID_MASK)    # last address of the /24, largest id
    assert lpm.add(t, a | 0x80, 25, 3)
    for ip, want in [(a - 1, 0), (a, 1), (a + 0x7F, 1), (a + 0x80, 3), (a + 0xFE, 3),
                     (a + 0xFF, lpm.ID_MASK), (a + 0x100, 0), (M32, 0), (0, 0)]:
        assert lpm.lookup(t, ip) == want, hex(ip)
    assert lpm.tbl8_used(t) == 1
    # host bits are masked: 10.11.12.77/24 is 10.11.12.0/24; replacing keeps longer routes
    assert lpm.add(t, a | 77, 24, 9)
    assert lpm.lookup(t, a) == 9 and lpm.lookup(t, a + 0x80) == 3
    assert lpm.delete(t, a | 5, 24)                 # back to the default route
    assert lpm.lookup(t, a) == 0 and lpm.lookup(t, a + 0x80) == 3
    assert not lpm.delete(t, a, 24) and not lpm.delete(t, a, 23)
    assert lpm.delete(t, a | 0x80, 25) and lpm.delete(t, a | 0xFF, 32)
    assert lpm.tbl8_used(t) == 0 and lpm.lookup(t, a + 0xFF) == 0
    assert lpm.delete(t, 0, 0)
    assert lpm.lookup(t, a) == -1 and not t.tbl24.any()
    assert [x.tolist() for x in lpm.routes(t)] == [[], [], []]


def test_bad_routes_raise_value_error():
    t = lpm.make_lpm(max_tbl8_groups=1)
    for args, msg in [((0, 33, 1), "length 33"), ((1 << 32, 8, 1), "prefix"),
                      ((-1, 8, 1), "prefix"), ((0, 8, 1 << 24), "next-hop id")]:
        with pytest.raises(ValueError, match=msg):
            lpm.add(t, *args)
    with pytest.raises(ValueError, match="length -1"):
        lpm.delete(t, 0, -1)
    with pytest.raises(ValueError, match="2 prefixes, 1 lengths"):
        lpm.build(t, [1, 2], [8], [1, 2])


def test_tbl8_full_refuses_and_changes_nothing():
    t = lpm.make_lpm(max_tbl8_groups=2)
    assert lpm.add(t, 0x01010100, 24, 1)
    assert lpm.add(t, 0x01010180, 25, 2) and lpm.add(t, 0x02020280, 25, 3)
    before = (t.tbl24.copy(), t.tbl8.copy(), [x.tolist() for x in lpm.routes(t)])
    assert not lpm.add(t, 0x03030380, 25, 4)       # a third /24: no group left
    assert t.info[lpm.I_FULL] == 1
    assert np.array_equal(before[0], t.tbl24) and np.array_equal(before[1], t.tbl8)
    assert [x.tolist() for x in lpm.routes(t)] == before[2]
    assert lpm.add(t, 0x010101C0, 26, 5)           # the /24 has its group already
    assert lpm.add(t, 0x03030300, 24, 6)           # and /24s need none
    assert lpm.delete(t, 0x02020280, 25) and lpm.add(t, 0x03030380, 25, 4)
    assert lpm.lookup(t, 0x03030381) == 4 and lpm.lookup(t, 0x03030301) == 6
    assert lpm.lookup(t, 0x010101C1) == 5 and lpm.lookup(t, 0x01010181) == 2
    assert lpm.lookup(t, 0x01010101) == 1 and lpm.lookup(t, 0x02020281) == -1


def test_rule_table_full_refuses():
    t = lpm.make_lpm(max_tbl8_groups=1, max_rules=2)
    assert lpm.add(t, 0x01000000, 8, 1) and lpm.add(t, 0x02000000, 8, 2)
    assert not lpm.add(t, 0x03000000, 8, 3) and t.info[lpm.I_FULL] == 1
    assert lpm.lookup(t, 0x03000001) == -1
    assert lpm.add(t, 0x02000000, 8, 7)            # replacing needs no new rule
    assert lpm.lookup(t, 0x02000001) == 7


def test_build_grows_and_replaces():
    t = lpm.make_lpm(max_tbl8_groups=2, max_rules=2)
    assert lpm.add(t, 0x09000000, 8, 9)
    rs = [(0x0A000000 | k << 8 | 0x80, 25, k) for k in range(5)] + [(0x0A000000, 8, 99), (0x0A000000, 8, 98)]
    t2 = lpm.build(t, *zip(*rs))
    assert len(t2.free) == 2 + 5 and lpm.tbl8_used(t2) == 5
    assert t2.rules.info[table.I_CAP] == 8                   # 6 routes: room up to 8
    assert lpm.lookup(t2, 0x09000001) == -1               # the old route is gone
    assert lpm.lookup(t2, 0x0A000381) == 3 and lpm.lookup(t2, 0x0A000301) == 98
    assert lpm.lookup(t2, 0x0A000581) == 98
    assert lpm.add(t2, 0x0A000580, 25, 5) and lpm.add(t2, 0x0A000680, 25, 6)
    assert lpm.delete(t2, 0x0A000080, 25) and lpm.lookup(t2, 0x0A000081) == 98
    t3 = lpm.build(t2, [0], [0], [4])                      # fits: loaded in place
    assert t3 is t2 and lpm.tbl8_used(t3) == 0 and lpm.lookup(t3, 0x0A000581) == 4


def test_build_large_matches_reference():
    """Many random /8../32 routes, bulk: spot-checked against the reference."""
    rng = np.random.default_rng(5)
    n = 2000 * SCALE
    p = rng.integers(0, 1 << 32, size=n)
    lens = rng.choice([8, 12, 16, 18, 20, 22, 24, 24, 24, 24, 26, 28, 32], size=n)
    v = rng.integers(0, 1 << 24, size=n)
    t = lpm.build(lpm.make_lpm(max_tbl8_groups=16), p, lens, v)
    ref = Ref()
    for r in zip(p.tolist(), lens.tolist(), v.tolist()):
        ref.add(*r)
    rs = [(int(p[i]), int(lens[i]), 0) for i in rng.integers(0, n, size=300)]
    check(t, ref, queries(rng, rs, extra=1000))
