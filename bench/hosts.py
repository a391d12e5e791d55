"""iperf3 TCP through pynf against the Linux kernel routing the same veths.

    python -m bench.hosts [--seconds 5] [--chains l3fwd,acl,lb,l3fwd]

Two network namespaces (client 10.92.1.2, server 10.92.2.2), each joined
to the root namespace by a veth pair (checksum offload off on both ends, so
the veths carry real checksums). The same pair of root-side interfaces is
first routed by the kernel (addresses on them, ip_forward on), then handed
to `pynf run --rtc CHAIN --iface ...` (addresses on pynf's ports instead).
Prints Gbit/s and TCP retransmits per case. Needs root.
"""
import argparse
import json
import os
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


def iperf(seconds):
    srv = subprocess.Popen(["ip", "netns", "exec", NS["s"], "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = sh("iperf3", "-c", NET["s"][1].split("/")[0], "-t", str(seconds), "-J", ns="c",
           check=False, timeout=seconds + 30)
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


def pynf(chain, seconds):
    pynf_bin = os.path.join(ROOT, ".venv", "bin", "pynf")
    cmd = [pynf_bin, "run", "--rtc", chain, "--json", "--quiet"]
    for k in NS:
        cmd += ["--iface", f"pb{k}={NET[k][0]}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        sh("ping", "-c", "1", "-W", "1", NET["s"][1].split("/")[0], ns="c", check=False)
        if sh("ping", "-c", "1", "-W", "1", NET["s"][1].split("/")[0], ns="c", check=False).returncode == 0:
            break
    res = iperf(seconds)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    rep = json.loads(out) if out.strip() else {}
    return res, rep, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--chains", default="l3fwd;acl,lb,l3fwd", help="';'-separated chains")
    a = ap.parse_args()
    up()
    try:
        rows = [("kernel", *kernel(a.seconds))]
        for chain in a.chains.split(";"):
            (gbps, rtx), rep, err = pynf(chain, a.seconds)
            ok = rep and rep["rx"] == rep["tx"] + sum(rep["drops"].values())
            rows.append((f"pynf --rtc {chain}", gbps, rtx))
            print(f"# pynf {chain}: rx {rep.get('rx')} tx {rep.get('tx')} drops {rep.get('drops')} "
                  f"conserved {ok}", file=sys.stderr)
        print(f"{'case':28s} {'Gbit/s':>8s} {'retransmits':>12s}")
        for name, g, r in rows:
            print(f"{name:28s} {g!s:>8s} {r!s:>12s}")
    finally:
        down()


if __name__ == "__main__":
    main()
