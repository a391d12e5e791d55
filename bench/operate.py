"""What operating pynf costs: cycles with and without the control socket and
a scrape a second, and the time from a `pynf ctl` command to "applied
everywhere".

    python -m bench.operate [--io mem] [--seconds 5] [--rounds 3] [--cores 1]

A/B: runs alternate between `--control off` (no socket, no metrics) and
`--control SOCK --metrics PORT` with a scrape of /metrics and a `ctl stats`
every second; the figure is the chain's cycles per packet (the stage's
TSC cycles, what the report's cycles_per_packet says) and Mpps of each run.
Latency: against one running pynf, each command is sent `--repeat` times
by the in-process client (pynf.control.server.ask), which returns once
every replica has applied it; we report the median and the 95th percentile.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from pynf.control.server import ask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN = "acl,lb,l3fwd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, sock=None, port=None):
    extra = ["--control", sock] if sock else ["--control", "off"]
    if port:
        extra += ["--metrics", str(port)]
    p = subprocess.Popen([sys.executable, "-m", "pynf.cli.main", "run", "--rtc", CHAIN, *args, *extra,
                          "--json", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    return p


def wait_socket(p, sock):
    while not os.path.exists(sock):
        if p.poll() is not None:
            raise SystemExit(p.stderr.read())
        time.sleep(0.05)


def one_run(args, watched, d):
    if not watched:
        p = start(args)
        out, err = p.communicate(timeout=600)
        return json.loads(out)
    sock, port = os.path.join(d, "ab.sock"), free_port()
    p = start(args, sock, port)
    wait_socket(p, sock)
    stop = threading.Event()

    def watch():
        while not stop.wait(1.0):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                ask(sock, ["stats", "--json"])
            except OSError:
                return
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out, err = p.communicate(timeout=600)
    stop.set()
    return json.loads(out)


def ab(io_kind, seconds, rounds, cores):
    args = ["--io", io_kind, "--duration", str(seconds), "--cores", str(cores)]
    rows = {False: [], True: []}
    with tempfile.TemporaryDirectory() as d:
        one_run(args[:-4] + ["--duration", "1"], False, d)         # compile cache warm
        for _ in range(rounds):
            for watched in (False, True):
                rep = one_run(args, watched, d)
                rows[watched].append((rep["cycles_per_packet"], rep["mpps"]))
    return rows


def latency(io_kind, repeat, cores):
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "lat.sock")
        rules = os.path.join(d, "rules.txt")
        with open(rules, "w") as f:
            for k in range(1000):
                f.write(f"@10.{k // 256}.{k % 256}.0/24 0.0.0.0/0 0 : 65535 {k} : {k} 0x06/0xff deny\n")
            f.write("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow\n")
        p = start(["--io", io_kind, "--duration", "600", "--cores", str(cores)], sock)
        wait_socket(p, sock)
        time.sleep(1.0)
        cmds = [("set lb.udp_timeout", lambda k: ["set", f"lb.udp_timeout={300 + k}"]),
                ("route add (exact)", lambda k: ["route", "add", f"10.200.{k // 256}.{k % 256}", "1"]),
                ("lb backend drain+add", None),
                ("acl load (1,001 rules)", lambda k: ["acl", "load", rules]),
                ("stats --json", lambda k: ["stats", "--json"])]
        out = []
        for name, make in cmds:
            times = []
            for k in range(repeat):
                if make is None:
                    words = (["lb", "backend", "drain", "*", "192.168.0.2:8080"] if k % 2 == 0
                             else ["lb", "backend", "add", "*", "192.168.0.2:8080"])
                else:
                    words = make(k)
                t0 = time.perf_counter()
                rc, text, err = ask(sock, words)
                times.append((time.perf_counter() - t0) * 1e3)
                if rc != 0:
                    raise SystemExit(f"{words}: {err}")
            times.sort()
            out.append((name, statistics.median(times), times[int(0.95 * (len(times) - 1))]))
        p.send_signal(signal.SIGTERM)
        rep = json.loads(p.communicate(timeout=60)[0])
        assert rep["rx"] == rep["tx"] + sum(rep["drops"].values())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--io", default="mem", choices=("mem", "dpdk"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--cores", type=int, default=1)
    a = ap.parse_args(argv)
    rows = ab(a.io, a.seconds, a.rounds, a.cores)
    print("| run | without control/metrics: cycles/pkt, Mpps | with socket + scrape 1/s: cycles/pkt, Mpps |")
    print("|---|---|---|")
    for k, (off, on) in enumerate(zip(rows[False], rows[True])):
        print(f"| {k + 1} | {off[0]:.1f}, {off[1]:.2f} | {on[0]:.1f}, {on[1]:.2f} |")
    moff = statistics.median(r[0] for r in rows[False])
    mon = statistics.median(r[0] for r in rows[True])
    print(f"| median | {moff:.1f} | {mon:.1f} ({mon / moff:.3f}x) |")
    print()
    print(f"| command ({a.cores} replica(s), {a.io}) | median ms | p95 ms |")
    print("|---|---|---|")
    for name, med, p95 in latency(a.io, a.repeat, a.cores):
        print(f"| {name} | {med:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
