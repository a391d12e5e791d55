"""`pynf run`: run a chain (RTC, pipeline or hybrid) and report.

Exit status: 0 success, 2 bad usage or bad input files (one line on stderr
naming the flag, or FILE:LINE), 1 a runtime failure.
"""
import argparse
import json
import math
import os
import signal
import sys

from pynf.errors import ConfigError, RuntimeFailure, UsageError
from pynf.nf import NFError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _finite(text):
    """argparse type: a finite float ('nan' and 'inf' are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _int_list(text, flag):
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag}: want comma-separated numbers, not {text!r}") from None
    if not v or any(x < 0 for x in v):
        raise UsageError(f"{flag}: want non-negative numbers")
    return v


def build_parser():
    p = _Parser(prog="pynf", description="Network functions in Python, compiled by Numba.")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    r = sub.add_parser("run", help="run a chain of NFs")
    m = r.add_argument_group("execution model (one of)")
    m.add_argument("--rtc", metavar="CHAIN", help="run-to-completion: all NFs fused in one stage")
    m.add_argument("--pl", metavar="CHAIN", help="pipeline: one stage per NF, joined by rings")
    m.add_argument("--stages", metavar="SPEC", help='hybrid: "a|b,c" (| separates stages, , fuses)')
    r.add_argument("--replicas", metavar="N,N", help="replicas per stage (with --stages)")
    r.add_argument("--cores", type=int, metavar="N", help="cores to use (RTC: replicas)")
    r.add_argument("--duration", type=_finite, metavar="S", help="seconds to run (default 3 for built-in traffic)")
    r.add_argument("--packets", type=int, metavar="N", help="packets to receive, then stop")
    r.add_argument("--flows", type=int, default=1024, metavar="N", help="built-in traffic: flows (1024)")
    r.add_argument("--frame-size", type=int, default=64, metavar="B",
                   help="built-in traffic: frame bytes with FCS, 64..1518 (64)")
    r.add_argument("--rate", type=_finite, metavar="GBPS", help="built-in traffic: wire rate to pace to")
    r.add_argument("--seed", type=int, default=1, metavar="N", help="built-in traffic: seed (1)")
    r.add_argument("--pcap-in", metavar="FILE", help="replay this pcap instead of built-in traffic")
    r.add_argument("--pcap-out", metavar="FILE", help="write every transmitted packet here")
    r.add_argument("--iface", action="append", default=[], metavar="NAME[=IP/LEN]",
                   help="a Linux interface as a port (repeat; ports numbered in order); "
                        "=IP/LEN gives the port an address and a connected route")
    r.add_argument("--iface-driver", choices=("af_packet", "af_xdp", "auto"), default="af_packet",
                   help="DPDK driver for --iface ports (auto: af_xdp with one replica where it "
                        "attaches, else af_packet)")
    r.add_argument("--rx-ports", default="0", metavar="P,P", help="ports polled (0)")
    r.add_argument("--tx-ports", metavar="P,P",
                   help="NF port k -> tx port list[k %% len] (mem: 0,1; dpdk: the non-rx ports)")
    r.add_argument("--acl-rules", metavar="FILE", help="ClassBench rules for acl")
    r.add_argument("--routes", metavar="FILE", help="'<ipv4> <port>' lines for l3fwd")
    r.add_argument("--backends", metavar="FILE", help="'ip:port' lines for lb")
    r.add_argument("--set", action="append", default=[], metavar="NF.KEY=VALUE", help="an NF setting")
    r.add_argument("--io", choices=("dpdk", "mem"), help="I/O: dpdk where available, else mem")
    r.add_argument("--burst", type=int, default=32, metavar="N", help="burst size (32)")
    r.add_argument("--ring-size", type=int, default=1024, metavar="N", help="inter-stage ring entries (1024)")
    r.add_argument("--ring-full", choices=("wait", "drop"), default="wait",
                   help="full ring: wait (backpressure) or drop")
    r.add_argument("--json", action="store_true", help="final report as one JSON object on stdout")
    r.add_argument("--quiet", action="store_true", help="no status line")
    r.add_argument("--counters", action="store_true", help="hardware counters per stage, where the machine has them")
    r.add_argument("--control", metavar="PATH|off",
                   help="control socket for `pynf ctl` (default: pynf.sock in /run/pynf, "
                        "$XDG_RUNTIME_DIR/pynf or /tmp/pynf-UID; off: none)")
    r.add_argument("--metrics", metavar="[ADDR:]PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR 127.0.0.1)")
    r.add_argument("eal", nargs="*", help=argparse.SUPPRESS)
    c = sub.add_parser("ctl", help="control a running pynf (see `pynf ctl help`)")
    c.add_argument("--socket", metavar="PATH", help="its control socket (default: pynf.sock in the "
                                                    "runtime directory)")
    c.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="stats [--json] | route ... | acl ... | lb ... | set NF.KEY=VALUE | reload")
    sub.add_parser("list", help="list the NFs in nfs/")
    pr = sub.add_parser("profile", help="per-NF cycles under RTC and PL, and the ring-hop cost")
    pr.add_argument("chain", metavar="CHAIN")
    pr.add_argument("--flows", type=int, default=1024)
    pr.add_argument("--frame-size", type=int, default=64)
    pr.add_argument("--duration", type=_finite, default=2.0)
    pr.add_argument("--io", choices=("dpdk", "mem"))
    pr.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="the paper's experiments")
    b.add_argument("what", choices=("paper",))
    b.add_argument("--quick", action="store_true", help="fewer points, shorter runs (under a minute)")
    b.add_argument("--out", default="paper-results", metavar="DIR")
    b.add_argument("--io", choices=("dpdk", "mem"), default="mem")
    b.add_argument("--line-rate", type=_finite, default=100.0, metavar="GBPS")
    b.add_argument("--repeats", type=int, metavar="N")
    return p


def _check(a):
    from pynf.config import BURST_MAX
    from pynf.traffic import MAX_FRAME, MIN_FRAME
    if not MIN_FRAME <= a.frame_size <= MAX_FRAME:
        raise UsageError(f"--frame-size: {a.frame_size} outside {MIN_FRAME}..{MAX_FRAME}")
    if a.flows < 1 or a.flows > (1 << 24) - 2:
        raise UsageError("--flows: want 1..16777214")
    if not 1 <= a.burst <= BURST_MAX:
        raise UsageError(f"--burst: want 1..{BURST_MAX}")
    if a.duration is not None and a.duration <= 0:
        raise UsageError("--duration: want a positive number of seconds")
    if a.packets is not None and a.packets < 1:
        raise UsageError("--packets: want at least 1")
    if a.rate is not None and a.rate <= 0:
        raise UsageError("--rate: want a positive Gbps figure")
    if a.cores is not None and a.cores < 1:
        raise UsageError("--cores: want at least 1")
    if a.ring_size < 2 or a.ring_size & (a.ring_size - 1):
        raise UsageError("--ring-size: want a power of two >= 2")
    if a.pcap_out is not None:
        d = os.path.dirname(os.path.abspath(a.pcap_out))
        if not os.path.isdir(d):
            raise UsageError(f"--pcap-out {a.pcap_out}: no directory {d}")
        if not os.access(d, os.W_OK):
            raise UsageError(f"--pcap-out {a.pcap_out}: cannot write in {d}")
    for flag in ("acl_rules", "routes", "backends", "pcap_in"):
        path = getattr(a, flag)
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{path}: no such file (--{flag.replace('_', '-')})")
    settings = {}
    for s in a.set:
        key, eq, val = s.partition("=")
        nf, dot, k = key.partition(".")
        if not eq or not dot or not nf or not k:
            raise UsageError(f"--set {s}: want NF.KEY=VALUE")
        settings.setdefault(nf, {})[k] = val
    return settings


def cmd_run(a, out, err):
    from pynf import plan as planmod
    from pynf.context import RunContext
    from pynf.runtime import Options, Runtime
    from pynf.stats import report
    from pynf.ui import Status, print_plan, print_report, say

    settings = _check(a)
    host = _host(a)
    rx_ports = _int_list(a.rx_ports, "--rx-ports")
    tx_ports = _int_list(a.tx_ports or "0,1", "--tx-ports")
    if host is not None:
        rx_ports = tx_ports = list(range(len(host.ifaces)))
    cpus = sorted(os.sched_getaffinity(0))
    plan = planmod.parse(a.rtc, a.pl, a.stages, a.replicas, a.cores if a.rtc else None)
    for name in settings:
        if name not in [t.rpartition(":")[2] if ":" in t else t for t in plan.tokens]:
            raise UsageError(f"--set {name}.*: {name} is not in the chain")
    cores = cpus[:a.cores] if a.cores else cpus
    if plan.workers > len(cpus):
        say(err, f"warning: {plan.workers} workers on {len(cpus)} cores: workers share cores "
                 "(idle ones yield), so figures are not per-core figures")
    duration = a.duration
    if duration is None and a.packets is None and a.pcap_in is None and host is None:
        duration = 3.0          # built-in traffic; real ports run until SIGINT/SIGTERM
    opts = Options(io="mem", burst=a.burst, duration=duration, packets=a.packets, flows=a.flows,
                   frame_size=a.frame_size, rate=a.rate, seed=a.seed, pcap_in=a.pcap_in,
                   pcap_out=a.pcap_out, rx_ports=rx_ports, tx_ports=tx_ports,
                   ring_size=a.ring_size, ring_full=a.ring_full, cores=cores, eal_args=a.eal,
                   counters=a.counters)
    opts.ifaces = host.ifaces if host is not None else None
    opts.iface_driver = a.iface_driver
    opts.host = host is not None
    if a.counters:
        from pynf.perf import probe
        why = probe()
        if why:
            say(err, f"pynf: note: {why}; --counters reports none")
            opts.counters = False
    ctx = RunContext(acl_rules=a.acl_rules, routes=a.routes, backends=a.backends,
                     flows=a.flows, seed=a.seed, n_ports=len(tx_ports), settings=settings,
                     host=host)
    io = _make_io(a, plan, opts, err)
    if io.name == "dpdk":
        # Software RSS where a port cannot spread flows over the replicas'
        # queues: an NF-less stage on one core receives and hands flows to the
        # replicas by 5-tuple hash; likewise one gathers for a port with too
        # few tx queues.
        rx_why, tx_why = io.queue_check(plan.stages[0].replicas, plan.stages[-1].replicas, opts)
        if rx_why:
            plan.stages.insert(0, planmod.StagePlan([], 1))
            say(err, f"pynf: {rx_why}: a dispatch stage on one core spreads flows over the "
                     f"{plan.stages[1].replicas} replicas by 5-tuple hash")
        if tx_why:
            plan.stages.append(planmod.StagePlan([], 1))
            say(err, f"pynf: {tx_why}: a stage on one core gathers the "
                     f"{plan.stages[-2].replicas} replicas' packets for it")
    rt = Runtime(plan, ctx, opts, io=io)
    say(err, f"pynf: {plan.model} {plan.spec}: {plan.workers} worker(s) on cores "
             f"{','.join(map(str, sorted(set(cores[:plan.workers] if plan.workers <= len(cores) else cores))))}, "
             f"io={io.name}, burst {opts.burst}")
    status = None
    ops = Operate(rt, ctx, err)
    prev = signal.signal(signal.SIGTERM, ops.on_stop_signal)
    try:
        rt.build()
        if len(plan.stages) > 1 or plan.workers > 1:
            print_plan(rt, err)
        say(err, "pynf: compiling (cached after the first run)...")
        rt.compile()
        ops.start(a.control, a.metrics)
        status = None if (a.quiet or not err.isatty()) else Status(err)
        what = f"{duration:g} s" if duration else (f"{a.packets} packets" if a.packets else
                                                   "until stopped" if host else "until the input ends")
        say(err, f"pynf: running ({what}; Ctrl-C stops, drains and reports)")
        prev_int = signal.signal(signal.SIGINT, ops.on_stop_signal)
        prev_hup = signal.signal(signal.SIGHUP, ops.on_hup)
        try:
            rt.run(progress=status.update if status else None)
        finally:
            signal.signal(signal.SIGHUP, prev_hup)
            if not ops.stopping:        # (once stopping, a late signal stays absorbed)
                signal.signal(signal.SIGINT, prev_int)
    finally:
        if not ops.stopping:
            signal.signal(signal.SIGTERM, prev)
        if status:
            status.close()
        ops.close()
        rt.close()
    rep = report(rt)
    if a.json:
        out.write(json.dumps(rep) + "\n")
    else:
        print_report(rep, out)
    return 0


class Operate:
    """What lets a person act on a running chain: the control socket, the
    metrics server, the rates `stats` shows, and the signals (SIGINT and
    SIGTERM stop, drain and report; a second one while stopping is
    absorbed; SIGHUP reloads the files given at start)."""

    def __init__(self, rt, ctx, err):
        from pynf.control.commands import Commands
        self.rt, self.err = rt, err
        self.commands = Commands(rt)
        self.rates = self.control = self.metrics = None
        self.stopping = False

    def start(self, control, metrics):
        from pynf.stats import Rates
        from pynf.ui import say
        self.rates = self.commands.rates = Rates(self.rt).start()
        if control != "off":
            from pynf.control.server import ControlServer, choose_path
            path = choose_path(control)
            try:
                self.control = ControlServer(path, self.commands).start()
                say(self.err, f"pynf: control socket {path} (pynf ctl --socket {path} COMMAND)")
            except UsageError:
                if control:
                    raise
                say(self.err, f"pynf: warning: no control socket: cannot open {path}")
        if metrics:
            from pynf.control.metrics import MetricsServer
            self.metrics = MetricsServer(self.rt, metrics)
            say(self.err, f"pynf: metrics at http://{self.metrics.addr}:{self.metrics.port}/metrics")

    def on_stop_signal(self, signum, frame):
        from pynf.ui import say
        if self.stopping:
            say(self.err, "pynf: already stopping (draining, then the report)")
            return
        self.stopping = True
        self.rt.request_stop()

    def on_hup(self, signum, frame):
        import threading
        threading.Thread(target=self._reload, daemon=True, name="pynf-reload").start()

    def _reload(self):
        from pynf.ui import say
        try:
            out = self.commands.run(["reload"])
            for line in out.splitlines():
                say(self.err, f"pynf: SIGHUP: {line}")
        except (UsageError, RuntimeFailure) as e:
            say(self.err, f"pynf: SIGHUP: reload refused, the running state stays: {e}")

    def close(self):
        for part in (self.metrics, self.control):
            if part is not None:
                part.close()
        if self.rates is not None:
            self.rates.stop()


def _host(a):
    """The --iface ports (pynf.control.host), or None."""
    if not a.iface:
        return None
    from pynf.control.host import Host, parse_iface
    if a.eal:
        raise UsageError("--iface: give either --iface or EAL arguments (after --), not both")
    if a.pcap_in:
        raise UsageError("--iface with --pcap-in: the ports are the traffic")
    if a.io == "mem":
        raise UsageError("--iface needs --io dpdk (the in-memory NIC has no interfaces)")
    if a.rx_ports != "0" or a.tx_ports is not None:
        raise UsageError("--iface: ports are the interfaces in the order given; "
                         "--rx-ports/--tx-ports do not apply")
    return Host([parse_iface(t, k) for k, t in enumerate(a.iface)])


def _make_io(a, plan, opts, err):
    from pynf.io import dpdk as dpdkmod
    from pynf.io import feed as feedmod
    from pynf.io.memio import MemIO
    from pynf.stats import tsc_hz
    from pynf.ui import say
    io_kind = a.io
    if io_kind is None:
        io_kind = "dpdk" if dpdkmod.available() else "mem"
        if io_kind == "mem" and a.iface:
            raise RuntimeFailure(f"--iface: {dpdkmod.why_unavailable()}")
        if io_kind == "mem":
            say(err, f"pynf: in-memory I/O: {dpdkmod.why_unavailable()}")
    elif io_kind == "dpdk" and not dpdkmod.available():
        raise RuntimeFailure(f"--io dpdk: {dpdkmod.why_unavailable()}; --io mem runs without it")
    if a.eal and io_kind != "dpdk":
        raise UsageError("EAL arguments (after --) need --io dpdk")
    if a.eal and a.pcap_in:
        raise UsageError("--pcap-in with EAL arguments: give the pcap as a --vdev=net_pcap0,rx_pcap=FILE instead")
    nq = plan.stages[0].replicas
    f = None
    if a.pcap_in:
        once = a.duration is None and a.packets is None
        f = feedmod.from_pcap(a.pcap_in, nq, once)
        for note in f.notes:
            say(err, f"pynf: warning: {note}")
        say(err, f"pynf: replaying {a.pcap_in} ({f.frames} frames{', once' if once else ', looped'})")
    elif not a.eal and not a.iface:
        f = feedmod.builtin(a.flows, a.frame_size, a.seed, nq)
    if io_kind == "dpdk":
        if a.rate:
            raise UsageError("--rate paces the in-memory NIC only (use --io mem)")
        return dpdkmod.DpdkIO(f, opts, say=lambda line: say(err, line), tx_ports_given=a.tx_ports is not None)
    return MemIO(f, opts.tx_ports, budget=a.packets, rate_gbps=a.rate, hz=tsc_hz())


def cmd_ctl(a, out, err):
    """`pynf ctl [--socket PATH] COMMAND...`: one command to a running pynf."""
    from pynf.control.server import ask, default_path
    words = list(a.words)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words or words == ["help"]:
        out.write(CTL_HELP)
        return 0 if words else 2
    # a file is read by the running pynf: name it from here
    words = [os.path.abspath(w) if k and words[k - 1] == "load" else w for k, w in enumerate(words)]
    rc, text, msg = ask(a.socket or default_path(), words)
    out.write(text)
    if msg:
        err.write(msg + "\n")
    return rc


CTL_HELP = """pynf ctl [--socket PATH] COMMAND
  stats [--json]                       the report, live, with the last second's rates
  route add PREFIX PORT [NEXTHOP]      l3fwd: a.b.c.d (exact) or a.b.c.d/len (router mode)
  route del PREFIX | route list | route load FILE
  acl load FILE | acl list             acl: swap the whole rule set in between bursts
  lb service add VIP:PORT BACKEND:PORT...   | lb service del VIP:PORT | lb services
  lb backend add|del|drain VIP:PORT BACKEND:PORT   (VIP:PORT '*': paper mode)
  lb flows [--limit N] | lb flush [VIP:PORT] | lb load FILE
  set NF.KEY=VALUE                     a setting that may change while running
  reload                               re-read the files given at start (as SIGHUP)
"""


def cmd_list(out):
    from pynf.nf import available, load
    for name in sorted(available()):
        spec = load(name)
        first = (spec.doc or "").splitlines()[0] if spec.doc else ""
        out.write(f"{name:10s} {first}\n")
    return 0


def invoke(args, err=None):
    """`pynf run ARGS --json` in this process; the report, or UsageError /
    RuntimeFailure with pynf's one-line message (for profile and bench)."""
    import io as _io
    out, e = _io.StringIO(), _io.StringIO()
    if "--control" not in args:
        args = [*args, "--control", "off"]
    rc = main(["run", *args, "--json", "--quiet"], out, e)
    if rc != 0:
        msg = e.getvalue().strip().splitlines()
        text = msg[-1] if msg else f"exit {rc}"
        raise (UsageError if rc == 2 else RuntimeFailure)(f"pynf run {' '.join(args)}: {text}")
    if err is not None:
        for line in e.getvalue().splitlines():
            if "warning" in line:
                err.write(line + "\n")
    return json.loads(out.getvalue())


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    eal = []
    if "--" in argv:
        k = argv.index("--")
        argv, eal = argv[:k], argv[k + 1:]
    try:
        a = build_parser().parse_args(argv)
        if a.cmd is None:
            raise UsageError("want a command: run, list (see pynf --help)")
        if a.cmd == "list":
            return cmd_list(out)
        if a.cmd == "ctl":
            return cmd_ctl(a, out, err)
        if a.cmd == "profile":
            from pynf.profile import print_profile, profile
            res = profile(invoke, a.chain, a.flows, a.frame_size, a.io, a.duration, err)
            if a.json:
                out.write(json.dumps(res) + "\n")
            else:
                print_profile(res, out)
            return 0
        if a.cmd == "bench":
            from pynf.paper import run_paper
            return run_paper(invoke, a, out, err)
        if a.eal:
            raise UsageError(f"unexpected argument {a.eal[0]!r} (EAL arguments go after --)")
        a.eal = eal
        return cmd_run(a, out, err)
    except ConfigError as e:
        err.write(f"{e}\n")
        return 2
    except (UsageError, NFError) as e:
        err.write(f"pynf: {e}\n")
        return 2
    except RuntimeFailure as e:
        err.write(f"pynf: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        err.write("pynf: interrupted\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
