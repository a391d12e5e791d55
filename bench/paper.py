"""`pynf bench paper`: the paper's experiments on this machine, with tables,
plots and a report that says where this machine agrees with the paper.

    Fig. 2   lb alone, throughput by flow-table size
    Fig. 5   RTC vs PL vs the generator's line rate, by frame size
    Fig. 6   the RTC chain's throughput by state size (64 and 128 B)
    Table 2  per-NF cycles under RTC and under PL

Every point is measured by pynf's own runtime (the same `pynf run`, in this
process), repeated (median and min-max spread), and checked for
conservation (rx == tx + drops). Runs that need more cores than the machine
has run oversubscribed and are marked so. Writes one CSV per experiment,
one PNG per figure and report.md into --out.
"""
import csv
import datetime
import os
import platform
import statistics
import subprocess

PAPER = {
    "table2": {"acl": (10.2, 35.1), "lb": (8.3, 75.8), "l3fwd": (7.5, 59.2)},
    "fig2": [(4_000, 120.0), (40_000, 69.0)],       # Mpps, LB alone (paper, section 2)
    "fig6_drop": (2.2, 2.3),                        # 1K -> 100K flows
    "rtc_over_pl": (1.4, 3.3),                      # 64..512 B
    "hop": (52, 68),                                # cycles
}

SWEEPS = {
    "quick": dict(fig2=[1_000, 100_000], fig5=[64, 1024], fig6=[1_000, 100_000], fig6_sizes=[64],
                  duration=0.4, repeats=3),
    "full": dict(fig2=[100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000],
                 fig5=[64, 128, 256, 512, 1024, 1518],
                 fig6=[100, 1_000, 10_000, 100_000, 1_000_000], fig6_sizes=[64, 128],
                 duration=2.0, repeats=3),
}


def machine(io):
    info = {"date": datetime.date.today().isoformat(), "host": platform.node(),
            "cpu": "?", "cores": len(os.sched_getaffinity(0)), "io": io}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if d.startswith("index"):
                rd = lambda k, d=d: open(os.path.join(base, d, k)).read().strip()
                caches.append(f"L{rd('level')} {rd('type').lower()} {rd('size')}")
    except OSError:
        pass
    info["caches"] = ", ".join(caches) or "?"
    from pynf.packet.clock import tsc_hz
    info["tsc_ghz"] = round(tsc_hz() / 1e9, 3)
    if io == "dpdk":
        r = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True, text=True)
        info["dpdk"] = r.stdout.strip() or "?"
    import numba
    info["python"] = platform.python_version()
    info["numba"] = numba.__version__
    return info


class Runner:
    def __init__(self, io, repeats, err, progress=None):
        from pynf.cli.launch import invoke
        self.invoke = invoke
        self.io, self.repeats, self.err, self.progress = io, repeats, err, progress
        self.rows = []

    def point(self, exp, model, args, duration, cache="off", **labels):
        """One point: `repeats` runs. The paper measured the NFs themselves,
        so the flow cache (pynf.flowcache) is off unless `cache` says."""
        vals, reps = [], []
        for _ in range(self.repeats):
            rep = self.invoke([*args, "--io", self.io, "--duration", f"{duration:g}", "--flow-cache", cache],
                              self.err)
            if rep["rx"] != rep["tx"] + sum(rep["drops"].values()):
                raise AssertionError(f"conservation broken in {args}: {rep['rx']} rx")
            vals.append(rep["mpps"])
            reps.append(rep)
            if self.progress:
                self.progress()
        mid = sorted(range(len(vals)), key=lambda k: vals[k])[len(vals) // 2]
        row = dict(experiment=exp, model=model, **labels, mpps=round(statistics.median(vals), 4),
                   mpps_min=round(min(vals), 4), mpps_max=round(max(vals), 4),
                   runs=" ".join(f"{v:.3f}" for v in vals), workers=reps[mid]["workers"],
                   cores=reps[mid]["cores"], oversubscribed=reps[mid]["oversubscribed"])
        self.rows.append(row)
        return row, reps[mid]


def _dur(base, flows):
    # long enough to pass over every flow a few times, so the table is full
    return base + min(8.0, 3 * flows / 4e6)


def run_experiments(mode, io, line_rate, repeats, err, tick=None):
    sw = dict(SWEEPS[mode])
    if repeats:
        sw["repeats"] = repeats
    r = Runner(io, sw["repeats"], err, tick)
    d = sw["duration"]
    fig2 = [r.point("fig2", "rtc", ["--rtc", "lb", "--flows", str(n)], _dur(d, n), flows=n, frame_size=64)[0]
            for n in sw["fig2"]]
    fig5 = []
    for size in sw["fig5"]:
        line_pps = line_rate * 1e9 / ((size + 20) * 8) / 1e6
        for model, args in (("rtc", ["--rtc", "acl,lb,l3fwd", "--cores", str(len(os.sched_getaffinity(0)))]),
                            ("pl", ["--pl", "acl,lb,l3fwd"])):
            row, _ = r.point("fig5", model, args + ["--flows", "90", "--frame-size", str(size)], d,
                             flows=90, frame_size=size)
            row["line_mpps"] = round(line_pps, 4)
            row["capped_mpps"] = round(min(row["mpps"], line_pps), 4)
            row["gbps"] = round(row["capped_mpps"] * size * 8 / 1000, 3)
            row["line_gbps"] = round(line_pps * size * 8 / 1000, 3)
            fig5.append(row)
    fig6 = run_fig6(r, sw)
    t2 = {}
    for model, args in (("rtc", ["--rtc", "acl,lb,l3fwd"]), ("pl", ["--pl", "acl,lb,l3fwd"])):
        row, rep = r.point("table2", model, args + ["--flows", "1024"], d, flows=1024, frame_size=64)
        t2[model] = (row, rep)
    table2 = []
    for nf in ("acl", "lb", "l3fwd"):
        table2.append(dict(nf=nf, rtc=t2["rtc"][1]["nfs"][nf]["cycles_per_packet"],
                           pl=t2["pl"][1]["nfs"][nf]["cycles_per_packet"],
                           paper_rtc=PAPER["table2"][nf][0], paper_pl=PAPER["table2"][nf][1]))
    hop = round((t2["pl"][1]["busy_cycles_per_packet"] - t2["rtc"][1]["busy_cycles_per_packet"]) / 2, 1)
    return dict(fig2=fig2, fig5=fig5, fig6=fig6, table2=table2, hop=hop,
                pl_oversubscribed=t2["pl"][0]["oversubscribed"], all_rows=r.rows, sweep=sw)


def run_fig6(r, sw):
    """Fig. 6 with one more series: the chain with its flow cache on (issue 11)."""
    return [r.point("fig6", model, ["--rtc", "acl,lb,l3fwd", "--flows", str(n), "--frame-size", str(size)],
                    _dur(sw["duration"], n), cache=cache, flows=n, frame_size=size)[0]
            for model, cache in (("rtc", "off"), ("rtc+cache", "on"))
            for size in sw["fig6_sizes"] for n in sw["fig6"]]


def total_runs(mode, repeats=None):
    sw = SWEEPS[mode]
    n = len(sw["fig2"]) + 2 * len(sw["fig5"]) + 2 * len(sw["fig6"]) * len(sw["fig6_sizes"]) + 2
    return n * (repeats or sw["repeats"])


# ---- verdicts ----

def verdicts(res, line_rate):
    out = []
    f5 = {(r["model"], r["frame_size"]): r for r in res["fig5"]}
    small = [s for s in sorted({r["frame_size"] for r in res["fig5"]}) if s <= 512]
    big = [s for s in sorted({r["frame_size"] for r in res["fig5"]}) if s >= 1024]
    over = " (PL ran oversubscribed: more stages than cores)" if res["pl_oversubscribed"] else ""
    ratios = [f5[("rtc", s)]["capped_mpps"] / f5[("pl", s)]["capped_mpps"] for s in small]
    lo, hi = PAPER["rtc_over_pl"]
    if ratios:
        txt = ", ".join(f"{s} B {x:.2f}x" for s, x in zip(small, ratios))
        ok = all(lo <= x <= hi for x in ratios)
        why = ("RTC is faster by a factor inside the paper's range" if ok else
               "RTC is faster, by a factor outside the paper's 1.4-3.3x" if all(x > 1 for x in ratios) else
               "RTC is not faster at every size")
        out.append(("RTC is 1.4-3.3x faster than PL for 64-512 B frames",
                    "holds" if ok else "does not hold", f"{why}: {txt}{over}"))
    if big:
        gaps = [f5[("pl", s)]["capped_mpps"] / f5[("rtc", s)]["capped_mpps"] for s in big]
        capped = [f5[("rtc", s)]["mpps"] >= f5[("rtc", s)]["line_mpps"] for s in big]
        ok = all(g >= 0.9 for g in gaps)
        txt = ", ".join(f"{s} B: PL at {g:.2f}x of RTC" for s, g in zip(big, gaps))
        why = (f"both reach the {line_rate:g} Gbps line rate" if ok else
               f"this machine's RTC chain does not reach the {line_rate:g} Gbps line rate at these sizes"
               if not all(capped) else "PL stays below the line rate that RTC reaches")
        out.append(("PL catches up with RTC at 1024 B and above when capped at line rate",
                    "holds" if ok else "does not hold", f"{why}: {txt}{over}"))
    lo, hi = PAPER["hop"]
    h = res["hop"]
    out.append(("the inter-core hop costs about one L3 access (52-68 cycles)",
                "holds" if 0.75 * lo <= h <= 1.25 * hi else "does not hold",
                f"one hop here costs {h:.1f} busy cycles per packet (PL minus RTC, per hop), which in "
                "pynf includes a second receive/transmit pass and a second parse besides the "
                f"cache-line transfer{over}"))
    f6 = {(r["flows"], r["frame_size"]): r["mpps"] for r in res["fig6"] if r["model"] == "rtc"}
    pairs = [(s, f6[(1000, s)] / f6[(100_000, s)]) for s in sorted({k[1] for k in f6})
             if (1000, s) in f6 and (100_000, s) in f6]
    if pairs:
        lo, hi = PAPER["fig6_drop"]
        ok = all(0.8 * lo <= x <= 1.25 * hi for _, x in pairs)
        out.append(("RTC throughput drops 2.2-2.3x as LB and L3FWD state grows from 1K to 100K flows",
                    "holds" if ok else "does not hold",
                    "throughput at 1K over 100K flows: " + ", ".join(f"{s} B {x:.2f}x" for s, x in pairs)))
    else:
        out.append(("RTC throughput drops 2.2-2.3x as LB and L3FWD state grows from 1K to 100K flows",
                    "not measured", "the sweep has no 1K and 100K points (use the full run)"))
    return out


# ---- output ----

def write_csv(path, rows):
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def plots(res, outdir, line_rate):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = {}

    def save(fig, key, name):
        fig.tight_layout()
        files[key] = name
        fig.savefig(os.path.join(outdir, name), dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [r["flows"] for r in res["fig2"]]
    ax.errorbar(xs, [r["mpps"] for r in res["fig2"]], yerr=_errbars(res["fig2"]), marker="o", capsize=3,
                label="pynf lb, 1 core (this machine)")
    ax.set_xscale("log")
    ax.set_xlabel("flows (flow-table entries)")
    ax.set_ylabel("throughput (Mpps, 64 B frames)")
    ax2 = ax.twinx()
    ax2.plot([p[0] for p in PAPER["fig2"]], [p[1] for p in PAPER["fig2"]], "s--", color="tab:red",
             label="paper (right axis, their testbed)")
    ax2.set_ylabel("paper: Mpps")
    ax.set_title("Fig. 2: LB throughput vs flow-table size")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    save(fig, "fig2", "fig2_lb_flows.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sizes = sorted({r["frame_size"] for r in res["fig5"]})
    w = 0.27
    for k, (label, model) in enumerate((("generator (line rate)", None), ("RTC", "rtc"), ("PL", "pl"))):
        if model is None:
            vals = [next(r["line_gbps"] for r in res["fig5"] if r["frame_size"] == s) for s in sizes]
            ax.bar([i + (k - 1) * w for i in range(len(sizes))], vals, w, label=label, color="lightgray")
        else:
            rows = [next(r for r in res["fig5"] if r["frame_size"] == s and r["model"] == model) for s in sizes]
            vals = [r["gbps"] for r in rows]
            err = [[(r["capped_mpps"] - min(r["mpps_min"], r["line_mpps"])) * r["frame_size"] * 8 / 1000 for r in rows],
                   [(min(r["mpps_max"], r["line_mpps"]) - r["capped_mpps"]) * r["frame_size"] * 8 / 1000 for r in rows]]
            ax.bar([i + (k - 1) * w for i in range(len(sizes))], vals, w, yerr=err, capsize=2, label=label)
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("frame size (bytes)")
    ax.set_ylabel("throughput (Gbps, data rate)")
    ax.set_yscale("log")
    ax.set_title(f"Fig. 5: RTC vs PL, capped at {line_rate:g} Gbps line rate")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    save(fig, "fig5", "fig5_rtc_vs_pl.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    draw_fig6(ax, res["fig6"])
    save(fig, "fig6", "fig6_rtc_state.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    nfs = [r["nf"] for r in res["table2"]]
    w = 0.2
    for k, (key, label) in enumerate((("rtc", "pynf RTC"), ("pl", "pynf PL"), ("paper_rtc", "paper RTC"),
                                      ("paper_pl", "paper PL"))):
        ax.bar([i + (k - 1.5) * w for i in range(len(nfs))], [r[key] for r in res["table2"]], w, label=label,
               hatch="//" if key.startswith("paper") else None)
    ax.set_xticks(range(len(nfs)), nfs)
    ax.set_ylabel("cycles per packet")
    ax.set_title("Table 2: per-NF cycles, RTC vs PL")
    ax.legend(fontsize=8)
    save(fig, "table2", "table2_cycles.png")
    return files


def _errbars(rows, key="mpps"):
    return ([r[key] - r["mpps_min"] for r in rows], [r["mpps_max"] - r[key] for r in rows])


def draw_fig6(ax, fig6):
    """Fig. 6 on a matplotlib axis: Mpps by flows, a line per frame size
    and flow-cache setting, and the paper's drop scaled to our 1K point."""
    for model, style, what in (("rtc", "o-", ""), ("rtc+cache", "^:", ", flow cache on")):
        for size in sorted({r["frame_size"] for r in fig6}):
            rows = [r for r in fig6 if r["frame_size"] == size and r["model"] == model]
            if rows:
                ax.errorbar([r["flows"] for r in rows], [r["mpps"] for r in rows],
                            yerr=_errbars(rows),
                            fmt=style, capsize=3, label=f"pynf RTC chain, {size} B{what}")
    rows = [r for r in fig6 if r["flows"] == 1000 and r["model"] == "rtc"]
    if rows:
        base = rows[0]["mpps"]
        mid = sum(PAPER["fig6_drop"]) / 2
        ax.plot([1000, 100_000], [base, base / mid], "s--", color="tab:red",
                label=f"paper: {PAPER['fig6_drop'][0]}-{PAPER['fig6_drop'][1]}x drop 1K->100K (scaled)")
    ax.set_xscale("log")
    ax.set_xlabel("flows (LB and L3FWD table entries)")
    ax.set_ylabel("throughput (Mpps)")
    ax.set_title("Fig. 6: RTC throughput vs NF state size")
    ax.legend(fontsize=8)


def report_md(res, info, files, line_rate, mode):
    L = [f"# The paper's experiments on {info['host']} ({info['date']})", ""]
    L += [f"`pynf bench paper{' --quick' if mode == 'quick' else ''} --io {info['io']} --line-rate {line_rate:g}`", ""]
    L += ["## Machine", ""]
    for k in ("cpu", "cores", "caches", "tsc_ghz", "io", "dpdk", "python", "numba"):
        if k in info:
            L.append(f"- {k}: {info[k]}")
    L += ["", f"Each point: median of {res['sweep']['repeats']} runs, spread min-max; every run "
          "conserved packets (rx = tx + drops).", ""]
    L += ["## The paper's claims here", ""]
    for claim, verdict, why in verdicts(res, line_rate):
        L.append(f"- **{claim}**: {verdict} here, because {why}.")
    L += ["", "## Table 2: per-NF cycles/packet (TSC), RTC vs PL, 1K flows, 64 B", "",
          "| NF | RTC | PL | PL - RTC | paper RTC | paper PL |", "|---|---|---|---|---|---|"]
    for r in res["table2"]:
        L.append(f"| {r['nf']} | {r['rtc']} | {r['pl']} | {r['pl'] - r['rtc']:+.1f} | "
                 f"{r['paper_rtc']} | {r['paper_pl']} |")
    L += ["", f"Ring hop (PL minus RTC busy cycles per packet, per hop): {res['hop']} cycles"
          + (" (PL oversubscribed)" if res["pl_oversubscribed"] else ""), "",
          f"![Table 2]({files['table2']})", ""]
    L += ["## Fig. 2: lb alone by flow-table size (1 core, 64 B)", "", "| flows | Mpps | min | max |",
          "|---|---|---|---|"]
    L += [f"| {r['flows']:,} | {r['mpps']} | {r['mpps_min']} | {r['mpps_max']} |" for r in res["fig2"]]
    L += ["", f"![Fig. 2]({files['fig2']})", ""]
    L += [f"## Fig. 5: RTC vs PL by frame size, {line_rate:g} Gbps line rate", "",
          "| frame | model | Mpps measured | Mpps capped | Gbps | line Gbps | workers/cores |",
          "|---|---|---|---|---|---|---|"]
    for r in res["fig5"]:
        L.append(f"| {r['frame_size']} | {r['model']} | {r['mpps']} | {r['capped_mpps']} | {r['gbps']} | "
                 f"{r['line_gbps']} | {r['workers']}/{r['cores']}{' oversubscribed' if r['oversubscribed'] else ''} |")
    L += ["", f"![Fig. 5]({files['fig5']})", ""]
    L += ["## Fig. 6: RTC chain by state size (and with the flow cache on)", "",
          "| flows | frame | flow cache | Mpps | min | max |", "|---|---|---|---|---|---|"]
    L += [f"| {r['flows']:,} | {r['frame_size']} | {'on' if r['model'] == 'rtc+cache' else 'off'} | "
          f"{r['mpps']} | {r['mpps_min']} | {r['mpps_max']} |" for r in res["fig6"]]
    L += ["", f"![Fig. 6]({files['fig6']})", ""]
    return "\n".join(L) + "\n"


def run_paper(a, out, err):
    from rich.progress import Progress
    mode = "quick" if a.quick else "full"
    os.makedirs(a.out, exist_ok=True)
    info = machine(a.io)
    n = total_runs(mode, a.repeats)
    with Progress(transient=True, console=None) as prog:
        task = prog.add_task(f"pynf bench paper ({mode}, {n} runs)", total=n)
        res = run_experiments(mode, a.io, a.line_rate, a.repeats, err,
                              tick=lambda: prog.advance(task))
    for name in ("fig2", "fig5", "fig6", "table2"):
        write_csv(os.path.join(a.out, f"{name}.csv"), res[name])
    files = plots(res, a.out, a.line_rate)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(report_md(res, info, files, a.line_rate, mode))
    out.write(f"pynf bench paper: wrote {a.out}/report.md, 4 CSVs and 4 plots\n")
    for claim, verdict, _why in verdicts(res, a.line_rate):
        out.write(f"- {claim}: {verdict}\n")
    return 0
