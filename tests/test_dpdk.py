"""The DPDK backend on virtual devices (no NIC, no hugepages)."""
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pynf.cli import main as cli
from pynf.io import pcap
from pynf.tables import flowtable as conntrack

from support import ROOT, conserved, corpus_runs, mixed_frames, run_pynf, write_pcap

pytestmark = [pytest.mark.jit, pytest.mark.dpdk]


def run(args, io_kind="dpdk"):
    return run_pynf(args, io_kind)


def sub(args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "pynf.cli.main", "run", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kw)


def test_same_output_as_mem(tmp_path):
    frames = mixed_frames(random.Random(3), 2500) + [bytes(3000), bytes(10)]
    pin = tmp_path / "in.pcap"
    write_pcap(pin, frames)
    outs = {}
    for kind in ("mem", "dpdk"):
        pout = tmp_path / f"out_{kind}.pcap"
        rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--pcap-in", str(pin), "--pcap-out", str(pout)], kind)
        assert rc == 0, err
        assert rep["io"] == kind and rep["rx"] == len(frames) and conserved(rep)
        assert rep.get("mbufs_in_use", 0) == 0 and rep.get("buffers_in_use", 0) == 0
        c = pcap.read(str(pout))
        outs[kind] = ([c.frame(i) for i in range(len(c))], rep["drops"])
    assert outs["mem"] == outs["dpdk"]
    assert outs["dpdk"][1]["oversize"] == 1 and outs["dpdk"][1]["runt"] == 1


def test_builtin_traffic_dpdk_default():
    rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--packets", "50000"])
    assert rc == 0, err
    assert rep["io"] == "dpdk" and rep["rx"] == 50000 and conserved(rep) and rep["mbufs_in_use"] == 0
    nic = rep["nic"]
    assert sum(p["ipackets"] for p in nic.values()) >= 50000
    assert sum(p["opackets"] for p in nic.values()) == rep["tx"]


def test_corpus_through_net_pcap(corpus_files, tmp_path):
    bad = []
    for path, frames in corpus_runs(corpus_files, tmp_path):
        rc, rep, err = run(["--rtc", "acl,lb,l3fwd", "--pcap-in", path])
        if rc != 0 or not conserved(rep) or rep["mbufs_in_use"] != 0 or rep["rx"] != frames:
            bad.append((os.path.basename(path), rc, err.strip()[-200:],
                        rep and (rep["rx"], rep["tx"], rep["drops"], rep["mbufs_in_use"])))
    assert not bad, bad[:5]


def test_two_queues_keep_each_flow_on_one_replica():
    from pynf.io import feed
    from pynf.io.dpdk import backend as dpdk
    from pynf.nf.context import RunContext
    from pynf.runtime.chain import parse
    from pynf.runtime.options import Options
    from pynf.runtime.report import report
    from pynf.runtime.runtime import Runtime
    plan = parse(rtc="acl,lb,l3fwd", cores=2)
    opts = Options(io="dpdk", packets=30000, cores=[0, 1], flows=200)
    rt = Runtime(plan, RunContext(flows=200), opts, io=dpdk.DpdkIO(feed.builtin(200, 64, 1, 2), opts))
    rt.build()
    rt.compile()
    rt.run()
    rt.close()
    rep = report(rt)
    assert conserved(rep) and rep["rx"] == 30000 and rep["mbufs_in_use"] == 0
    keys = []
    for w in rt.workers:
        used = conntrack.entries(w.states[1].flows, w.states[1].ctl)
        keys.append({(int(a), int(b)) for a, b in used[used[:, 1] != 0][:, :2]})
        assert w.ws[0] > 0
    assert keys[0] and keys[1] and not keys[0] & keys[1]


def test_dpdk_missing_falls_back_or_fails(monkeypatch):
    from pynf import shim
    monkeypatch.setattr(shim, "DPDK_MISSING", "libdpdk not found (simulated)")
    rc, _, err = run(["--rtc", "acl", "--packets", "10"])
    assert rc == 1 and "--io dpdk" in err and "DPDK" in err and "--io mem" in err
    out, errs = io.StringIO(), io.StringIO()
    rc = cli.main(["run", "--rtc", "acl", "--packets", "100", "--json", "--quiet"], out, errs)
    assert rc == 0 and json.loads(out.getvalue())["io"] == "mem" and "in-memory I/O" in errs.getvalue()


@pytest.mark.parametrize("eal,msg", [
    (["--definitely-not-an-eal-flag"], "EAL init failed"),
    (["--no-huge", "--no-pci", "-m", "256", "--no-shconf", "--no-telemetry"], "created no ethdev ports"),
    (["--no-huge", "--no-pci", "-m", "8", "--no-shconf", "--no-telemetry", "--vdev=net_null0"],
     "cannot create a mempool"),
])
def test_eal_and_port_errors_exit_1(eal, msg):
    r = sub(["--rtc", "acl", "--packets", "100", "--quiet", "--", *eal])
    assert r.returncode == 1 and msg in r.stderr, r.stderr


def test_port_without_rss_gets_software_dispatch(tmp_path):
    """--cores 2 on a one-queue net_pcap: a dispatch core spreads flows by hash."""
    frames = mixed_frames(random.Random(1), 3000)
    p, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(p, frames)
    r = sub(["--rtc", "acl,lb,l3fwd", "--cores", "2", "--packets", "3000", "--json", "--quiet", "--",
             "--no-huge", "--no-pci", "-m", "256", "--no-shconf", "--no-telemetry",
             f"--vdev=net_pcap0,rx_pcap={p}", f"--vdev=net_pcap1,tx_pcap={out}"])
    assert r.returncode == 0, r.stderr
    assert "has no RSS" in r.stderr and "dispatch stage" in r.stderr and "gathers" in r.stderr
    rep = json.loads(r.stdout)
    assert conserved(rep) and rep["rx"] == 3000 and rep["mbufs_in_use"] == 0
    assert [s["nfs"] for s in rep["stages"]] == [[], ["acl", "lb", "l3fwd"], []]
    assert rep["stages"][1]["replicas"] == 2 and len(pcap.read(str(out))) == rep["tx"]


def test_user_vdevs_pass_through(tmp_path):
    frames = mixed_frames(random.Random(5), 500)
    pin, pout = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(pin, frames)
    r = sub(["--rtc", "acl,lb,l3fwd", "--packets", "500", "--json", "--quiet", "--", "--no-huge", "--no-pci",
             "-m", "256", "--no-shconf", "--no-telemetry", f"--vdev=net_pcap0,rx_pcap={pin}",
             f"--vdev=net_pcap1,tx_pcap={pout}"])
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["rx"] == 500 and conserved(rep) and rep["mbufs_in_use"] == 0
    assert len(pcap.read(str(pout))) == rep["tx"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("io_kind", ["mem", "dpdk"])
def test_signal_stops_within_a_second(sig, io_kind):
    p = subprocess.Popen([sys.executable, "-m", "pynf.cli.main", "run", "--pl", "acl,lb,l3fwd", "--io", io_kind,
                          "--duration", "60", "--json", "--quiet"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    line = ""
    while "running" not in line and time.time() < deadline:
        line = p.stderr.readline()
    time.sleep(1.0)
    t0 = time.time()
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    took = time.time() - t0
    assert p.returncode == 0, err
    rep = json.loads(out)
    assert conserved(rep) and rep["rx"] > 0
    assert rep.get("mbufs_in_use", 0) == 0 and rep.get("buffers_in_use", 0) == 0
    assert took < 1.5, f"stopped {took:.2f} s after the signal"
