"""The runtime end to end, through the CLI in this process: reports,
conservation, pcap in/out against the reference, the corpus, replicas."""
import os
import random
import shutil
import subprocess

import pytest

from pynf.io import pcap

import packets as P
import reference as R
from support import conserved, corpus_runs, mixed_frames, run_pynf, write_pcap

pytestmark = pytest.mark.jit


def run(args):
    return run_pynf(args)


def test_builtin_traffic_report():
    rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--packets", "64000", "--flows", "512"])
    assert rc == 0, err
    for key in ("model", "chain", "cores", "elapsed_s", "io", "rx", "tx", "drops", "mpps", "gbps",
                "cycles_per_packet", "nfs", "buffers_in_use"):
        assert key in rep
    assert rep["model"] == "rtc" and rep["chain"] == "acl,lb,l3fwd" and rep["io"] == "mem"
    assert rep["rx"] == 64000 and conserved(rep) and rep["buffers_in_use"] == 0
    assert set(rep["drops"]) == {"acl"}
    assert 0.03 < rep["drops"]["acl"] / rep["rx"] < 0.10          # about 1/16 of the flows
    assert set(rep["nfs"]) == {"acl", "lb", "l3fwd"}
    assert rep["nfs"]["lb"]["rx"] == rep["nfs"]["acl"]["tx"]
    assert rep["nfs"]["l3fwd"]["tx"] == rep["tx"]
    assert all(v["cycles_per_packet"] > 0 for v in rep["nfs"].values())
    assert rep["mpps"] > 0 and rep["gbps"] > 0


def test_flow_cache_in_the_report():
    """With the cache kept on, the same packets and drops as with it off; the
    report says what came from it (acl and l3fwd), and lb ran on every packet."""
    args = ["--rtc", "acl,lb,l3fwd", "--packets", "64000", "--flows", "512"]
    reps = {}
    for mode in ("on", "off"):
        rc, reps[mode], err = run(args + ["--flow-cache", mode])
        assert rc == 0, err
    on, off = reps["on"], reps["off"]
    assert (on["rx"], on["tx"], on["drops"]) == (off["rx"], off["tx"], off["drops"]) and conserved(on)
    fc = on["stages"][0]["flow_cache"]
    assert off["stages"][0]["flow_cache"] is None
    assert fc["hits"] + fc["misses"] == on["rx"] and fc["misses"] >= 512 and fc["on"] == 1
    assert on["nfs"]["acl"]["cached"] == fc["hits"] and on["nfs"]["lb"]["cached"] == 0
    assert 0 < on["nfs"]["l3fwd"]["cached"] <= on["nfs"]["l3fwd"]["rx"]


@pytest.fixture
def files(tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("@0.0.0.0/0 0.0.0.0/0 0 : 65535 23 : 23 0x06/0xff deny\n"
                     "@10.0.3.0/24 0.0.0.0/0 0 : 65535 0 : 65535 0x11/0xff deny\n")
    routes = tmp_path / "routes.txt"
    routes.write_text("192.168.0.1 1\n192.168.0.2 2\n10.0.0.4 3\n")
    backends = tmp_path / "backends.txt"
    backends.write_text("192.168.0.1:8080\n192.168.0.2:8081\n")
    return dict(rules=str(rules), routes=str(routes), backends=str(backends))


def test_pcap_chain_matches_reference(tmp_path, files):
    rng = random.Random(42)
    frames = mixed_frames(rng, 3000)
    pin, pout = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(pin, frames)
    rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--pcap-in", str(pin), "--pcap-out", str(pout),
                        "--acl-rules", files["rules"], "--routes", files["routes"],
                        "--backends", files["backends"], "--tx-ports", "0,1,2,3"])
    assert rc == 0, err
    ref = R.ChainRef(["acl", "lb", "l3fwd"],
                     rules=[__import__("pynf.tables.rules", fromlist=["x"]).parse_rule(t.strip())
                            for t in open(files["rules"])],
                     backends=[(P.ip("192.168.0.1"), 8080), (P.ip("192.168.0.2"), 8081)],
                     routes=[(P.ip("192.168.0.1"), 1), (P.ip("192.168.0.2"), 2), (P.ip("10.0.0.4"), 3)])
    want, reasons = [], {}
    for f in frames:
        v, o = ref(f)
        if isinstance(v, str):
            reasons[v] = reasons.get(v, 0) + 1
        else:
            want.append(o)
    got = pcap.read(str(pout))
    assert [got.frame(i) for i in range(len(got))] == want
    assert rep["rx"] == len(frames) and rep["tx"] == len(want) and conserved(rep)
    assert rep["drops"] == dict(sorted(reasons.items()))
    assert all(P.checksums_ok(f) for f in want)
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-nn", "-vv", "-r", str(pout)], capture_output=True, text=True)
        assert r.returncode == 0
        assert "bad cksum" not in r.stdout and "incorrect" not in r.stdout
        assert len([ln for ln in r.stdout.splitlines() if ln[:2].isdigit()]) == len(want)


def test_corpus_conservation(corpus_files, tmp_path):
    bad = []
    for path, frames in corpus_runs(corpus_files, tmp_path):
        rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--pcap-in", path])
        if rc != 0 or not conserved(rep) or rep["rx"] != frames or rep["buffers_in_use"]:
            bad.append((os.path.basename(path), rc, err.strip()[:200], rep and (rep["rx"], rep["tx"], rep["drops"])))
    assert not bad, bad
    assert len(corpus_files) >= 300         # tests/corpus: 386 captures


@pytest.mark.parametrize("frame_size", [64, 1024])
def test_two_replicas_split_flows(frame_size):
    from pynf.io import feed
    from pynf.io.mem.backend import MemIO
    from pynf.nf.context import RunContext
    from pynf.packet.clock import tsc_hz
    from pynf.runtime.chain import parse
    from pynf.runtime.options import Options
    from pynf.runtime.report import report
    from pynf.runtime.runtime import Runtime
    from pynf.tables import flowtable as conntrack
    plan = parse(rtc="acl,lb,l3fwd", cores=2)
    opts = Options(packets=40000, cores=[0, 1])
    rt = Runtime(plan, RunContext(flows=300), opts,
                 io=MemIO(feed.builtin(300, frame_size, 1, 2), opts.tx_ports, budget=40000, hz=tsc_hz()))
    rt.build()
    rt.compile()
    rt.run()
    rep = report(rt)
    assert conserved(rep) and rep["rx"] == 40000 and rep["buffers_in_use"] == 0
    keys = []
    for w in rt.workers:
        used = conntrack.entries(w.states[1].flows, w.states[1].ctl)
        used = used[used[:, 1] != 0]
        keys.append({(int(a), int(b)) for a, b in used[:, :2]})
        assert w.ws[0] > 0                      # both replicas got traffic
    assert keys[0] and keys[1] and not (keys[0] & keys[1])
    assert len(keys[0] | keys[1]) == 300 - 300 // 16 - (1 if 300 % 16 > 7 else 0)


@pytest.mark.parametrize("args,msg", [
    (["--rtc", "acl,nope"], "unknown NF 'nope'"),
    (["--rtc", "acl", "--frame-size", "20"], "--frame-size"),
    (["--rtc", "acl", "--bogus"], "unrecognized arguments: --bogus"),
    (["--rtc", "acl", "--pl", "lb"], "exactly one of"),
    (["--rtc", "lb", "--set", "lb.capacity=zero"], "--set lb.capacity=zero"),
    (["--rtc", "lb", "--set", "lb.nothing=1"], "no such setting"),
    (["--rtc", "acl", "--pcap-in", "/nonexistent.pcap"], "/nonexistent.pcap: no such file"),
    (["--rtc", "acl", "--flow-cache", "maybe"], "--flow-cache"),
])
def test_bad_usage_exits_2_with_one_line(args, msg):
    rc, _, err = run(args)
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_bad_files_exit_2_naming_file_and_line(tmp_path):
    cases = {
        "--acl-rules": "@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xff\n@1.2.3/8 0.0.0.0/0 0 : 1 0 : 1 6/255\n",
        "--routes": "10.0.0.1 1\n10.0.0.x 2\n",
        "--backends": "10.0.0.1:80\n10.0.0.2\n",
    }
    for flag, text in cases.items():
        p = tmp_path / (flag.strip("-") + ".txt")
        p.write_text(text)
        rc, _, err = run(["--rtc", "acl,lb,l3fwd", flag, str(p), "--packets", "10"])
        assert rc == 2 and err.startswith(f"{p}:2: ") and len(err.strip().splitlines()) == 1, err


def test_not_a_pcap_exits_2_naming_file(tmp_path):
    p = tmp_path / "junk.pcap"
    p.write_bytes(b"this is not a capture file at all")
    rc, _, err = run(["--rtc", "acl", "--pcap-in", str(p)])
    assert rc == 2 and str(p) in err and "not a pcap" in err


def test_nf_that_does_not_compile_is_named(tmp_path):
    p = tmp_path / "broken.py"
    p.write_text("from pynf.nf import nf\n\n@nf('broken')\ndef broken(pkts, live, n, st):\n"
                 "    for j in range(n):\n        pkts.port[live[j]] = 'a string'\n")
    rc, _, err = run(["--rtc", f"acl,{p}:broken", "--packets", "10"])
    assert rc == 2 and "NF broken" in err and f"{p}:" in err, err


def test_nf_that_allocates_is_refused(tmp_path):
    p = tmp_path / "alloc.py"
    p.write_text("import numpy as np\nfrom pynf.nf import nf\n\n@nf('alloc')\ndef alloc(pkts, live, n, st):\n"
                 "    tmp = np.zeros(n)\n    pkts.port[0] = int(tmp.sum())\n")
    rc, _, err = run(["--rtc", f"{p}:alloc", "--packets", "10"])
    assert rc == 2 and "NF alloc" in err and "NRT" in err, err


def test_control_change_between_bursts(tmp_path):
    """A route added while the chain runs takes effect without stopping it."""
    import threading
    import time

    from pynf.errors import format_ipv4
    from pynf.io import feed
    from pynf.io.mem.backend import MemIO
    from pynf.nf.context import RunContext
    from pynf.nfs.l3fwd import route_add
    from pynf.packet.clock import tsc_hz
    from pynf.runtime.chain import parse
    from pynf.runtime.options import Options
    from pynf.runtime.report import report
    from pynf.runtime.runtime import Runtime
    from pynf.traffic.flows import make_flows
    fs = make_flows(64, 1)
    routes = tmp_path / "routes.txt"
    routes.write_text("".join(f"{format_ipv4(d)} 0\n" for d in fs.dst_ip[1:]))   # flow 0 has none
    plan = parse(rtc="l3fwd", cores=2)
    opts = Options(duration=1.2, cores=[0, 1])
    rt = Runtime(plan, RunContext(flows=64, files={"routes": str(routes)}, n_ports=2), opts,
                 io=MemIO(feed.builtin(64, 64, 1, 2), opts.tx_ports, hz=tsc_hz()))
    rt.build()
    rt.compile()
    t = threading.Thread(target=rt.run)
    t.start()
    time.sleep(0.5)
    missing = int(fs.dst_ip[0])
    rt.mail.control("l3fwd", lambda st: route_add(st, missing, 1))
    before = sum(int(w.drops.sum()) for w in rt.workers)
    t.join()
    rep = report(rt)
    rt.close()
    assert conserved(rep)
    assert rep["drops"].get("no_route", 0) > 0 and before > 0
    assert rep["ports"].get("1", {}).get("tx", 0) > 0            # only the new route uses port 1


@pytest.mark.parametrize("io_kind", ["mem", pytest.param("dpdk", marks=pytest.mark.dpdk)])
def test_huge_pcap_record_does_not_end_the_replay(tmp_path, io_kind):
    """A record over 262,144 bytes is read (and dropped as oversize); the
    frames after it are replayed, not lost silently."""
    frames = [P.udp("10.0.0.1", "10.0.0.2"), P.udp("10.0.0.1", "10.0.0.2") + bytes(300_000),
              P.udp("10.0.0.1", "10.0.0.3"), P.tcp("10.0.0.1", "10.0.0.4")]
    path = tmp_path / "huge.pcap"
    write_pcap(path, frames)
    rc, rep, err = run(["--rtc", "l3fwd", "--pcap-in", str(path), "--io", io_kind])
    assert rc == 0, err
    assert rep["rx"] == 4 and conserved(rep) and rep["drops"].get("oversize") == 1


def test_pcap_cut_short_says_so(tmp_path):
    path = tmp_path / "cut.pcap"
    write_pcap(path, [P.udp(), P.udp()])
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    rc, rep, err = run(["--rtc", "l3fwd", "--pcap-in", str(path)])
    assert rc == 0 and rep["rx"] == 1
    assert "record 2" in err and "cut short" in err


@pytest.mark.parametrize("io_kind", ["mem", pytest.param("dpdk", marks=pytest.mark.dpdk)])
def test_pps_paces_a_pcap_replay(tmp_path, io_kind):
    """--pps paces a looped --pcap-in replay as it paces built-in traffic:
    never more than N packets a second (and a burst), every one accounted
    for. (No lower bound: a loaded machine may deliver fewer.)"""
    path = tmp_path / "in.pcap"
    write_pcap(path, [P.udp("10.0.0.1", "10.0.0.2", sport=1000 + k) for k in range(50)])
    rc, rep, err = run(["--rtc", "l3fwd", "--pcap-in", str(path), "--duration", "1.5", "--pps", "20000",
                        "--io", io_kind])
    assert rc == 0, err
    assert 1000 <= rep["rx"] <= 20000 * rep["elapsed_s"] + 64       # flat out would be millions
    assert conserved(rep)


def test_instances_claim_distinct_cores(tmp_path):
    """pynf.runtime.cores: a second instance skips a core the first holds,
    shares (and says so) when none is free, and gets it back once freed."""
    from pynf.runtime.cores import claim
    a = claim(1, [0, 1], str(tmp_path))
    assert a.cores == [0] and a.note is None
    b = claim(1, [0, 1], str(tmp_path))
    assert b.cores == [1] and f"pid {os.getpid()}" not in (b.note or "") and "0" in b.note
    c = claim(2, [0, 1], str(tmp_path))
    assert c.cores == [0, 1] and "taken by another pynf" in c.note and f"pid {os.getpid()}" in c.note
    a.close()
    d = claim(1, [0, 1], str(tmp_path))
    assert d.cores == [0] and d.note is None
    for x in (b, c, d):
        x.close()
    e = claim(4, [0, 1], str(tmp_path / "f"))
    assert e.cores == [0, 1]
    e.close()
    (tmp_path / "file").write_text("")
    f = claim(1, [0, 1], str(tmp_path / "file"))      # not a directory: picks, unchecked, says so
    assert f.cores == [0] and "cannot claim" in f.note


def test_report_tables_fit_80_columns():
    """The report's tables in an 80-column terminal: short numbers, nothing cut."""
    import io as _io

    from pynf.cli.ui import print_report

    from support import run_pynf
    rc, rep, err = run_pynf(["--pl", "acl,lb,l3fwd", "--packets", "3000000", "--flows", "4096"])
    assert rc == 0, err
    out = _io.StringIO()
    print_report(rep, out, width=80)
    text = out.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= 80 and "\u2026" not in text, text
    assert "3.00M" in text and "lb" in text
