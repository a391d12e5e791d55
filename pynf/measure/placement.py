"""Choosing the execution model from measurement: `pynf plan`, `run --auto`.

The cost model (TSC cycles per packet; hz: TSC ticks per second):

    f_j   NF j's cycles per packet fused with the whole chain on one core
          (RTC), at the run's flow count and frame size
    a_j   NF j's cycles per packet alone in its stage (PL): its state has a
          core's caches to itself
    io    the rest of an RTC worker's busy cycles per packet: receive,
          parse, write-back, transmit (busy cycles minus the NFs' sum)
    h     one ring hop: what a ring adds to the period of the stage behind
          it, from the chain cut in two stages on two cores: that run's
          period (hz / its rate) less its second stage's NF costs, and at
          least its busy cycles less RTC's (the paper's Table 2 method)

A placement groups the chain into consecutive stages S_0..S_k-1 and gives
stage s r_s replicas (flows are steered to replicas by hash, so each
replica of a stateful NF owns its flows; every NF may be replicated).
In a stage of m of the chain's n NFs, NF j costs
c_j = a_j + (f_j - a_j) * (m - 1) / (n - 1): what sharing the core's caches
with the stage's other NFs adds, in proportion to how many share them; and
with r replicas each holds 1/r of the flows, so c_j follows how f_j falls
with fewer flows (measured again at flows / cores; log-linear between).
Stage s costs T_0 = io + sum of its c_j, and T_s = h + sum of its c_j for
s > 0 (a later stage takes its packets from a ring, not a NIC). Replicas
run in parallel, so

    Mpps = min over s of  r_s * hz / T_s / 1e6,   with sum of r_s <= cores

the period of a pipeline's slowest interval under replication (Subhlok and
Vondran's interval mapping with replication, JPDC 1996), each interval's
cost following the paper's measured hop cost. It ignores what it cannot
see: cores shared with other work, NIC and memory bandwidth, and caches
shared between replicas (the last-level cache).
"""
import itertools
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Profile:
    """What the model needs, measured (measure()) or made up (tests)."""
    nfs: list                   # NF names in chain order
    cycles: dict                # name -> f_j, fused (RTC)
    io: float
    hop: float
    hz: float
    flows: int = 0
    frame_size: int = 64
    measured_on: int = 0        # cores of the machine that measured it
    alone: dict = None          # name -> a_j, alone in a stage (PL); None: as fused
    fewer: tuple = None         # (flows, {name: f_j}) fused at fewer flows; None: not measured

    def cost(self, name, sharing, replicas=1):
        """c_j in a stage of `sharing` NFs and `replicas` replicas: each
        replica keeps the state of 1/replicas of the flows (flows are
        steered by hash), so c_j follows f_j's growth with flows, log-linear
        between the two measured flow counts and flat outside them."""
        f = self.cycles[name]
        a = (self.alone or {}).get(name, f)
        n = len(self.nfs)
        c = a if n == 1 else a + (f - a) * (sharing - 1) / (n - 1)
        if self.fewer is not None and replicas > 1 and self.flows > self.fewer[0] > 0:
            per = max(self.flows / replicas, self.fewer[0])
            x = np.log(self.flows / per) / np.log(self.flows / self.fewer[0])     # 0 at flows, 1 at fewer
            c *= 1 + x * (self.fewer[1][name] / f - 1) if f > 0 else 1
        return c


@dataclass
class Placement:
    stages: list                # [[nf, ...], ...]
    replicas: list              # per stage
    predicted_mpps: float = 0.0
    stage_mpps: list = field(default_factory=list)

    @property
    def cores(self):
        return sum(self.replicas)

    @property
    def model(self):
        if len(self.stages) == 1:
            return "rtc"
        if all(len(s) == 1 for s in self.stages) and all(r == 1 for r in self.replicas):
            return "pl"
        return "hybrid"

    def args(self):
        """The `pynf run` arguments of this placement (no traffic options)."""
        chain = ",".join(n for s in self.stages for n in s)
        if self.model == "rtc":
            return ["--rtc", chain, "--cores", str(self.replicas[0])]
        if self.model == "pl":
            return ["--pl", chain]
        return ["--stages", "|".join(",".join(s) for s in self.stages),
                "--replicas", ",".join(map(str, self.replicas))]

    def describe(self):
        return " | ".join(f"{','.join(s)} x{r}" for s, r in zip(self.stages, self.replicas))


def groupings(nfs):
    """Every way to cut the chain into consecutive stages."""
    n = len(nfs)
    for cuts in itertools.product([False, True], repeat=n - 1):
        out, cur = [], [nfs[0]]
        for name, cut in zip(nfs[1:], cuts):
            if cut:
                out.append(cur)
                cur = []
            cur.append(name)
        out.append(cur)
        yield out


def _replica_counts(k, cores):
    """Every (r_0..r_k-1), each >= 1, summing to at most `cores`."""
    if k == 0:
        yield ()
        return
    for r in range(1, cores - (k - 1) + 1):
        for rest in _replica_counts(k - 1, cores - r):
            yield (r, *rest)


def predict(prof, stages, replicas):
    rates = []
    for s, (names, r) in enumerate(zip(stages, replicas)):
        t = (prof.io if s == 0 else prof.hop) + sum(prof.cost(n, len(names), r) for n in names)
        rates.append(r * prof.hz / max(t, 1e-9) / 1e6)
    return min(rates), rates


def rank(prof, cores):
    """Every placement that fits `cores`, best predicted first; of those
    within 1 % of each other, the one on fewer cores first."""
    out = []
    for stages in groupings(prof.nfs):
        for reps in _replica_counts(len(stages), cores):
            mpps, rates = predict(prof, stages, list(reps))
            out.append(Placement([list(s) for s in stages], list(reps), round(mpps, 4),
                                 [round(x, 4) for x in rates]))
    best = max(p.predicted_mpps for p in out)
    # a placement that only adds cores to a stage that is not the bottleneck is no better
    out.sort(key=lambda p: (-round(p.predicted_mpps / best, 2), p.cores, len(p.stages)))
    return out


def measure(chain, flows=1024, frame_size=64, io=None, pcap_in=None, duration=2.0, err=None, cores=1):
    """A Profile of this machine from runs made in this process: the chain
    fused on one core (f_j, io); one stage per NF (a_j); the chain cut in
    two stages (h: two workers, so that even a 2-core machine measures the
    hop without two workers sharing a core); and, for `cores` > 1, fused
    again at flows / cores (what each of that many replicas would hold)."""
    import os

    from pynf.cli.launch import invoke
    base = ["--duration", f"{duration:g}", "--flow-cache", "off"]     # the NFs' own cycles
    base += ["--pcap-in", pcap_in] if pcap_in else ["--flows", str(flows), "--frame-size", str(frame_size)]
    if io:
        base += ["--io", io]
    rtc = invoke(["--rtc", chain, *base], err)
    nfs = list(rtc["nfs"])
    fused = {n: rtc["nfs"][n]["cycles_per_packet"] for n in nfs}
    io_cost = max(0.0, rtc["busy_cycles_per_packet"] - sum(fused.values()))
    prof = Profile(nfs, fused, io_cost, 0.0, rtc["tsc_hz"], flows, frame_size, len(os.sched_getaffinity(0)))
    if len(nfs) > 1:
        pl = invoke(["--pl", chain, *base], err)
        prof.alone = {n: pl["nfs"][n]["cycles_per_packet"] for n in nfs}
        two = invoke(["--stages", f"{nfs[0]}|{','.join(nfs[1:])}", *base], err)
        # the hop: what a ring adds to a stage's period. The busy cycles
        # give a floor; the two-stage run's own period, less what its
        # second stage's NFs cost, gives what a hop really costs here
        # (waits, buffers crossing cores) when that stage is the bottleneck
        busy_hop = max(0.0, two["busy_cycles_per_packet"] - rtc["busy_cycles_per_packet"])
        period = prof.hz / max(two["mpps"] * 1e6, 1.0)
        rest = sum(prof.cost(n, len(nfs) - 1) for n in nfs[1:])
        prof.hop = max(busy_hop, period - rest)
    if cores > 1 and not pcap_in and flows // cores >= 1:
        # how the NFs' costs fall with the flows a replica holds
        k = base.index("--flows") + 1
        few = invoke(["--rtc", chain, *base[:k], str(flows // cores), *base[k + 1:]], err)
        prof.fewer = (flows // cores, {n: few["nfs"][n]["cycles_per_packet"] for n in nfs})
    return prof


def verify(placements, base_args, err=None):
    """Run each placement (pynf.cli.launch.invoke with base_args); its measured
    Mpps beside the prediction."""
    from pynf.cli.launch import invoke
    rows = []
    for p in placements:
        rep = invoke([*p.args(), *base_args], err)
        m = rep["mpps"]
        rows.append({"placement": p.describe(), "args": p.args(), "cores": p.cores,
                     "predicted_mpps": p.predicted_mpps, "measured_mpps": m,
                     "error": round((p.predicted_mpps - m) / m, 4) if m else None,
                     "oversubscribed": rep["oversubscribed"]})
    best = max(r["measured_mpps"] for r in rows) if rows else 0
    errs = [abs(r["error"]) for r in rows if r["error"] is not None]
    return {"rows": rows,
            "first_choice_vs_best": round(rows[0]["measured_mpps"] / best, 4) if best else None,
            "mean_abs_error": round(sum(errs) / len(errs), 4) if errs else None}


def plan_json(prof, placements):
    return {"profile": {"nfs": prof.nfs, "cycles_per_packet": prof.cycles, "alone_cycles_per_packet": prof.alone,
                        "io_cycles_per_packet": prof.io,
                        "hop_cycles_per_packet": prof.hop, "tsc_hz": prof.hz, "flows": prof.flows,
                        "frame_size": prof.frame_size, "measured_on_cores": prof.measured_on},
            "placements": [{"args": p.args(), "predicted_mpps": p.predicted_mpps, "cores": p.cores,
                            "model": p.model, "stages": p.stages, "replicas": p.replicas,
                            "stage_mpps": p.stage_mpps} for p in placements]}


def why(prof, p):
    """One line: what was chosen and why."""
    slow = min(range(len(p.stages)), key=lambda s: p.stage_mpps[s])
    return (f"{p.describe()} ({' '.join(p.args())}): predicted {p.predicted_mpps:.2f} Mpps on "
            f"{p.cores} core(s); NFs cost {', '.join(f'{n} {prof.cycles[n]:.0f}' for n in prof.nfs)} "
            f"cycles/packet fused, I/O {prof.io:.0f}, a ring hop {prof.hop:.0f}; the bottleneck is stage "
            f"{slow} ({','.join(p.stages[slow])})")


def choose(a, err):
    """--auto CHAIN: measure this machine (pynf.measure.placement.measure, on the
    run's traffic), rank the placements on --cores N, and make `a` the
    first one's flags."""
    import os

    from pynf.cli.ui import say
    from pynf.errors import UsageError
    if a.rtc or a.pl or a.stages:
        raise UsageError("--auto CHAIN replaces --rtc, --pl and --stages: give one of them")
    if a.replicas:
        raise UsageError("--auto chooses the replicas: drop --replicas")
    if a.iface or a.eal:
        raise UsageError("--auto measures with built-in traffic or --pcap-in; with --iface or EAL "
                         "arguments, run `pynf plan` and give the placement")
    cores = a.cores or len(os.sched_getaffinity(0))
    say(err, f"pynf: --auto: measuring {a.auto} (short runs)...")
    prof = measure(a.auto, a.flows, a.frame_size, a.io, a.pcap_in, 1.5, err, cores)
    best = rank(prof, cores)[0]
    say(err, f"pynf: --auto chose {why(prof, best)}")
    a.auto, a.cores = None, cores
    args = best.args()
    if best.model == "rtc":
        a.rtc, a.cores = args[1], best.replicas[0]
    elif best.model == "pl":
        a.pl = args[1]
    else:
        a.stages, a.replicas = args[1], args[3]
