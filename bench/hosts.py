"""iperf3 TCP through pynf against the Linux kernel and DPDK's testpmd on
the same veths.

    python -m bench.hosts [--seconds 5] [--chains "l3fwd;acl,lb,l3fwd"]

Two network namespaces (client 10.92.1.2, server 10.92.2.2), each joined
to the root namespace by a veth pair (checksum offload off on both ends, so
the veths carry real checksums). The same pair of root-side interfaces is
routed in turn by:
- the kernel (addresses on them, ip_forward on);
- dpdk-testpmd (Debian's dpdk-dev), mac forwarding between two
  net_af_packet ports with the same ring size pynf uses, and between two
  net_af_xdp ports (to see whether pynf should use af_xdp); it does no ARP,
  so the hosts get static neighbour entries for this case only;
- `pynf run --rtc CHAIN --iface ...` (addresses on pynf's ports). A chain
  with lb gets a service 10.92.9.9:5201 -> the server, and iperf3 goes to
  the service address (reverse NAT on every reply).
Prints Gbit/s and TCP retransmits per case, and per pynf case whether the
report conserves packets. Needs root.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = {"c": "pynfbc", "s": "pynfbs"}
NET = {"c": ("10.92.1.1/24", "10.92.1.2/24"), "s": ("10.92.2.1/24", "10.92.2.2/24")}


def sh(*cmd, ns=None, check=True, timeout=60):
    if ns:
        cmd = ("ip", "netns", "exec", NS[ns], *cmd)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def up():
    down()
    for k in NS:
        sh("ip", "netns", "add", NS[k])
        sh("ip", "link", "add", f"pb{k}", "type", "veth", "peer", "name", "eth0", "netns", NS[k])
        sh("sysctl", "-qw", f"net.ipv6.conf.pb{k}.disable_ipv6=1")
        sh("ip", "link", "set", f"pb{k}", "up")
        sh("ethtool", "-K", f"pb{k}", "tx", "off")
        for c in (("ip", "link", "set", "lo", "up"), ("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"),
                  ("ip", "addr", "add", NET[k][1], "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                  ("ethtool", "-K", "eth0", "tx", "off"),
                  ("ip", "route", "add", "default", "via", NET[k][0].split("/")[0])):
            sh(*c, ns=k)


def down():
    for k in NS:
        subprocess.run(["ip", "netns", "del", NS[k]], capture_output=True)
        subprocess.run(["ip", "link", "del", f"pb{k}"], capture_output=True)


VIP = "10.92.9.9"


def iperf(seconds, dst=None):
    srv = subprocess.Popen(["ip", "netns", "exec", NS["s"], "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        r = sh("iperf3", "-c", dst or NET["s"][1].split("/")[0], "-t", str(seconds), "-J", ns="c",
               check=False, timeout=seconds + 30)
    finally:
        srv.kill()
    try:
        res = json.loads(r.stdout)
        s = res["end"]["sum_sent"]
        return round(res["end"]["sum_received"]["bits_per_second"] / 1e9, 3), s.get("retransmits")
    except (ValueError, KeyError):
        return None, None


def kernel(seconds):
    fwd = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    for k in NS:
        sh("ip", "addr", "add", NET[k][0], "dev", f"pb{k}")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    try:
        return iperf(seconds)
    finally:
        sh("sysctl", "-qw", f"net.ipv4.ip_forward={fwd}")
        for k in NS:
            sh("ip", "addr", "flush", "dev", f"pb{k}")
        for k in NS:     # the hosts' ARP caches still hold the kernel's answers: forget them
            sh("ip", "neigh", "flush", "all", ns=k)


def mac_of(dev, ns=None):
    return sh("ip", "-br", "link", "show", dev, ns=ns).stdout.split()[2]


def testpmd(seconds, driver="af_packet"):
    """testpmd mac-forwarding port 0 (client side) <-> port 1 (server side);
    --eth-peer=N,MAC names the host on port N."""
    peers = {"c": mac_of("eth0", "c"), "s": mac_of("eth0", "s")}
    for k in NS:
        sh("ip", "neigh", "replace", NET[k][0].split("/")[0], "lladdr", mac_of(f"pb{k}"), "dev", "eth0",
           ns=k)
    cmd = ["dpdk-testpmd", "--no-huge", "--no-pci", "-m", "1024", "--no-shconf", "-l", "0,1",
           "--log-level=4"]
    for n, k in enumerate(NS):
        cmd.append(f"--vdev=net_af_packet{n},iface=pb{k},qdisc_bypass=1,framecnt=8192"
                   if driver == "af_packet" else f"--vdev=net_af_xdp{n},iface=pb{k}")
    cmd += ["--", "--forward-mode=mac", f"--eth-peer=0,{peers['c']}", f"--eth-peer=1,{peers['s']}",
            "--stats-period=1", "--auto-start"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    try:
        time.sleep(2)
        return iperf(seconds)
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
        for k in NS:
            sh("ip", "neigh", "flush", "all", ns=k)


def pynf(chain, seconds, driver="af_packet", tmp="/tmp/pynf-bench-hosts-backends.txt", extra=(), flood=None):
    """iperf3 through pynf; with flood (an hping3 interval, e.g. u100), a
    flood of SYNs from spoofed sources to the service all the while."""
    pynf_bin = os.path.join(ROOT, ".venv", "bin", "pynf")
    cmd = [pynf_bin, "run", "--rtc", chain, "--json", "--quiet", "--iface-driver", driver, *extra]
    dst = None
    if "lb" in chain.split(","):
        with open(tmp, "w") as f:
            f.write(f"{VIP}:5201 {NET['s'][1].split('/')[0]}:5201\n")
        cmd += ["--backends", tmp]
        dst = VIP
    for k in NS:
        cmd += ["--iface", f"pb{k}={NET[k][0]}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:     # compiled and forwarding?
        if sh("ping", "-c", "1", "-W", "1", NET["s"][1].split("/")[0], ns="c", check=False).returncode == 0:
            break
    hp = None
    if flood:
        hp = subprocess.Popen(["ip", "netns", "exec", NS["c"], "hping3", "-q", "-S", "-p", "5201", "--rand-source",
                               *(["--flood"] if flood == "flood" else ["-i", flood]), dst or NET["s"][1].split("/")[0]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        res = iperf(seconds, dst)
    except subprocess.TimeoutExpired:
        res = (None, None)              # iperf3 never finished
    finally:
        if hp is not None:
            hp.kill()
            hp.wait()
        p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    rep = json.loads(out) if out.strip() else {}
    return res, rep, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--chains", default="l3fwd;acl,lb,l3fwd", help="';'-separated chains")
    ap.add_argument("--testpmd", default="af_packet,af_xdp", help="testpmd's port drivers to run")
    ap.add_argument("--pynf", default="af_packet,af_xdp", help="pynf's --iface-driver values to run")
    ap.add_argument("--floods", help="','-separated hping3 intervals (none, u100, u20, flood): pynf only, "
                    "iperf3 through the service during a SYN flood of spoofed sources at each")
    ap.add_argument("--set", action="append", default=[], help="an NF setting for pynf (as pynf run's)")
    a = ap.parse_args()
    if a.floods:
        up()
        try:
            flood_table(a)
        finally:
            down()
        return
    up()
    try:
        rows = [("kernel", *kernel(a.seconds))]
        if shutil.which("dpdk-testpmd"):
            for drv in a.testpmd.split(","):
                rows.append((f"dpdk-testpmd {drv} (mac fwd)", *testpmd(a.seconds, drv)))
        for chain in a.chains.split(";"):
            for drv in a.pynf.split(","):
                (gbps, rtx), rep, err = pynf(chain, a.seconds, drv)
                ok = rep and rep["rx"] == rep["tx"] + sum(rep["drops"].values())
                rows.append((f"pynf {drv} --rtc {chain}", gbps, rtx))
                print(f"# pynf {drv} {chain}: rx {rep.get('rx')} tx {rep.get('tx')} drops "
                      f"{rep.get('drops')} conserved {ok} mbufs_in_use {rep.get('mbufs_in_use')}",
                      file=sys.stderr)
        print(f"{'case':28s} {'Gbit/s':>8s} {'retransmits':>12s}")
        for name, g, r in rows:
            print(f"{name:28s} {g!s:>8s} {r!s:>12s}")
    finally:
        down()


def flood_table(a):
    extra = [x for kv in a.set for x in ("--set", kv)]
    print("| flood (hping3 -i) | SYNs a second reaching pynf | iperf3 Gbit/s | retransmits | lb new flows "
          "| evicted | half-open at the end | table entries | conserved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for flood in a.floods.split(","):
        f = None if flood == "none" else flood
        (gbps, rtx), rep, err = pynf("acl,lb,l3fwd", a.seconds, "af_packet", extra=extra, flood=f)
        lb = rep.get("nfs", {}).get("lb", {}).get("state", {})
        ok = rep and rep["rx"] == rep["tx"] + sum(rep["drops"].values())
        rate = lb.get("new_total", 0) / (a.seconds + 0.5)
        print(f"| {flood} | {rate:,.0f} | {gbps} | {rtx} | {lb.get('new_total')} | {lb.get('evicted_total')} | "
              f"{lb.get('half_open')} | {lb.get('flow_capacity')} | {ok} |")


if __name__ == "__main__":
    main()
