"""Pipeline and hybrid benchmarks (issue 4), on this machine's cores.

    .venv/bin/python -m bench.pipeline [--io mem] [--duration 3] [--rounds 3]

1. Ring hop cost: busy cycles/packet (receive + stage + transmit, all
   workers) of `--stages "acl|l3fwd"` minus that of `--rtc acl,l3fwd`.
2. Per-NF cycles under RTC and under PL side by side (the paper's Table 2).
3. Throughput of `--rtc --cores 2`, `--pl` and two hybrids at 1K and 100K
   flows, 64 and 1024-byte frames; and each hybrid against its slowest
   stage run alone.
Medians of --rounds runs; every run is a fresh `pynf run` process.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pynf(args, io, duration):
    cmd = [sys.executable, "-m", "pynf.cli.main", "run", *args, "--io", io, "--duration", str(duration),
           "--json", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr[-500:]}")
    return json.loads(r.stdout)


def median_run(args, io, duration, rounds):
    runs = [pynf(args, io, duration) for _ in range(rounds)]
    runs.sort(key=lambda r: r["mpps"])
    return runs[len(runs) // 2], [r["mpps"] for r in runs]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="mem")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    io, d, n = a.io, a.duration, a.rounds

    print(f"## Ring hop cost ({io} I/O, 64-byte frames, 1K flows, burst 32)\n")
    print("| run | Mpps | busy cycles/pkt, all workers | per stage (busy / stage) |")
    print("|---|---|---|---|")
    hop = {}
    for name, args in [("--rtc acl,l3fwd", ["--rtc", "acl,l3fwd"]),
                       ('--stages "acl|l3fwd"', ["--stages", "acl|l3fwd"])]:
        rep, _ = median_run(args, io, d, n)
        hop[name] = rep["busy_cycles_per_packet"]
        per = "; ".join(f"{'+'.join(s['nfs'])} {s['busy_cycles_per_packet']} / {s['cycles_per_packet']}"
                        for s in rep["stages"])
        print(f"| `{name}` | {rep['mpps']:.2f} | {rep['busy_cycles_per_packet']} | {per} |")
    added = hop['--stages "acl|l3fwd"'] - hop["--rtc acl,l3fwd"]
    print(f"\nOne hop adds {added:.1f} busy cycles/packet "
          "(ring enqueue and dequeue, a second receive/transmit pass, a second parse, the "
          "packet's cache lines moving to the other core).\n")

    print(f"## Per-NF cycles/packet, RTC vs PL ({io}, 64 B, 1K flows)\n")
    rtc, _ = median_run(["--rtc", "acl,lb,l3fwd"], io, d, n)
    pl, _ = median_run(["--pl", "acl,lb,l3fwd"], io, d, n)
    hy, _ = median_run(["--stages", "acl|lb,l3fwd"], io, d, n)
    print("| NF | RTC | PL | PL - RTC | hybrid acl\\|lb,l3fwd | paper RTC | paper PL |")
    print("|---|---|---|---|---|---|---|")
    paper = {"acl": (10.2, 35.1), "lb": (8.3, 75.8), "l3fwd": (7.5, 59.2)}
    for nf in ("acl", "lb", "l3fwd"):
        r, p, h = rtc["nfs"][nf]["cycles_per_packet"], pl["nfs"][nf]["cycles_per_packet"], \
            hy["nfs"][nf]["cycles_per_packet"]
        print(f"| {nf} | {r} | {p} | {p - r:+.1f} | {h} | {paper[nf][0]} | {paper[nf][1]} |")
    print(f"| stage busy total | {rtc['busy_cycles_per_packet']} | {pl['busy_cycles_per_packet']} | "
          f"{pl['busy_cycles_per_packet'] - rtc['busy_cycles_per_packet']:+.1f} | "
          f"{hy['busy_cycles_per_packet']} | | |")
    print(f"\nPL here: {pl['workers']} workers on {pl['cores']} cores (oversubscribed: {pl['oversubscribed']}).\n")

    print(f"## Throughput on this machine ({io} I/O), Mpps (median of {n}; runs in brackets)\n")
    configs = [("rtc --cores 2", ["--rtc", "acl,lb,l3fwd", "--cores", "2"]),
               ("pl (3 workers)", ["--pl", "acl,lb,l3fwd"]),
               ("acl|lb,l3fwd", ["--stages", "acl|lb,l3fwd"]),
               ("acl,lb|l3fwd", ["--stages", "acl,lb|l3fwd"])]
    alone = {"acl|lb,l3fwd": ["acl", "lb,l3fwd"], "acl,lb|l3fwd": ["acl,lb", "l3fwd"]}
    print("| flows | frame | " + " | ".join(c for c, _ in configs) + " | slowest stage alone (hybrids) |")
    print("|---|---|" + "---|" * (len(configs) + 1))
    for flows in (1000, 100000):
        for size in (64, 1024):
            cells, slow = [], []
            extra = ["--flows", str(flows), "--frame-size", str(size)]
            got = {}
            for name, args in configs:
                rep, runs = median_run(args + extra, io, d, n)
                got[name] = rep["mpps"]
                cells.append(f"{rep['mpps']:.2f} ({', '.join(f'{x:.2f}' for x in runs)})")
            for name, parts in alone.items():
                m = min(median_run(["--rtc", p] + extra, io, d, n)[0]["mpps"] for p in parts)
                slow.append(f"{name}: {m:.2f} -> pipeline {got[name] / m:.2f}x")
            print(f"| {flows:,} | {size} | " + " | ".join(cells) + " | " + "; ".join(slow) + " |")


if __name__ == "__main__":
    main()
