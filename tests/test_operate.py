"""Operating a running pynf: `pynf ctl` over the control socket, /metrics,
SIGHUP reload (docs/design.md, "Operate").

The end-to-end tests run `pynf run` as a process with built-in traffic at
full speed, change it while it runs, and check the final report: every
packet received is sent or counted as a drop, each change shows in the
next `stats`, and the metrics agree with the report."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from pynf.control.metrics import scrape
from pynf.control.server import ask
from pynf.errors import UsageError
from pynf.tables import rules as aclrules

from support import ROOT, conserved

IO_KINDS = ["mem", pytest.param("dpdk", marks=pytest.mark.dpdk)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """`pynf run ... --control SOCK --metrics PORT --json` as a process."""

    def __init__(self, tmp_path, args):
        self.sock = str(tmp_path / "pynf.sock")
        self.port = free_port()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "pynf.cli.main", "run", *args, "--control", self.sock,
             "--metrics", str(self.port), "--json", "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while not os.path.exists(self.sock):
            if self.p.poll() is not None or time.time() > deadline:
                out, err = self.p.communicate(timeout=30)
                raise AssertionError(f"pynf did not start: {err}")
            time.sleep(0.1)
        time.sleep(0.5)             # traffic flowing

    def ctl(self, *words):
        rc, out, err = ask(self.sock, list(words))
        assert rc == 0, err
        return out

    def stats(self):
        return json.loads(self.ctl("stats", "--json"))

    def metrics(self):
        return scrape("127.0.0.1", self.port)           # (prometheus_client's parser)

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        out, err = self.p.communicate(timeout=60)
        assert self.p.returncode == 0, err
        return json.loads(out), err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


def chained(rep, chain):
    """Per-NF counts add up along the chain: each packet counted once per NF."""
    prev = rep["rx"]
    for name in chain:
        nf = rep["nfs"][name]
        assert nf["rx"] == prev, (name, nf, prev)
        assert nf["rx"] >= nf["tx"] + nf["drops"]
        prev = nf["tx"]
    return True


@pytest.mark.jit
@pytest.mark.slow
@pytest.mark.parametrize("io_kind", IO_KINDS)
def test_changes_while_running(tmp_path, io_kind):
    r = Running(tmp_path, ["--rtc", "acl,lb,l3fwd", "--io", io_kind, "--duration", "120"])
    try:
        s0 = r.stats()
        assert s0["rx"] > 0 and s0["rates"]["rx_pps"] > 0
        assert s0["nfs"]["acl"]["state"]["rules"] == 32

        # a route change: delete one backend's route (the LB sends to the
        # backends, l3fwd routes them): its packets drop as no_route
        victim = "192.168.0.3"
        assert victim in r.ctl("route", "list").split()
        assert "no_route" not in s0["drops"]
        r.ctl("route", "del", victim)
        assert victim not in r.ctl("route", "list").split()
        time.sleep(0.3)
        s1 = r.stats()
        assert s1["drops"].get("no_route", 0) > 0
        r.ctl("route", "add", victim, "0")
        nr = r.stats()["drops"]["no_route"]
        time.sleep(0.3)
        assert r.stats()["drops"]["no_route"] == nr         # the route is back

        # an ACL reload: allow everything, the acl drops stop rising
        rules = tmp_path / "allow.txt"
        rules.write_text("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow\n")
        assert "loaded 1 rules" in r.ctl("acl", "load", str(rules))
        a1 = r.stats()
        assert a1["nfs"]["acl"]["state"]["rules"] == 1
        time.sleep(0.3)
        a2 = r.stats()
        assert a2["drops"]["acl"] == a1["drops"]["acl"] and a2["rx"] > a1["rx"]
        assert "allow" in r.ctl("acl", "list")

        # a backend drain: no new flow goes to it (the old ones are flushed)
        r.ctl("lb", "backend", "drain", "*", "192.168.0.1:8080")
        assert "192.168.0.1:8080 draining" in r.ctl("lb", "services")
        r.ctl("lb", "flush")
        time.sleep(0.3)
        flows = r.ctl("lb", "flows", "--limit", "5000")
        assert "=> 192.168." in flows and "=> 192.168.0.1:8080" not in flows
        st = r.stats()["nfs"]["lb"]["state"]
        assert st["backends_draining"] == 1 and st["backends_active"] == 7

        # a live setting, and one that may not change live
        assert "30.0" in r.ctl("set", "lb.udp_timeout=30")
        rc, out, err = ask(r.sock, ["set", "lb.capacity=8"])
        assert rc == 2 and "not a setting that changes while running" in err

        # bad commands: one line, exit 2, nothing changed
        before = r.ctl("route", "list")
        for words in (["route", "add", "1.2.3", "0"], ["route", "add", "10.9.9.9", "70000"],
                      ["route", "del", "203.0.113.7"], ["acl", "load", str(tmp_path / "missing.txt")],
                      ["lb", "backend", "drain", "*", "10.0.0.1:1"], ["frobnicate"], ["scale", "0", "2"]):
            rc, out, err = ask(r.sock, words)
            assert rc == 2 and err.count("\n") == 0 and err, (words, err)
        assert r.ctl("route", "list") == before
        assert r.stats()["nfs"]["acl"]["state"]["rules"] == 1

        # the CLI client, as an operator types it
        p = subprocess.run([sys.executable, "-m", "pynf.cli.main", "ctl", "--socket", r.sock, "stats"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 0 and "rx" in p.stdout and "last" in p.stdout

        # metrics: scraped twice, counters rise, and agree with stats taken around them
        st1 = r.stats()
        m1 = r.metrics()
        time.sleep(0.3)
        m2 = r.metrics()
        st2 = r.stats()
        counters = [k for k in m1 if k[0].endswith("_total")]
        assert len(counters) > 20
        assert all(m2.get(k, 0) >= v for k, v in ((k, m1[k]) for k in counters)), \
            [k for k in counters if m2.get(k, 0) < m1[k]]
        rx = m2[("pynf_rx_packets_total", ())]
        assert st1["rx"] <= m1[("pynf_rx_packets_total", ())] <= rx <= st2["rx"]
        assert m2[("pynf_drops_total", (("reason", "acl"),))] == st2["drops"]["acl"]   # frozen
        assert m2[("pynf_lb_flows", ())] > 0
        assert m2[("pynf_lb_flow_capacity", ())] <= m2[("pynf_lb_flow_max_entries", ())]
        assert ("pynf_lb_resizes_total", ()) in m2
        assert ("pynf_nf_cycles_total", (("nf", "lb"),)) in m2
        assert m2[("pynf_flow_cache_replicas_on", (("stage", "0"),))] in (0, 1)    # a gauge: auto turns it off
        port_rx = sum(v for (n, lab), v in m2.items() if n == "pynf_port_rx_packets_total")
        assert port_rx == pytest.approx(rx, rel=0.02)
    except BaseException:
        r.kill()
        raise
    rep, err = r.stop()
    assert conserved(rep), rep
    assert chained(rep, ["acl", "lb", "l3fwd"])
    assert rep["rx"] >= st2["rx"] and rep["drops"]["acl"] == st2["drops"]["acl"]
    assert rep.get("mbufs_in_use", 0) == 0 and rep.get("buffers_in_use", 0) == 0
    assert not os.path.exists(r.sock)


@pytest.mark.jit
@pytest.mark.slow
def test_sighup_reloads_and_refuses_a_bad_file(tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("@0.0.0.0/0 0.0.0.0/0 0 : 65535 23 : 23 0x06/0xff deny\n")
    r = Running(tmp_path, ["--rtc", "acl,l3fwd", "--io", "mem", "--duration", "120",
                           "--acl-rules", str(rules)])
    try:
        assert r.stats()["nfs"]["acl"]["state"]["rules"] == 1
        rules.write_text("@0.0.0.0/0 0.0.0.0/0 0 : 65535 23 : 23 0x06/0xff deny\n"
                         "@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x11/0xff deny\n")
        r.p.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while r.stats()["nfs"]["acl"]["state"]["rules"] != 2 and time.time() < deadline:
            time.sleep(0.1)
        assert r.stats()["nfs"]["acl"]["state"]["rules"] == 2
        rules.write_text("this is not a rule\n")
        r.p.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert r.stats()["nfs"]["acl"]["state"]["rules"] == 2       # the running set stays
        assert "deny" in r.ctl("acl", "list")
    except BaseException:
        r.kill()
        raise
    rep, err = r.stop(signal.SIGINT)
    assert conserved(rep)
    assert "reload refused" in err and "rules.txt:1" in err


@pytest.mark.jit
def test_two_stop_signals_still_report(tmp_path):
    r = Running(tmp_path, ["--pl", "acl,lb,l3fwd", "--io", "mem", "--duration", "120"])
    try:
        r.p.send_signal(signal.SIGINT)
        time.sleep(0.05)
        r.p.send_signal(signal.SIGINT)
    except BaseException:
        r.kill()
        raise
    out, err = r.p.communicate(timeout=60)
    assert r.p.returncode == 0, err
    assert conserved(json.loads(out))


def test_ctl_without_a_running_pynf(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pynf.cli.main", "ctl", "--socket", str(tmp_path / "none.sock"),
                        "stats"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "no pynf is running" in p.stderr


# ---- the control-path functions, without a running chain (also under NUMBA_DISABLE_JIT) ----

def test_rule_text_parses_back():
    for text in ("@10.0.0.0/8 192.168.1.0/24 0 : 1023 80 : 80 0x06/0xff deny",
                 "@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow"):
        r = aclrules.parse_rule(text)
        assert aclrules.parse_rule(r.text()) == r


def test_lb_services_added_and_removed_keep_others():
    from pynf.nfs import lb
    cfg = lb.LbConfig(services=((0x0A000001, 80, ((0xC0A80101, 80), (0xC0A80102, 80))),))
    st = lb.make_state(cfg)
    before = st.maglev[0].copy()
    lb.add_service(st, 0x0A000002, 443, [(0xC0A80201, 443), (0xC0A80202, 443)])
    assert [s[:2] for s in lb.services(st)] == [(0x0A000001, 80), (0x0A000002, 443)]
    assert (st.maglev[0] == before).all()
    with pytest.raises(ValueError, match="exists"):
        lb.add_service(st, 0x0A000002, 443, [(1, 1)])
    lb.del_service(st, (0x0A000002, 443))
    assert [s[:2] for s in lb.services(st)] == [(0x0A000001, 80)]
    assert np.count_nonzero(st.be[:, lb.BE_FLAG] != lb.BE_FREE) == 2
    for k in range(lb.SVC_ROOM):            # the freed row is reused; then the rows run out
        lb.add_service(st, 0x0B000000 + k, 80, [(0xC0A80300 + k, 80)])
    with pytest.raises(ValueError, match="no room"):
        lb.add_service(st, 0x0C000000, 80, [(1, 80)])


def test_lb_dry_run_leaves_the_state_alone():
    from pynf.nfs import lb
    from pynf.nfs.lb.control import _shadow
    st = lb.make_state(lb.LbConfig(services=((0x0A000001, 80, ((0xC0A80101, 80),)),)))
    sh = _shadow(st)
    lb.add_service(sh, 0x0A000002, 443, [(0xC0A80201, 443)])
    assert len(lb.services(st)) == 1 and len(lb.services(sh)) == 2


def test_route_lines_parse_with_unicode_digits_refused(tmp_path):
    from pynf.errors import ConfigError
    from pynf.nfs import l3fwd
    assert l3fwd.parse_route("10.0.0.0/8 1 10.1.1.1") == ("prefix", 0x0A000000, 8, 1, 0x0A010101)
    assert l3fwd.parse_route("10.0.0.1 3") == ("exact", 0x0A000001, 3)
    for bad in ("1.2.3.\u00b2 0", "1.2.3.4 \u00b2", "1.2.3.0/2\u00b2 0"):
        with pytest.raises(ValueError):
            l3fwd.parse_route(bad)
        f = tmp_path / "r.txt"
        f.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="r.txt:1"):
            l3fwd.parse_routes(str(f))


@pytest.mark.jit
@pytest.mark.slow
@pytest.mark.parametrize("io_kind", IO_KINDS)
def test_scale_a_stage_while_a_paced_replay_runs(tmp_path, io_kind):
    """`scale 1 2` then `scale 1 1` during a paced replay: the same packets
    leave as without scaling, in order within each flow, each flow to one
    backend, every packet accounted for."""
    import struct

    from pynf.io import pcap

    from support import flow_frames, run_pynf, write_pcap
    frames = flow_frames(nflows=120, per_flow=40, seed=5)
    pin = tmp_path / "in.pcap"
    write_pcap(pin, frames)
    chain = ["--stages", "nop|acl,lb,l3fwd", "--pcap-in", str(pin), "--io", io_kind]
    base_out = tmp_path / "base.pcap"
    rc, base, err = run_pynf([*chain, "--pcap-out", str(base_out)], io_kind)
    assert rc == 0, err
    out = tmp_path / "scaled.pcap"
    r = Running(tmp_path, [*chain, "--pcap-out", str(out), "--pps", "1500", "--scale-max", "2"])
    try:
        said = []
        for target, after in ((2, 1500), (1, 3500)):
            while r.stats()["rx"] < after:
                time.sleep(0.05)
            said.append(r.ctl("scale", "1", str(target)))
            assert r.stats()["stages"][1]["replicas"] == target
        rep, err = r.p.communicate(timeout=120)[0], None
        rep = json.loads(rep)
    except BaseException:
        r.kill()
        raise
    assert "1 -> 2 replica(s)" in said[0] and "2 -> 1 replica(s)" in said[1]
    assert rep["rx"] == len(frames) and conserved(rep)
    assert rep.get("buffers_in_use", 0) == 0 and rep.get("mbufs_in_use", 0) == 0
    cap = pcap.read(str(out))
    # in the order they were sent (each replica's capture is written in
    # chunks: a moved flow's packets are in two of them)
    got = [cap.frame(i) for i in sorted(range(len(cap)), key=lambda i: cap.ts_ns[i])]
    want = [pcap.read(str(base_out)).frame(i) for i in range(len(pcap.read(str(base_out))))]
    assert sorted(got) == sorted(want)                  # the same packets
    ids, backend = {}, {}
    for f in got:
        key = (f[26:30], f[34:36], f[23])               # src, sport, proto: no NF rewrites them
        ids.setdefault(key, []).append(struct.unpack("!H", f[18:20])[0])
        backend.setdefault(key, set()).add((f[30:34], f[36:38]))
    assert all(v == sorted(v) for v in ids.values())    # per-flow order kept
    assert all(len(v) == 1 for v in backend.values())   # one backend per flow


def test_lb_load_makes_the_services_the_files(tmp_path):
    """`lb load`: a backend the file drops goes, a draining one it lists is
    active again, new backends and services come; the config follows."""
    from pynf.control.commands import NFControl
    from pynf.nf import load
    from pynf.nfs import lb
    cfg = lb.LbConfig(services=((0x0A000001, 80, ((0xC0A80101, 80), (0xC0A80102, 80))),))
    st = lb.make_state(cfg)
    lb.drain_backend(st, (0xC0A80102, 80), (0x0A000001, 80))

    class Mail:                         # what pynf.control.commands.NFControl uses of a Runtime
        def states(self, name):
            return [st]

        def control(self, name, fn):
            fn(st)

    class Rt:
        specs, configs, mail = [[load("lb")]], [[cfg]], Mail()
    ctl = NFControl(Rt(), "lb")
    verb = next(v for v in ctl.spec.verbs if v.words == "lb load")
    f = tmp_path / "services.txt"
    f.write_text("10.0.0.1:80 192.168.1.2:80 192.168.1.3:80\n10.0.0.2:53 192.168.2.1:53\n")
    change = verb.run(ctl, [str(f)])
    assert len(lb.services(st)) == 1            # checked and built, not applied yet
    ctl.apply(change)
    assert lb.services(st) == [(0x0A000001, 80, [(0xC0A80103, 80, "active"), (0xC0A80102, 80, "active")]),
                               (0x0A000002, 53, [(0xC0A80201, 53, "active")])]
    assert ctl.config.services[1] == (0x0A000002, 53, ((0xC0A80201, 53),))
    f.write_text("192.168.1.2:80\n")            # a paper-mode file for a services-mode lb
    with pytest.raises(UsageError, match="mode"):
        verb.run(ctl, [str(f)])
