"""`pynf`: the command line. Parses it, hands `run` to pynf.cli.launch and
`ctl` to pynf.control.server, prints, and maps errors to exit status:
0 success, 2 bad usage or bad input files (one line on stderr naming the
flag, or FILE:LINE), 1 a runtime failure.
"""
import argparse
import json
import os
import sys

from pynf.cli import flags
from pynf.errors import ConfigError, RuntimeFailure, UsageError
from pynf.nf import NFError


def build_parser(argv=()):
    p = flags.Parser(prog="pynf", description="Network functions in Python, compiled by Numba.")
    sub = p.add_subparsers(dest="cmd", parser_class=flags.Parser)
    r = sub.add_parser("run", help="run a chain of NFs")
    # the NFs' file flags (loading the NFs) only where the command is run
    flags.add_run_flags(r, argv, with_files=argv[:1] == ["run"])
    c = sub.add_parser("ctl", help="control a running pynf (see `pynf ctl help`)")
    c.add_argument("--socket", metavar="PATH", help="its control socket (default: pynf.sock in the "
                                                    "runtime directory)")
    c.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="a command (`pynf ctl help` lists them)")
    sub.add_parser("list", help="list the NFs in the library (pynf/nfs/)")
    pr = sub.add_parser("profile", help="per-NF cycles under RTC and PL, and the ring-hop cost")
    pr.add_argument("chain", metavar="CHAIN")
    pr.add_argument("--flows", type=int, default=1024)
    pr.add_argument("--frame-size", type=int, default=64)
    pr.add_argument("--duration", type=flags.finite, default=2.0)
    pr.add_argument("--io", choices=("dpdk", "mem"))
    pr.add_argument("--json", action="store_true")
    pn = sub.add_parser("plan", help="rank placements (RTC, PL, hybrids, replicas) by predicted Mpps")
    pn.add_argument("chain", metavar="CHAIN")
    pn.add_argument("--cores", type=int, required=True, metavar="N", help="cores to place the chain on")
    pn.add_argument("--flows", type=int, default=1024)
    pn.add_argument("--frame-size", type=int, default=64)
    pn.add_argument("--pcap-in", metavar="FILE")
    pn.add_argument("--io", choices=("dpdk", "mem"))
    pn.add_argument("--duration", type=flags.finite, default=2.0, metavar="S",
                    help="seconds per measuring run (and per --verify run)")
    pn.add_argument("--top", type=int, default=10, metavar="K", help="placements to list (10)")
    pn.add_argument("--verify", action="store_true", help="run each listed placement; predicted vs measured")
    pn.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="the paper's experiments")
    b.add_argument("what", choices=("paper",))
    b.add_argument("--quick", action="store_true", help="fewer points, shorter runs (under a minute)")
    b.add_argument("--out", default="paper-results", metavar="DIR")
    b.add_argument("--io", choices=("dpdk", "mem"), default="mem")
    b.add_argument("--line-rate", type=flags.finite, default=100.0, metavar="GBPS")
    b.add_argument("--repeats", type=int, metavar="N")
    return p


def cmd_run(a, out, err):
    from pynf.cli.launch import execute
    from pynf.cli.ui import print_report
    if a.auto:
        from pynf.measure.placement import choose
        flags.resolve_frame_size(a)
        choose(a, err)
    rep = execute(a, err)
    if a.json:
        out.write(json.dumps(rep) + "\n")
    else:
        print_report(rep, out)
    return 0


def cmd_plan(a, out, err):
    """`pynf plan CHAIN --cores N`: measure, predict, rank (pynf.measure.placement)."""
    from pynf.cli.ui import say
    from pynf.measure import placement
    if a.cores < 1 or a.top < 1:
        raise UsageError("--cores and --top: want at least 1")
    if a.duration <= 0:
        raise UsageError("--duration: want a positive number of seconds")
    prof = placement.measure(a.chain, a.flows, a.frame_size, a.io, a.pcap_in, a.duration, err, a.cores)
    ranked = placement.rank(prof, a.cores)[:a.top]
    if a.cores > prof.measured_on:
        say(err, f"pynf plan: {a.cores} cores asked, this machine has {prof.measured_on}: the "
                 "predictions use this machine's per-core costs; none of them was measured here")
    res = placement.plan_json(prof, ranked)
    base = ["--duration", f"{a.duration:g}"]
    base += ["--pcap-in", a.pcap_in] if a.pcap_in else ["--flows", str(a.flows), "--frame-size", str(a.frame_size)]
    if a.io:
        base += ["--io", a.io]
    if a.verify:
        if a.cores > prof.measured_on:
            say(err, "pynf plan: --verify runs what fits this machine; placements on more cores "
                     "run oversubscribed")
        res["verify"] = placement.verify(ranked, base, err)
    if a.json:
        out.write(json.dumps(res) + "\n")
        return 0
    from pynf.cli.ui import print_plan_table
    print_plan_table(res, out)
    return 0


def cmd_ctl(a, out, err):
    """`pynf ctl [--socket PATH] COMMAND...`: one command to a running pynf."""
    from pynf.control.server import ask, default_path
    words = list(a.words)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words or words == ["help"]:
        # the running chain's own list; without one, the library's NFs'
        rc, text, _ = ask(a.socket or default_path(), ["help"])
        out.write(text if rc == 0 else _library_help())
        return 0 if words else 2
    # a file is read by the running pynf: name it from here
    words = [os.path.abspath(w) if k and words[k - 1] == "load" else w for k, w in enumerate(words)]
    rc, text, msg = ask(a.socket or default_path(), words)
    out.write(text)
    if msg:
        err.write(msg + "\n")
    return rc


def _library_help():
    from pynf.control.commands import help_text
    from pynf.nf import available, load
    verbs = [(name, v) for name in sorted(available()) for v in load(name).verbs]
    return help_text(verbs) + "(no pynf is running here: these are the library NFs' commands)\n"


def _bench(a):
    """bench/paper.py of the source checkout pynf runs from: the paper's
    experiments are benchmarks, not framework, and are not installed."""
    import importlib
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isfile(os.path.join(root, "bench", "paper.py")):
        raise UsageError(f"pynf bench {a.what} runs from a source checkout (its bench/ folder); "
                         f"this pynf is installed in {root}")
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"bench.{a.what}")


def cmd_list(out):
    from pynf.nf import available, load
    for name in sorted(available()):
        spec = load(name)
        first = (spec.doc or "").splitlines()[0] if spec.doc else ""
        out.write(f"{name:10s} {first}\n")
    return 0


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    eal = []
    if "--" in argv:
        k = argv.index("--")
        argv, eal = argv[:k], argv[k + 1:]
    try:
        a = build_parser(argv).parse_args(argv)
        if a.cmd is None:
            raise UsageError("want a command: run, list (see pynf --help)")
        if a.cmd == "list":
            return cmd_list(out)
        if a.cmd == "ctl":
            return cmd_ctl(a, out, err)
        if a.cmd == "profile":
            from pynf.measure.profile import print_profile, profile
            res = profile(a.chain, a.flows, a.frame_size, a.io, a.duration, err)
            if a.json:
                out.write(json.dumps(res) + "\n")
            else:
                print_profile(res, out)
            return 0
        if a.cmd == "plan":
            return cmd_plan(a, out, err)
        if a.cmd == "bench":
            return _bench(a).run_paper(a, out, err)
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
