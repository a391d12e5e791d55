"""The examples an NF author starts from (examples/): synlimit (a rate limit
per source address: the clock, a map, a token bucket, counters, key=src)
and dnsblock (a payload filter)."""
import os

import pytest

from pynf.nf.context import RunContext
from pynf.testing import Chain
from pynf.testing import frames as F

from support import ROOT, run_pynf

SYNLIMIT = os.path.join(ROOT, "examples", "synlimit.py") + ":synlimit"
DNSBLOCK = os.path.join(ROOT, "examples", "dnsblock.py") + ":dnsblock"
SECOND = 1_000_000_000


def _limit(**settings):
    return Chain([SYNLIMIT], RunContext(settings={"synlimit": {k: str(v) for k, v in settings.items()}}))


def test_synlimit_bursts_then_refills():
    ch = _limit(rate=10, burst=5)
    ch.set_time(100 * SECOND)
    syns = [F.tcp("10.0.0.7", sport=40000 + k, flags="S") for k in range(8)]
    assert ch.run(syns)[0] == [0] * 5 + ["over_rate"] * 3
    ch.advance(SECOND // 2)             # 5 tokens back at 10 a second
    assert ch.run(syns[:6])[0] == [0] * 5 + ["over_rate"]
    ch.advance(10 * SECOND)             # full again, never more than the burst
    assert ch.run(syns)[0] == [0] * 5 + ["over_rate"] * 3
    # another source has its own bucket; ACKs and SYN-ACKs are never limited
    assert ch.run([F.tcp("10.0.0.8", flags="S")])[0] == [0]
    assert ch.run([F.tcp("10.0.0.7", flags="A"), F.tcp("10.0.0.7", flags="SA")])[0] == [0, 0]
    assert ch.states[0].counters[0] == 8 + 6 + 8 + 1


def test_synlimit_forgets_idle_sources_and_evicts_at_full():
    ch = _limit(rate=1, burst=1, sources=8)     # one bucket of 8
    ch.set_time(SECOND)
    assert ch.run([F.tcp("10.0.0.1", flags="S")] * 2)[0] == [0, "over_rate"]
    ch.advance(61 * SECOND)                      # idle past 60 s: forgotten, a full bucket again
    assert ch.run([F.tcp("10.0.0.1", flags="S")])[0] == [0]
    others = [F.tcp(f"10.0.1.{k}", flags="S") for k in range(20)]
    assert ch.run(others)[0] == [0] * 20
    st = ch.states[0]
    spec = ch.specs[0]
    stats = spec.stats_of([st])
    assert stats["src_entries"] == 8 and stats["src_evicted_total"] == 21 - 8
    assert stats["src_expired_total"] == 1 and stats["syns_total"] == 23


def test_dnsblock_matches_suffixes_at_label_boundaries():
    ch = Chain([DNSBLOCK], RunContext(settings={"dnsblock": {"suffixes": "ads.example,tracker.test"}}))
    cases = {
        "x.ads.example": "blocked", "ADS.Example": "blocked", "a.b.tracker.test.": "blocked",
        "badads.example": 0, "ads.example.org": 0, "example": 0, "tracker.testing": 0,
    }
    frames = [F.dns_query(n) for n in cases]
    assert ch.run(frames)[0] == list(cases.values())
    # a response, another port, a truncated query: passed, not parsed past their data
    resp = bytearray(F.dns_query("x.ads.example"))
    resp[42 + 2] |= 0x80
    short = F.udp(dport=53, payload=b"\x00\x01\x01")
    other = F.udp(dport=5353, payload=bytes(F.dns_query("x.ads.example")[42:]))
    assert ch.run([bytes(resp), short, other])[0] == [0, 0, 0]
    assert ch.states[0].counters[0] == len(cases)


@pytest.mark.parametrize("bad", ["", "a..b", "x" * 64 + ".example"])
def test_dnsblock_refuses_bad_suffixes_in_one_line(bad):
    from pynf.nf import NFError, load
    with pytest.raises(NFError) as e:
        load(DNSBLOCK).make_config(RunContext(settings={"dnsblock": {"suffixes": bad}}))
    assert str(e.value).startswith("NF dnsblock: configuration: suffixes:")


def _syn_capture(path, sources=40, per_source=25):
    frames = [F.tcp(f"10.1.{s // 200}.{s % 200 + 1}", "10.0.0.2", 1024 + 37 * k + s, 80, flags="S")
              for k in range(per_source) for s in range(sources)]
    return F.write_pcap(path, frames), sources * per_source


@pytest.mark.jit
@pytest.mark.parametrize("stages", [None, "|acl,synlimit,l3fwd"])
def test_synlimit_keeps_each_source_on_one_replica(tmp_path, stages):
    """Per source, burst 5 and 1 SYN a second: with its state split by
    5-tuple over two replicas a source would get 10 through; keyed by
    source it gets 5 however many replicas there are."""
    pcap, n = _syn_capture(tmp_path / "syns.pcap")
    place = ["--rtc", f"acl,{SYNLIMIT},l3fwd"] if stages is None else \
        ["--stages", stages.replace("synlimit", SYNLIMIT), "--replicas", "1,2", "--cores", "2"]
    rc, rep, err = run_pynf([*place, "--pcap-in", pcap, "--set", "synlimit.rate=1", "--set", "synlimit.burst=5"])
    assert rc == 0, err
    st = rep["nfs"]["synlimit"]["state"]
    assert st["syns_total"] == n and st["src_entries"] == 40
    assert rep["drops"]["over_rate"] == n - 40 * 5
    assert rep["rx"] == rep["tx"] + sum(rep["drops"].values())


@pytest.mark.jit
def test_a_per_source_nf_at_the_nic_with_two_replicas_is_refused(tmp_path):
    rc, _, err = run_pynf(["--rtc", f"acl,{SYNLIMIT},l3fwd", "--cores", "2", "--packets", "10"])
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith(
        "pynf: NF synlimit keeps its state per src, but 2 replicas read the NIC's queues")


@pytest.mark.jit
def test_both_examples_on_built_in_mixed_traffic():
    """--traffic mix: a quarter of the flows send SYNs, a quarter DNS queries
    (one name in eight under ads.example)."""
    rc, rep, err = run_pynf(["--rtc", f"acl,{SYNLIMIT},{DNSBLOCK},l3fwd", "--traffic", "mix", "--packets",
                             "200000", "--set", "dnsblock.suffixes=ads.example", "--set", "synlimit.rate=10"])
    assert rc == 0, err
    st = {k: v["state"] for k, v in rep["nfs"].items() if k in ("synlimit", "dnsblock")}
    syns, queries = st["synlimit"]["syns_total"], st["dnsblock"]["queries_total"]
    assert 0.2 < syns / rep["rx"] < 0.3 and 0.2 < queries / rep["rx"] < 0.3
    assert 0.09 < rep["drops"]["blocked"] / queries < 0.16
    assert rep["drops"]["over_rate"] > 0.8 * syns     # ~195 SYNs per source: 20 (the burst) and 10 a second pass
    assert rep["rx"] == rep["tx"] + sum(rep["drops"].values())


def test_dns_traffic_needs_room_for_its_queries():
    rc, _, err = run_pynf(["--rtc", "l3fwd", "--traffic", "dns", "--frame-size", "64", "--packets", "10"])
    assert rc == 2 and err.strip().splitlines()[-1] == (
        "pynf: --frame-size 64: --traffic dns sends DNS queries, which need 82 bytes or more")
