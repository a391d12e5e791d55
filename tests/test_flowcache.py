"""The chain-wide flow cache (pynf/flowcache/): the same packets, verdicts,
drops and per-NF counters with it as without it, and stale never."""
import random

import numpy as np
import pytest

from pynf.flowcache import Cacheable
from pynf.flowcache import table as flowcache
from pynf.flowcache.adapt import Adapt
from pynf.flowcache.layout import Layout
from pynf.flowcache.table import FC_HITS, FC_MISSES, FC_ON, FC_REFUSED, FC_RESENT, FC_SWITCHES
from pynf.nf.context import RunContext
from pynf.slots import NF_CACHED, NF_CYCLES, NF_RX, NF_TIMED, W_CYCLES
from pynf.testing import Chain

import packets as P
from support import flow_frames, mixed_frames

pytestmark = pytest.mark.jit

COUNTS = [c for c in range(8) if c not in (NF_CYCLES, NF_TIMED, NF_CACHED)]


def both(nfs, frames, ctx=None, burst=32, entries=4096, rounds=2):
    """Run frames `rounds` times through a chain with the cache and one
    without; both results, and the cached chain."""
    out = []
    for fc in (entries, 0):
        ch = Chain(nfs, ctx or RunContext(), flow_cache=fc)
        res = [ch.run(frames, burst) for _ in range(rounds)]
        out.append((res, ch))
    return out


def same(nfs, frames, **kw):
    (on, ch_on), (off, ch_off) = both(nfs, frames, **kw)
    assert on == off
    assert ch_on.drop_counts() == ch_off.drop_counts()
    assert (ch_on.nfstat[:, COUNTS] == ch_off.nfstat[:, COUNTS]).all()
    return ch_on, ch_off


def test_chain_same_with_and_without_cache():
    frames = flow_frames(nflows=80, per_flow=20)
    ch, _ = same(["acl", "lb", "l3fwd"], frames)
    assert ch.fc.meta[FC_HITS] > len(frames)            # the second round: all hits
    assert ch.nfstat[0, NF_CACHED] > 0 and ch.nfstat[2, NF_CACHED] > 0
    assert ch.nfstat[1, NF_CACHED] == 0                 # lb runs on every packet


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_traffic_same(seed):
    rng = random.Random(seed)
    frames = mixed_frames(rng, 600)
    frames += [frames[rng.randrange(len(frames))] for _ in range(600)]    # repeats: hits
    same(["acl", "lb", "l3fwd"], frames, burst=rng.choice([1, 7, 32]))


def test_acl_hits_true_under_the_cache():
    frames = flow_frames(nflows=30, per_flow=40)
    (_, on), (_, off) = both(["acl", "l3fwd"], frames)
    assert (on.states[0].hits == off.states[0].hits).all()
    assert on.fc.meta[FC_HITS] > 0


def test_ttl_is_in_the_key():
    frames = [P.udp("10.0.0.1", "10.0.0.2", ttl=t) for t in (64, 64, 1, 2, 1, 64, 2, 1)] * 4
    same(["acl", "l3fwd"], frames, burst=3)


def test_bad_checksum_in_a_cached_flow_is_still_dropped():
    good = P.udp("10.0.0.1", "10.0.0.2", sport=5, dport=53)
    bad = bytearray(good)
    bad[24] ^= 0xFF                                     # the IPv4 header checksum
    frames = [good] * 8 + [bytes(bad)] + [good] * 3 + [bytes(bad)]
    ch, _ = same(["acl", "l3fwd"], frames, burst=4,
                 ctx=RunContext(settings={"l3fwd": {"verify_ip_csum": "1"}}))
    assert ch.fc.meta[FC_REFUSED] >= 2
    assert ch.drop_counts().get("ip_csum") == 4


def test_control_change_invalidates(tmp_path):
    """A route changed by hand after flows were recorded: the cached chain
    follows it once told (as the runtime tells it on every control change)."""
    from pynf.nfs import l3fwd
    frames = [P.udp("10.0.0.1", "10.0.0.2", sport=s) for s in range(1, 9)] * 4
    routes = tmp_path / "r.txt"
    routes.write_text("10.0.0.2 1\n")
    ctx = RunContext(files={"routes": str(routes)})
    ch = Chain(["acl", "l3fwd"], ctx, flow_cache=1024)
    v1, _ = ch.run(frames)
    assert set(v1) == {1}
    l3fwd.route_add(ch.states[1], P.ip("10.0.0.2"), 3)
    ch.changed()
    v2, _ = ch.run(frames)
    assert set(v2) == {3}


def test_resent_when_the_lb_picks_otherwise():
    """A segment after lb keeps what lb wrote; if lb writes otherwise for a
    recorded flow (here: its backends replaced by hand, without telling the
    cache), the segment runs again for it and the entry is recorded anew."""
    from pynf.nfs import lb
    frames = flow_frames(nflows=20, per_flow=10)
    ctx = RunContext()
    ch = Chain(["acl", "lb", "l3fwd"], ctx, flow_cache=1024)
    ref = Chain(["acl", "lb", "l3fwd"], ctx, flow_cache=0)
    assert ch.run(frames) == ref.run(frames)
    for c in (ch, ref):
        c.states[1] = lb.make_state(lb.LbConfig(backends=((P.ip("10.0.0.77"), 8080),)))
    assert ch.run(frames) == ref.run(frames)
    assert ch.fc.meta[FC_RESENT] > 0


def test_full_table_is_a_cache_not_a_loss():
    frames = flow_frames(nflows=200, per_flow=5)
    same(["acl", "lb", "l3fwd"], frames, entries=4)


def test_layout_packs_fields_into_words():
    lay = Layout([True, False, True], [set(), {"dst_ip", "dport"}, {"ttl", "eth_src", "eth_dst"}],
                 [True, False, True])
    assert lay.segments == [(0, 0), (2, 2)]
    assert lay.guards[0] == []
    assert {f for _, ws in lay.guards[1] for f, _, _ in ws} == {"dst_ip", "dport", "port"}
    words = [w for g in lay.guards + lay.writes for w in g] + [w for w in lay.pt.values() if w]
    cols = [c for c, _ in words]
    assert sorted(cols) == list(range(1, len(cols) + 1))    # each word once, after the info word
    for _, parts in words:                                   # fields do not overlap, 63 bits at most
        used = 0
        for _f, shift, mask in parts:
            assert used & (mask << shift) == 0
            used |= mask << shift
        assert used < 1 << 63
    assert lay.vw == 8                                       # acl,lb,l3fwd: one cache line


def test_make_sizes_and_alignment():
    fc = flowcache.make(1000, 11)
    assert len(fc.keys) == 512 * 8 and fc.vals.size == 1024 * 16
    assert fc.keys.ctypes.data % 64 == 0 and fc.vals.ctypes.data % 64 == 0
    assert flowcache.entries_for(10) == flowcache.ENTRIES_DEFAULT
    assert flowcache.entries_for(1_000_000) == 1 << 21
    assert flowcache.entries_for(1_000_000, auto=True) == flowcache.ENTRIES_DEFAULT


def test_cacheable_when():
    c = Cacheable(when=lambda cfg: cfg == "yes")
    assert c.applies("yes") and not c.applies("no") and not c.applies(None)
    assert Cacheable().applies(None)


def test_counts_balance():
    frames = flow_frames(nflows=50, per_flow=8)
    ch = Chain(["acl", "lb", "l3fwd"], RunContext(), flow_cache=256)
    ch.run(frames)
    m = ch.fc.meta
    assert m[FC_HITS] + m[FC_MISSES] == ch.nfstat[0, 0]     # every packet the stage parsed, once
    assert np.all(ch.nfstat[:, NF_CACHED] <= ch.nfstat[:, 0])


def test_adapt_keeps_the_cheaper():
    """flowcache.adapt.Adapt probes off, then on, and keeps the cheaper; with
    too little traffic it goes on probing."""
    fc = flowcache.make(64, 8)
    ws = np.zeros(16, dtype=np.int64)
    nfstat = np.zeros((2, 8), dtype=np.int64)
    a = Adapt(fc, ws, nfstat, hz=1000)     # 1000 ticks a second
    now = 0

    def run(ticks, cycles_per_packet, packets=100_000):
        nonlocal now
        ws[W_CYCLES] += int(cycles_per_packet * packets)
        nfstat[-1, NF_RX] += packets
        now += ticks
        a.step(now)

    a.step(now)
    run(400, 100)                   # warm-up over: the off probe starts
    assert fc.meta[FC_ON] == 0
    run(150, 300)                   # off costs 300 a packet
    assert fc.meta[FC_ON] == 1      # the on probe
    run(150, 200)                   # on costs 200: kept
    assert fc.meta[FC_ON] == 1 and a.phase == "run"
    run(2100, 200)                  # next period: off probe
    run(150, 100)                   # off is cheaper now
    run(150, 250, packets=10)       # too few packets to judge: still probing on
    assert a.phase == "on"
    run(150, 250)
    assert fc.meta[FC_ON] == 0 and a.phase == "run"
    assert fc.meta[FC_SWITCHES] == 5
    assert a.until - now == 4000        # it lost: the next probe after twice the period


def test_flow_cache_flag():
    from pynf.flowcache import setting as flow_cache
    assert flow_cache("auto") == (-1, True) and flow_cache("on:4096") == (4096, False)
    assert flow_cache("off") == (0, False)
    for bad in ("maybe", "off:5", "on:1", "on:x", "auto:99999999999"):
        with pytest.raises(Exception, match="want"):
            flow_cache(bad)
