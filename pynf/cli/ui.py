"""What a person sees: start-up lines, the live status line, the final tables.

rich is imported where a table or the live line is drawn: a --quiet or
--json run does not pay its 0.07 s of imports at start-up.
"""


def say(err, line):
    err.write(line + "\n")
    err.flush()


class Status:
    """One live line on stderr: elapsed, Mpps, drops."""

    def __init__(self, err):
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text
        self.console = Console(file=err, stderr=True)
        self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
        self.live.start()
        self.last = (0.0, 0)

    def update(self, rt, elapsed):
        rx, tx, drops = rt.totals()
        t0, rx0 = self.last
        if elapsed - t0 < 0.25:
            return
        rate = (rx - rx0) / (elapsed - t0) / 1e6
        self.last = (elapsed, rx)
        from rich.text import Text
        self.live.update(Text(f"{elapsed:6.1f}s  {rate:7.2f} Mpps  rx {rx:,}  tx {tx:,}  drops {drops:,}"))

    def close(self):
        self.live.stop()


def _short(n):
    """A count in at most 6 characters: 999, 23.6k, 1.47M, 123G."""
    n = int(n)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.{2 if v < 10 else 1 if v < 100 else 0}f}{unit}"
    return str(n)


def print_report(rep, out, width=None):
    from rich import box
    from rich.console import Console
    from rich.table import Table
    c = Console(file=out, highlight=False, width=width)
    t = Table(title=f"pynf {rep['model']} {rep['stages_spec']}  ({rep['io']}, {rep['workers']} worker(s), "
                    f"{rep['elapsed_s']:.2f} s)", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("rx", f"{rep['rx']:,}")
    t.add_row("tx", f"{rep['tx']:,}")
    t.add_row("drops", f"{sum(rep['drops'].values()):,}")
    for reason, n in rep["drops"].items():
        t.add_row(f"  {reason}", f"{n:,}")
    t.add_row("Mpps (rx / tx)", f"{rep['mpps']:.3f} / {rep['tx_mpps']:.3f}")
    t.add_row("Gbps (data / wire)", f"{rep['gbps']:.3f} / {rep['gbps_wire']:.3f}")
    t.add_row("cycles/packet (all stages)", f"{rep['cycles_per_packet']:.1f}")
    if "mbufs_in_use" in rep:
        t.add_row("mbufs in use", str(rep["mbufs_in_use"]))
    if "buffers_in_use" in rep:
        t.add_row("buffers in use", str(rep["buffers_in_use"]))
    c.print(t)
    narrow = c.width < 110          # (an 80-column terminal: short numbers and headers)
    num = _short if narrow else (lambda n: f"{n:,}")
    s = Table(title="per stage / NF (TSC cycles per packet the NF saw)", box=box.SIMPLE_HEAD if narrow
              else box.HEAVY_HEAD)
    heads = (("stage", "NF", "replicas/cores", "rx", "tx", "drops", "from cache", "cycles/pkt") if not narrow
             else ("st", "NF", "reps/cores", "rx", "tx", "drops", "cached", "cyc/pkt"))
    for col in heads:
        s.add_column(col, justify="left" if col == "NF" else "right", no_wrap=col != "NF")
    for k, st in enumerate(rep["stages"]):
        fc = st.get("flow_cache")
        s.add_row(str(k), ("(parse, write-back" + (", flow cache)" if fc else ")")) if not narrow
                  else ("(stage" + (", cache)" if fc else ")")),
                  f"{st['replicas']} / {','.join(map(str, st['cores']))}",
                  num(st['rx']), "", "", f"{fc['hit_rate']:.1%}{'' if narrow else ' hits'}" if fc else "",
                  f"{st['parse_writeback_cycles_per_packet']:.1f}")
        for name in st["nfs"]:
            nf = rep["nfs"][name]
            s.add_row("", name, "", num(nf['rx']), num(nf['tx']), num(nf['drops']),
                      num(nf['cached']) if fc else "", f"{nf['cycles_per_packet']:.1f}")
        s.add_row("", "[bold]total[/bold]" if narrow else "[bold]stage total[/bold]", "", num(st['rx']),
                  num(st['tx']), num(st['drops']), "", f"{st['cycles_per_packet']:.1f}")
    c.print(s)
    if rep["rings"]:
        r = Table(title="rings (entries in use when polled)")
        for col in ("from", "to", "size", "fill mean", "fill max"):
            r.add_column(col, justify="right")
        for ring in rep["rings"]:
            r.add_row(ring["from"], ring["to"], str(ring["size"]), f"{ring['fill_mean']:.1f}",
                      str(ring["fill_max"]))
        c.print(r)


def print_rates(rates, out):
    """The last second's rates (`pynf ctl stats`)."""
    if rates:
        out.write(f"last {rates['interval_s']:.1f} s: rx {rates['rx_pps'] / 1e6:.3f} Mpps, "
                  f"tx {rates['tx_pps'] / 1e6:.3f} Mpps, drops {rates['drops_pps']:,}/s, "
                  f"{rates['rx_gbps']:.3f} Gbps\n")


def print_plan(rt, err):
    """The start-up table: each stage, its NFs, replicas, cores and rings."""
    from rich.console import Console
    from rich.table import Table
    c = Console(file=err, stderr=True, highlight=False)
    t = Table(title=f"{rt.plan.model}: {rt.plan.spec}")
    for col in ("stage", "NFs", "replica", "core", "input", "output"):
        t.add_column(col)
    last = len(rt.plan.stages) - 1
    for w in rt.workers:
        nfs = ",".join(s.name for s in rt.specs[w.stage]) or "(none: spreads or gathers flows)"
        if w.stage == 0:
            src = f"{rt.io.name} rx queue {w.replica}"
        else:
            src = ", ".join(f"ring s{w.stage - 1}r{u}" for u in range(rt.plan.stages[w.stage - 1].replicas))
        if w.stage == last:
            dst = f"{rt.io.name} tx queue {w.replica}"
        else:
            dst = ", ".join(f"ring ->s{w.stage + 1}r{d}" for d in range(rt.plan.stages[w.stage + 1].replicas))
        t.add_row(str(w.stage), nfs, str(w.replica), str(w.core), src, dst)
    c.print(t)
    if rt.rings:
        c.print(f"rings: {len(rt.rings)} x {rt.opts.ring_size} entries, single producer / single "
                f"consumer ({rt.io.ring_name}); full ring: "
                f"{'producer waits' if rt.opts.ring_full == 'wait' else 'drop (ring_full)'}")


def print_plan_table(res, out):
    """`pynf plan`: the profile, then placements ranked, with --verify's figures."""
    from rich.console import Console
    from rich.table import Table
    c = Console(file=out, highlight=False, width=140)
    pr = res["profile"]
    c.print(f"measured on {pr['measured_on_cores']} core(s), {pr['flows']} flows, {pr['frame_size']} B: "
            + ", ".join(f"{n} {v:.1f}" for n, v in pr["cycles_per_packet"].items())
            + f" cycles/packet; I/O {pr['io_cycles_per_packet']:.1f}; ring hop {pr['hop_cycles_per_packet']:.1f}")
    ver = {tuple(r["args"]): r for r in (res.get("verify") or {}).get("rows", [])}
    t = Table(title="placements, best predicted first")
    cols = ["#", "placement", "cores", "predicted Mpps"] + (["measured Mpps", "error"] if ver else []) + ["pynf run"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("placement", "pynf run") else "right")
    for k, p in enumerate(res["placements"]):
        v = ver.get(tuple(p["args"]))
        extra = [f"{v['measured_mpps']:.2f}", f"{100 * v['error']:+.1f} %" if v["error"] is not None else "-"] \
            if v else ([] if not ver else ["", ""])
        t.add_row(str(k + 1), " | ".join(f"{','.join(s)} x{r}" for s, r in zip(p["stages"], p["replicas"])),
                  str(p["cores"]), f"{p['predicted_mpps']:.2f}", *extra, "pynf run " + " ".join(p["args"]))
    c.print(t)
    if ver:
        v = res["verify"]
        c.print(f"first choice measured {100 * v['first_choice_vs_best']:.1f} % of the best measured; "
                f"mean absolute error {100 * v['mean_abs_error']:.1f} %")
