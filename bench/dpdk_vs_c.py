"""pynf against a hand-written C chain on DPDK, same vdevs, same pcap, same run.

    .venv/bin/python -m bench.dpdk_vs_c [--flows 1000,100000,1000000] [--duration 5] [--rounds 3]

Builds bench/cref/chain.c (rte_acl + rte_hash bulk lookups, one core) with
gcc and pkg-config, writes pynf's default configuration for the built-in
flows to files (rules, routes, backends) that both read, writes the built-in
traffic (64-byte frames) to a pcap, and runs both on
`--vdev=net_pcap0,rx_pcap=...,infinite_rx=1 --vdev=net_null0`, alternating
C, pynf with its flow cache off, on and auto, and pynf with *default
settings* (no --flows, no --flow-cache: what a user replaying a capture
of that many flows gets), `--rounds` times.
Also the I/O ceiling: `pynf --rtc nop` against
the C loop's --fwd-only. Prints a markdown table (medians; Mpps from packets
received over the run, cycles/packet = TSC cycles spent on non-empty bursts
per packet, which is what both report).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_cref():
    out = os.path.join(ROOT, "bench", "cref", "build", "chain")
    src = os.path.join(ROOT, "bench", "cref", "chain.c")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["gcc", "-O3", "-Wall", "-o", out, src, *flags], check=True)
    return out


def write_inputs(d, flows, seed=1):
    sys.path.insert(0, ROOT)
    from pynf.errors import format_ipv4
    from pynf.io import feed, pcap
    from pynf.nf.context import RunContext
    from pynf.nfs import acl, l3fwd, lb
    ctx = RunContext(flows=flows, seed=seed, n_ports=1)
    files = {k: os.path.join(d, k + ".txt") for k in ("rules", "routes", "backends")}
    with open(files["rules"], "w") as f:
        f.write("\n".join(acl.default_rules(seed)) + "\n")
    with open(files["routes"], "w") as f:
        for ip, port in l3fwd.L3fwdConfig.from_context(ctx).routes:
            f.write(f"{format_ipv4(ip)} {port}\n")
    with open(files["backends"], "w") as f:
        for ip, port in lb.LbConfig().backends:
            f.write(f"{format_ipv4(ip)}:{port}\n")
    fd = feed.builtin(flows, 64, seed, 1)
    path = os.path.join(d, "traffic.pcap")
    w = pcap.Writer(path)
    w.write_templates(fd.arena, fd.t_off, fd.t_len, fd.t_copy, fd.seqs[0])
    w.close()
    files["pcap"] = path
    files["frames"] = len(fd.seqs[0])
    return files


def eal(files, mb):
    return ["--no-huge", "--no-pci", "-m", str(mb), "--no-shconf", "--no-telemetry", "-l", "0",
            "--log-level=4", f"--vdev=net_pcap0,rx_pcap={files['pcap']},infinite_rx=1", "--vdev=net_null0"]


def run_c(binary, files, flows, duration, fwd_only=False):
    mbufs = files["frames"] + 8192
    mb = int(mbufs * 5 / 1024) + 512
    cmd = [binary, *eal(files, mb), "--", "--rules", files["rules"], "--routes", files["routes"],
           "--backends", files["backends"], "--capacity", str(max(1024, 2 * flows)),
           "--duration", str(duration), "--mbufs", str(mbufs)] + (["--fwd-only"] if fwd_only else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"C chain failed: {r.stderr[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_pynf(files, flows, duration, chain="acl,lb,l3fwd", cache="on"):
    """pynf on the capture; flows and cache None: pynf's defaults (no
    --flows, no --flow-cache), as a user replaying it would run."""
    mb = int((files["frames"] + 65536) * 5 / 1024) + 512
    cmd = [sys.executable, "-m", "pynf.cli.main", "run", "--rtc", chain, "--io", "dpdk", "--compile", "fused",
           "--acl-rules", files["rules"], "--routes", files["routes"], "--backends", files["backends"],
           *(["--flow-cache", cache] if cache else []), *(["--flows", str(flows)] if flows else []),
           "--duration", str(duration), "--json", "--quiet", "--", *eal(files, mb)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"pynf failed: {r.stderr[-800:]}")
    return json.loads(r.stdout)


def _med(xs, k):
    return statistics.median(x[k] for x in xs)


def _print_defaults(defaults):
    print("With pynf's default settings (a capture of that many flows; no --flows, no --flow-cache):")
    print()
    print("| flows | C Mpps | pynf default Mpps | pynf / C | runs / C | lb flows created | lb evictions "
          "| lb table entries (resizes) | lb cycles/pkt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for flows, c, dflt in defaults:
        cm, dm = _med(c, "mpps"), _med(dflt, "mpps")
        ratios = " ".join(f"{x['mpps'] / y['mpps']:.2f}" for x, y in zip(dflt, c))
        lb = dflt[-1]["nfs"]["lb"]
        st = lb.get("state", {})
        print(f"| {flows:,} | {cm:.2f} | {dm:.2f} | {dm / cm:.2f}x | {ratios} | {st.get('new_total', '?')} | "
              f"{st.get('evicted_total', '?')} | {st.get('flow_capacity', '?')} ({st.get('resizes_total', '?')}) | "
              f"{lb['cycles_per_packet']} |")
    for flows, _c, dflt in defaults:
        per_nf = ", ".join(f"{k}: {v['cycles_per_packet']}" for k, v in dflt[-1]["nfs"].items())
        print(f"default {flows}: per NF cycles {{{per_nf}}}; flow cache "
              f"{[st.get('flow_cache') for st in dflt[-1]['stages']]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", default="1000,100000,1000000")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("default",), help="C and pynf with default settings only (and no "
                    "I/O ceiling): the quick look at what a user meets")
    a = ap.parse_args(argv)
    binary = build_cref()
    rows, defaults = [], []
    with tempfile.TemporaryDirectory() as d:
        for flows in [int(x) for x in a.flows.split(",")]:
            files = write_inputs(d, flows)
            every = a.only is None
            for cache in ("on", "off") if every else (None,):
                run_pynf(files, flows if every else None, 0.5, cache=cache)     # warm pynf's compile cache
            c, p, q, u, dflt = [], [], [], [], []
            for _ in range(a.rounds):
                c.append(run_c(binary, files, flows, a.duration))
                if every:
                    p.append(run_pynf(files, flows, a.duration, cache="off"))
                    q.append(run_pynf(files, flows, a.duration, cache="on"))
                    u.append(run_pynf(files, flows, a.duration, cache="auto"))
                dflt.append(run_pynf(files, None, a.duration, cache=None))
            if every:
                rows.append(("acl,lb,l3fwd", flows, c, p, q, u))
            defaults.append((flows, c, dflt))
        files = write_inputs(d, 1000)
        if not every:
            _print_defaults(defaults)
            return
        run_pynf(files, 1000, 0.5, "nop")
        c, p = [], []
        for _ in range(a.rounds):
            c.append(run_c(binary, files, 1000, a.duration, fwd_only=True))
            p.append(run_pynf(files, 1000, a.duration, "nop"))
        rows.append(("I/O ceiling: C rx->tx vs pynf nop", 1000, c, p, None, None))
    med = _med
    print("| chain | flows | C Mpps | C cycles/pkt | pynf Mpps, cache off | cycles/pkt | pynf / C "
          "| cache on | cycles/pkt | pynf / C | cache auto | pynf / C |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, flows, c, p, q, u in rows:
        cm, pm = med(c, "mpps"), med(p, "mpps")
        on = (f"{med(q, 'mpps'):.2f} | {med(q, 'cycles_per_packet'):.0f} | {med(q, 'mpps') / cm:.2f}x"
              if q else "- | - | -")
        auto = f"{med(u, 'mpps'):.2f} | {med(u, 'mpps') / cm:.2f}x" if u else "- | -"
        print(f"| {name} | {flows:,} | {cm:.2f} | {med(c, 'cycles_per_packet'):.0f} | {pm:.2f} | "
              f"{med(p, 'cycles_per_packet'):.0f} | {pm / cm:.2f}x | {on} | {auto} |")
    print()
    _print_defaults(defaults)
    print()
    for name, flows, c, p, q, u in rows:
        for label, runs in (("cache off", p), ("cache on", q), ("cache auto", u)):
            if not runs:
                continue
            per_nf = ", ".join(f"{k}: {v['cycles_per_packet']} ({v.get('cached', 0)} cached)"
                               for k, v in runs[-1]["nfs"].items())
            fc = [st.get("flow_cache") for st in runs[-1]["stages"]]
            print(f"{name} {flows}, pynf {label}: drops {runs[-1]['drops']}; per NF {{{per_nf}}}; "
                  f"flow cache {fc}; runs {[round(x['mpps'], 2) for x in runs]}")
        print(f"{name} {flows}: C drops {c[-1]['drops']}; runs {[round(x['mpps'], 2) for x in c]}")


if __name__ == "__main__":
    main()
