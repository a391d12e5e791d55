"""ACL rule-set size: start-up, peak memory and Mpps of pynf and of the C
chain (rte_acl) on the same generated rules and DPDK virtual devices.

    python -m bench.acl_scale [--rules 1000,10000,100000] [--pynf-max 10000] [--duration 3]

Rules come from bench.acl_rules (ClassBench-style); traffic, routes and
backends from bench.dpdk_vs_c (built-in flows, 1,024). Start-up: pynf's
report (process start to traffic); the C chain's wall time less the
traffic's duration. Memory: /usr/bin/time's maximum resident set.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench.acl_rules import rules as make_rules
from bench.dpdk_vs_c import ROOT, build_cref, eal, write_inputs


def _timed(cmd, timeout):
    r = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    t = [ln for ln in r.stderr.splitlines() if ln.startswith("TIME")]
    if r.returncode != 0 or not t:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr[-500:]}")
    wall, rss = t[-1].split()[1:]
    return r.stdout, float(wall), int(rss) // 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default="1000,10000,100000")
    ap.add_argument("--pynf-max", type=int, default=100000, help="largest set to give pynf")
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args(argv)
    binary = build_cref()
    d = tempfile.mkdtemp(prefix="pynf-acl-")
    files = write_inputs(d, 1024)
    print("| rules | C rte_acl: start s / RSS MB / Mpps | pynf on DPDK: start s / RSS MB / Mpps "
          "| pynf acl cycles/pkt |")
    print("|---|---|---|---|")
    for n in (int(x) for x in a.rules.split(",")):
        path = os.path.join(d, f"rules{n}.txt")
        with open(path, "w") as f:
            f.write("\n".join(make_rules(n)) + "\n")
        mbufs = files["frames"] + 8192
        out, wall, rss = _timed([binary, *eal(files, int(mbufs * 5 / 1024) + 512), "--", "--rules", path,
                                 "--routes", files["routes"], "--backends", files["backends"],
                                 "--capacity", "2048", "--duration", str(a.duration), "--mbufs", str(mbufs)],
                                900)
        c = json.loads(out.strip().splitlines()[-1])
        cell_c = f"{wall - a.duration:.2f} / {rss} / {c['mpps']:.2f}"
        cell_p, cyc = "(not run)", ""
        if n <= a.pynf_max:
            mb = int((files["frames"] + 65536) * 5 / 1024) + 512
            out, wall, rss = _timed([sys.executable, "-m", "pynf.cli.main", "run", "--rtc", "acl,lb,l3fwd",
                                     "--io", "dpdk", "--acl-rules", path, "--routes", files["routes"],
                                     "--backends", files["backends"], "--duration", str(a.duration),
                                     "--json", "--quiet", "--control", "off", "--", *eal(files, mb)], 1800)
            p = json.loads(out)
            cell_p = f"{p['startup_s']:.2f} / {rss} / {p['mpps']:.2f}"
            cyc = f"{p['nfs']['acl']['cycles_per_packet']:.1f}"
        print(f"| {n:,} | {cell_c} | {cell_p} | {cyc} |", flush=True)


if __name__ == "__main__":
    main()
