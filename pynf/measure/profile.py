"""`pynf profile CHAIN`: each NF's cycles under RTC and under PL, the
difference (what moving packets between cores costs the NF), and the
measured cost of a ring hop; the paper's Table 2 for any chain.

RTC runs the chain fused on one core; PL runs one stage per NF (on this
machine's cores, oversubscribed if there are fewer cores than NFs, which
the output says). The hop cost is the busy cycles per packet of all PL
workers (receive + stage + transmit) minus those of the RTC worker, per
hop: a ring enqueue and dequeue, one more receive/transmit pass and parse,
and the packet's cache lines moving between cores. Hardware counters
(cycles, instructions, L1d and LLC misses per packet, per stage) are added
where perf_event_open works; elsewhere one line says why.
"""
import json

from pynf.measure.perf import probe


def profile(chain, flows=1024, frame_size=64, io=None, duration=2.0, err=None):
    """Per-NF cycles under RTC and PL and the ring-hop cost, from two runs
    made in this process (pynf.cli.launch.invoke)."""
    from pynf.cli.launch import invoke
    base = ["--flows", str(flows), "--frame-size", str(frame_size), "--duration", str(duration),
            "--flow-cache", "off"]           # the NFs themselves (pynf.flowcache would stand in for some)
    if io:
        base += ["--io", io]
    why = probe()
    if why is None:
        base.append("--counters")
    rtc = invoke(["--rtc", chain, *base], err)
    pl = invoke(["--pl", chain, *base], err)
    names = [n for n in rtc["nfs"]]
    hops = len(names) - 1
    rows = []
    for n in names:
        r, p = rtc["nfs"][n]["cycles_per_packet"], pl["nfs"][n]["cycles_per_packet"]
        rows.append({"nf": n, "rtc": r, "pl": p, "difference": round(p - r, 1)})
    hop = round((pl["busy_cycles_per_packet"] - rtc["busy_cycles_per_packet"]) / hops, 1) if hops else None
    return {
        "chain": chain, "flows": flows, "frame_size": frame_size, "io": rtc["io"],
        "nfs": rows,
        "stage_busy_cycles_per_packet": {"rtc": rtc["busy_cycles_per_packet"],
                                         "pl": pl["busy_cycles_per_packet"]},
        "ring_hop_cycles": hop,
        "pl_workers": pl["workers"], "pl_cores": pl["cores"], "pl_oversubscribed": pl["oversubscribed"],
        "mpps": {"rtc": rtc["mpps"], "pl": pl["mpps"]},
        "counters": {"rtc": [s["counters_per_packet"] for s in rtc["stages"]],
                     "pl": [s["counters_per_packet"] for s in pl["stages"]]} if why is None else None,
        "counters_note": why,
    }


def print_profile(res, out):
    from rich.console import Console
    from rich.table import Table
    c = Console(file=out, highlight=False)
    t = Table(title=f"pynf profile {res['chain']} ({res['io']} I/O, {res['flows']} flows, "
                    f"{res['frame_size']} B): TSC cycles per packet")
    for col in ("NF", "RTC", "PL", "PL - RTC"):
        t.add_column(col, justify="right" if col != "NF" else "left")
    for r in res["nfs"]:
        t.add_row(r["nf"], f"{r['rtc']:.1f}", f"{r['pl']:.1f}", f"{r['difference']:+.1f}")
    b = res["stage_busy_cycles_per_packet"]
    t.add_row("all stages, busy", f"{b['rtc']:.1f}", f"{b['pl']:.1f}", f"{b['pl'] - b['rtc']:+.1f}")
    c.print(t)
    if res["ring_hop_cycles"] is not None:
        c.print(f"ring hop: {res['ring_hop_cycles']:.1f} cycles per packet per hop "
                "(the paper measured 52-68 on its Xeon)")
    c.print(f"throughput: RTC {res['mpps']['rtc']:.2f} Mpps on 1 core, PL {res['mpps']['pl']:.2f} Mpps "
            f"on {res['pl_workers']} workers / {res['pl_cores']} cores"
            + (" (oversubscribed: fewer cores than stages)" if res["pl_oversubscribed"] else ""))
    if res["counters_note"]:
        c.print(f"note: {res['counters_note']}")
    elif res["counters"]:
        c.print(f"hardware counters per packet, per stage: {json.dumps(res['counters'])}")
