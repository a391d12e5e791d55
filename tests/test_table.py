"""pynf.tables.hashtable against a dict, and at capacity."""
import random

from pynf.tables import hashtable as table
from pynf.tables.hashing import hash5, key5


def test_random_ops_match_dict():
    rng = random.Random(1)
    t = table.make_table(300)
    ref = {}
    keys = [(rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(65536), rng.randrange(65536),
             rng.choice((6, 17))) for _ in range(400)]
    for _step in range(3000):
        k = rng.choice(keys)
        k0, k1 = key5(*k)
        h = hash5(*k)
        op = rng.random()
        if op < 0.5:
            v = rng.randrange(1000)
            ok = table.add(t, k0, k1, h, v)
            if k in ref or len(ref) < 300:
                assert ok
                ref[k] = v
            else:
                assert not ok
        elif op < 0.8:
            s = table.find(t, k0, k1, h)
            assert (s >= 0) == (k in ref)
            if s >= 0:
                assert table.value(t, s) == ref[k]
        else:
            assert table.delete(t, k0, k1, h) == (k in ref)
            ref.pop(k, None)
        assert t.info[table.I_COUNT] == len(ref)
    for k, v in ref.items():
        k0, k1 = key5(*k)
        s = table.find(t, k0, k1, hash5(*k))
        assert s >= 0 and table.value(t, s) == v


def test_full_table_refuses_new_keys_keeps_old():
    t = table.make_table(4)
    for k in range(4):
        s, added = table.find_or_add(t, k, 7, k * 2654435761 & 0xFFFFFFFF, k)
        assert s >= 0 and added
    s, added = table.find_or_add(t, 99, 7, 12345, 0)
    assert s == -1 and not added and t.info[table.I_FULL] == 1
    for k in range(4):
        s, added = table.find_or_add(t, k, 7, k * 2654435761 & 0xFFFFFFFF, 0)
        assert s >= 0 and not added and table.value(t, s) == k


def test_colliding_hashes_probe_and_delete():
    t = table.make_table(16)
    for k in range(10):
        assert table.add(t, k, 1, 5, k * 10)          # all in one probe chain
    assert table.delete(t, 3, 1, 5)
    for k in range(10):
        s = table.find(t, k, 1, 5)
        assert (s >= 0) == (k != 3)
        if s >= 0:
            assert table.value(t, s) == k * 10
