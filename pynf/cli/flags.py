"""The flags of `pynf run`: their definitions and checks, shared by the
command line (pynf.cli.main) and by runs made in-process (pynf.cli.launch.invoke)."""
import argparse
import math
import os

from pynf import flowcache
from pynf.errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def finite(text):
    """argparse type: a finite float ('nan' and 'inf' are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def compile_default():
    """--compile's default: $PYNF_COMPILE (fast or fused), else fast."""
    v = os.environ.get("PYNF_COMPILE", "fast")
    if v not in ("fast", "fused"):
        raise UsageError(f"PYNF_COMPILE={v}: want fast or fused")
    return v


def flow_cache_default():
    """auto unless $PYNF_FLOW_CACHE says otherwise (the tests run both ways)."""
    try:
        return flowcache.setting_default()
    except ValueError as e:
        raise UsageError(str(e)) from None


def int_list(text, flag):
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag}: want comma-separated numbers, not {text!r}") from None
    if not v or any(x < 0 for x in v):
        raise UsageError(f"{flag}: want non-negative numbers")
    return v


def nf_files(argv=()):
    """[(NF name, pynf.nf.File)]: the input files the library's NFs declare,
    and those of NFs named by path in argv's chain (--rtc x.py:name, ...);
    an NF that cannot be loaded here is left for the run to report."""
    from pynf.nf import NFError, available, load
    names = sorted(available())
    for k, arg in enumerate(argv):
        flag, eq, val = arg.partition("=")
        if flag in ("--rtc", "--pl", "--stages", "--auto"):
            val = val if eq else (argv[k + 1] if k + 1 < len(argv) else "")
            names += [t for t in val.replace("|", ",").split(",") if ":" in t or t.endswith(".py")]
    out, seen = [], {}
    for name in names:
        try:
            spec = load(name)
        except NFError:
            continue
        for f in spec.files:
            if f.flag in seen:
                continue            # two NFs that read one file share its flag
            seen[f.flag] = spec.name
            out.append((spec.name, f))
    return out


def add_run_flags(r, argv=(), with_files=True):
    """The flags of `pynf run` on parser r; with_files, the input files the
    NFs declare (argv: the command line, for NFs named by path)."""
    m = r.add_argument_group("execution model (one of)")
    m.add_argument("--rtc", metavar="CHAIN", help="run-to-completion: all NFs fused in one stage")
    m.add_argument("--pl", metavar="CHAIN", help="pipeline: one stage per NF, joined by rings")
    m.add_argument("--stages", metavar="SPEC", help='hybrid: "a|b,c" (| separates stages, , fuses; "|a,b": '
                   'a dispatch stage first)')
    m.add_argument("--auto", metavar="CHAIN", help="measure, then run the placement `pynf plan` ranks "
                                                   "first on --cores N (pynf.measure.placement)")
    r.add_argument("--replicas", metavar="N,N", help="replicas per stage (with --stages)")
    r.add_argument("--cores", type=int, metavar="N", help="cores to use (RTC: replicas)")
    r.add_argument("--scale-max", type=int, metavar="N",
                   help="room for N replicas in every stage but the first, for `pynf ctl scale` "
                        "(the ones not in use are parked)")
    r.add_argument("--duration", type=finite, metavar="S", help="seconds to run (default 3 for built-in traffic)")
    r.add_argument("--packets", type=int, metavar="N", help="packets to receive, then stop")
    r.add_argument("--flows", type=int, default=1024, metavar="N", help="built-in traffic: flows (1024)")
    r.add_argument("--frame-size", type=int, default=None, metavar="B",
                   help="built-in traffic: frame bytes with FCS, 64..1518 (64; 82 with DNS queries)")
    r.add_argument("--traffic", choices=("web", "syn", "dns", "mix"), default="web",
                   help="built-in traffic: web (TCP ACKs to web ports, UDP to DNS/NTP: the default), syn "
                        "(TCP SYNs to port 80), dns (DNS queries, a name under ads.example in 8), mix "
                        "(a quarter each of syn and dns, the rest web)")
    r.add_argument("--rate", type=finite, metavar="GBPS",
                   help="pace the input (built-in traffic or --pcap-in) to this wire rate")
    r.add_argument("--pps", type=finite, metavar="N", help="pace the input to N packets a second")
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
    r.add_argument("--set", action="append", default=[], metavar="NF.KEY=VALUE", help="an NF setting")
    r.add_argument("--io", choices=("dpdk", "mem"), help="I/O: dpdk where available, else mem")
    r.add_argument("--burst", type=int, default=32, metavar="N", help="burst size (32)")
    r.add_argument("--ring-size", type=int, default=1024, metavar="N", help="inter-stage ring entries (1024)")
    r.add_argument("--flow-cache", type=flowcache.setting, default=None, metavar="auto|on|off[:N]",
                   help="the chain-wide flow cache (pynf/flowcache/): auto (in use while it "
                        "measures faster), on, off; :N entries (default: sized to the built-in "
                        "flows, 64K at least). Default auto, or $PYNF_FLOW_CACHE")
    r.add_argument("--compile", choices=("fast", "fused"), default=None,
                   help="fast: a stage whose fused code is not in the cache starts at once, unfused "
                        "(each NF compiled alone), and is fused in the background; fused: compile it "
                        "before running. Default fast, or $PYNF_COMPILE")
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
    g = r.add_argument_group("NF input files (each declared by its NF: pynf.nf.File)")
    for _, f in nf_files(argv) if with_files else ():
        g.add_argument(f.flag, dest=FILE_DEST + f.key, metavar="FILE", help=f.help)


FILE_DEST = "file_"     # argparse dest prefix of the NFs' file flags


def files(a):
    """{File.key: path} of the NF input files given (for RunContext.files)."""
    return {k[len(FILE_DEST):]: v for k, v in vars(a).items() if k.startswith(FILE_DEST) and v is not None}


def run_parser(argv=()):
    """A parser of `pynf run`'s flags alone (for pynf.cli.launch.invoke)."""
    p = Parser(prog="pynf run")
    add_run_flags(p, argv)
    return p


def resolve_frame_size(a):
    """--frame-size's default: 82 where the built-in traffic holds DNS
    queries (--traffic dns or mix), else 64."""
    from pynf.traffic.templates import DNS_FRAME, MIN_FRAME
    if a.frame_size is None:
        a.frame_size = DNS_FRAME if getattr(a, "traffic", "web") in ("dns", "mix") else MIN_FRAME
    return a.frame_size


def check(a):
    """Check run flags that argparse cannot; returns --set as {nf: {key: value}}."""
    from pynf.packet.batch import BURST_MAX
    from pynf.traffic.templates import DNS_FRAME, MAX_FRAME, MIN_FRAME
    dns = getattr(a, "traffic", "web") in ("dns", "mix")
    resolve_frame_size(a)
    if not MIN_FRAME <= a.frame_size <= MAX_FRAME:
        raise UsageError(f"--frame-size: {a.frame_size} outside {MIN_FRAME}..{MAX_FRAME}")
    if dns and a.frame_size < DNS_FRAME and not a.pcap_in:
        raise UsageError(f"--frame-size {a.frame_size}: --traffic {a.traffic} sends DNS queries, "
                         f"which need {DNS_FRAME} bytes or more")
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
    if a.pps is not None and a.pps <= 0:
        raise UsageError("--pps: want a positive number of packets a second")
    if a.rate is not None and a.pps is not None:
        raise UsageError("give --rate or --pps, not both")
    if a.scale_max is not None and a.scale_max < 1:
        raise UsageError("--scale-max: want at least 1")
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
    given = {"--pcap-in": a.pcap_in, **{"--" + k.replace("_", "-"): v for k, v in files(a).items()}}
    for flag, path in given.items():
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{path}: no such file ({flag})")
    settings = {}
    for s in a.set:
        key, eq, val = s.partition("=")
        nf, dot, k = key.partition(".")
        if not eq or not dot or not nf or not k:
            raise UsageError(f"--set {s}: want NF.KEY=VALUE")
        settings.setdefault(nf, {})[k] = val
    return settings
