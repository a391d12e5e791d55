"""Running a chain: from `pynf run`'s flags to the final report.

pynf.cli.main parses the command line and maps errors to exit codes; this module
does the work between (execute), and runs chains in-process for `pynf
profile`, `pynf bench paper` and scripts (invoke). The control socket,
metrics and signals of a run are pynf.control.operate's.
"""
import functools
import io
import os
import signal
import threading
import time

from pynf.cli import flags
from pynf.errors import ConfigError, RuntimeFailure, UsageError
from pynf.nf import NFError


def execute(a, err):
    """Run what `a` (pynf run's parsed flags, pynf.cli.flags) asks for: check the
    flags, build the plan, the I/O backend and the runtime, compile, run
    until the run ends (with the control socket, metrics and signals of
    pynf.control.operate), and return the report (pynf.runtime.report.report).
    Progress and warnings go to err."""
    from pynf.cli.ui import Status, print_plan, say
    from pynf.control.operate import Operate
    from pynf.control.server import runtime_dir
    from pynf.nf.context import RunContext
    from pynf.runtime import chain as planmod
    from pynf.runtime.cores import claim
    from pynf.runtime.options import Options
    from pynf.runtime.report import report
    from pynf.runtime.runtime import Runtime

    if getattr(a, "auto", None):
        raise UsageError("--auto: resolve it first (pynf.measure.placement.choose; the CLI does)")
    settings = flags.check(a)
    host = _host(a)
    rx_ports = flags.int_list(a.rx_ports, "--rx-ports")
    tx_ports = flags.int_list(a.tx_ports or "0,1", "--tx-ports")
    if host is not None:
        rx_ports = tx_ports = list(range(len(host.ifaces)))
    cpus = sorted(os.sched_getaffinity(0))
    plan = planmod.parse(a.rtc, a.pl, a.stages, a.replicas, a.cores if a.rtc else None)
    if a.scale_max:
        if len(plan.stages) < 2:
            raise UsageError("--scale-max: stage 0 reads the NIC and cannot be scaled; give a stage "
                             "in front (a dispatch stage: --stages \"|CHAIN\")")
        for sp in plan.stages[1:]:
            if sp.replicas > a.scale_max:
                raise UsageError(f"--scale-max {a.scale_max}: a stage already has {sp.replicas} replicas")
            sp.max_replicas = a.scale_max
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
                   frame_size=a.frame_size, rate=a.rate, pps=a.pps, seed=a.seed, pcap_in=a.pcap_in,
                   pcap_out=a.pcap_out, rx_ports=rx_ports, tx_ports=tx_ports,
                   ring_size=a.ring_size, ring_full=a.ring_full, cores=cores, eal_args=a.eal,
                   counters=a.counters, ifaces=host.ifaces if host is not None else None,
                   iface_driver=a.iface_driver, host=host is not None,
                   flow_cache=a.flow_cache if a.flow_cache is not None else flags.flow_cache_default(),
                   compile=a.compile or flags.compile_default())
    if a.counters:
        from pynf.measure.perf import probe
        why = probe()
        if why:
            say(err, f"pynf: note: {why}; --counters reports none")
            opts.counters = False
    ctx = RunContext(files=flags.files(a),
                     flows=a.flows, seed=a.seed, n_ports=len(tx_ports), settings=settings,
                     host=host)
    io = _make_io(a, plan, opts, err)
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
    rt = Runtime(plan, ctx, opts, io=io)         # (checks the NFs' configurations)
    # cores no other pynf on this host polls (pynf.runtime.cores)
    held = claim(min(plan.workers, a.cores) if a.cores else plan.workers, cpus, runtime_dir())
    if held.note:
        say(err, f"pynf: {held.note}")
    opts.cores = cores = held.cores
    say(err, f"pynf: {plan.model} {plan.spec}: {plan.workers} worker(s) on cores "
             f"{','.join(map(str, sorted(set(cores[:plan.workers] if plan.workers <= len(cores) else cores))))}, "
             f"io={io.name}, burst {opts.burst}")
    status = None
    ops = Operate(rt, err)
    signals = threading.current_thread() is threading.main_thread()   # (handlers: main thread only)
    if signals:
        prev = signal.signal(signal.SIGTERM, ops.on_stop_signal)
    try:
        rt.build()
        if len(plan.stages) > 1 or plan.workers > 1:
            print_plan(rt, err)
        say(err, "pynf: compiling (cached after the first run)...")
        t_compile = time.perf_counter()

        def compiled(what, secs):
            if secs >= 0.5:         # (not served by the cache)
                say(err, f"pynf:   {what}: {secs:.1f} s ({time.perf_counter() - t_compile:.0f} s so far)")
        rt.compile(progress=compiled)
        rt.fuser.say = lambda line: say(err, line)
        ops.start(a.control, a.metrics)
        status = None if (a.quiet or not err.isatty()) else Status(err)
        what = f"{duration:g} s" if duration else (f"{a.packets} packets" if a.packets else
                                                   "until stopped" if host else "until the input ends")
        if signals:
            prev_int = signal.signal(signal.SIGINT, ops.on_stop_signal)
            prev_hup = signal.signal(signal.SIGHUP, ops.on_hup)
        try:
            # "running" once the slow path and every worker are polling
            rt.run(progress=status.update if status else None,
                   started=lambda: say(err, f"pynf: running ({what}; Ctrl-C stops, drains and reports)"))
        finally:
            if signals:
                signal.signal(signal.SIGHUP, prev_hup)
                if not ops.stopping:        # (once stopping, a late signal stays absorbed)
                    signal.signal(signal.SIGINT, prev_int)
    finally:
        if signals and not ops.stopping:
            signal.signal(signal.SIGTERM, prev)
        if status:
            status.close()
        ops.close()
        rt.close()
        held.close()
    return report(rt)


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
    from pynf.cli.ui import say
    from pynf.io import feed as feedmod
    from pynf.io.dpdk import backend as dpdkmod
    from pynf.io.mem.backend import MemIO
    from pynf.packet.clock import tsc_hz
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
    f = bound = None
    if a.pcap_in:
        once = a.duration is None and a.packets is None
        f = feedmod.from_pcap(a.pcap_in, nq, once)
        for note in f.notes:
            say(err, f"pynf: warning: {note}")
        say(err, f"pynf: replaying {a.pcap_in} ({f.frames} frames{', once' if once else ', looped'})")
    elif not a.eal and not a.iface:
        f = functools.partial(feedmod.builtin, a.flows, a.frame_size, a.seed, nq, a.traffic)
        if io_kind == "dpdk":       # built once the EAL and the mbuf pool have started (pynf.io.dpdk.backend)
            bound = feedmod.builtin_bound(a.flows, a.frame_size, nq)
        else:
            f = f()
    if io_kind == "dpdk":
        return dpdkmod.DpdkIO(f, opts, say=lambda line: say(err, line), tx_ports_given=a.tx_ports is not None,
                              bound=bound)
    return MemIO(f, opts.tx_ports, budget=a.packets, rate_gbps=a.rate, hz=tsc_hz(), pps=a.pps)


def invoke(args, err=None):
    """`pynf run ARGS` in this process: the report, or UsageError (bad flags,
    files or NFs) / RuntimeFailure with pynf's one-line message. No control
    socket unless ARGS ask for one; warnings are copied to err."""
    args = list(args)
    eal = []
    if "--" in args:
        k = args.index("--")
        args, eal = args[:k], args[k + 1:]
    if "--control" not in args:
        args += ["--control", "off"]
    e = io.StringIO()
    try:
        a = flags.run_parser(args).parse_args(args)
        if a.eal:
            raise UsageError(f"unexpected argument {a.eal[0]!r} (EAL arguments go after --)")
        a.eal, a.quiet = eal, True
        rep = execute(a, e)
    except (ConfigError, NFError) as x:
        raise UsageError(f"pynf run {' '.join(args)}: {x}") from None
    except (UsageError, RuntimeFailure) as x:
        raise type(x)(f"pynf run {' '.join(args)}: {x}") from None
    finally:
        if err is not None:
            for line in e.getvalue().splitlines():
                if "warning" in line:
                    err.write(line + "\n")
    return rep
