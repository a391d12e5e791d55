"""TSC calibration and the run report (the --json contract of docs/design.md)."""
import collections
import os
import threading
import time

import numpy as np

from pynf import flowcache
from pynf.slots import (
    NF_CACHED,
    NF_CYCLES,
    NF_DROPS,
    NF_RX,
    NF_TIMED,
    NF_TX,
    RO_WAIT_CYCLES,
    W_BURSTS,
    W_BUSY,
    W_CYCLES,
    W_IDLE,
    W_PUNTED,
    W_RX,
    W_RX_BYTES,
    W_TX,
)
from pynf.traffic.templates import FCS, WIRE_OVERHEAD


def process_age():
    """Seconds since this process started (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return up - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpp(cycles, packets):
    return round(cycles / packets, 1) if packets else 0.0


def busy(w):
    """A worker's busy cycles: receive + stage + transmit of non-empty
    bursts, less the time it waited for room in a full ring."""
    wait = int(w.dst.opts[RO_WAIT_CYCLES]) if hasattr(w.dst, "opts") and len(w.dst.rings) else 0
    return int(w.ws[W_BUSY]) - wait


def _counters(workers, packets):
    tot = {}
    for w in workers:
        for k, v in (w.counters or {}).items():
            tot[k] = tot.get(k, 0) + v
    return {k: round(v / packets, 2) for k, v in tot.items()} if tot and packets else None


def nf_stats(rt):
    """{nf: {name: value}} of the NFs with stats (stats=, counters=, maps in
    their state: NFSpec.stats_of), from the states of all their replicas,
    read live."""
    out = {}
    for ss in rt.specs:
        for sp in ss:
            if sp.name not in out:
                vals = sp.stats_of(rt.mail.states(sp.name))
                if vals:
                    out[sp.name] = vals
    return out


def port_counts(rt):
    """{port: {rx, rx_bytes, tx, tx_bytes}}: what pynf received from and sent
    to each port (DPDK: ethdev ids; in-memory: port numbers), read live."""
    out = {}

    def add(p, k, v):
        d = out.setdefault(int(p), {"rx": 0, "rx_bytes": 0, "tx": 0, "tx_bytes": 0})
        d[k] += int(v)
    for w in rt.workers:
        if w.stage == 0:
            pstat = getattr(w.src, "pstat", None)
            if pstat is not None:               # DPDK: per port polled
                for r, p in enumerate(w.src.ports):
                    add(p, "rx", pstat[r, 0])
                    add(p, "rx_bytes", pstat[r, 1])
            else:                               # in-memory: one queue, one port
                add(w.src.port, "rx", w.ws[W_RX])
                add(w.src.port, "rx_bytes", w.ws[W_RX_BYTES])
        for p in np.nonzero(w.txstat[:, 0])[0]:
            add(p, "tx", w.txstat[p, 0])
            add(p, "tx_bytes", w.txstat[p, 1])
    return out


def report(rt):
    """The final report of a finished Runtime as a dict."""
    drops = {}
    for w in rt.workers:
        names = rt.reason_names(w.stage)
        for code in w.drops.nonzero()[0]:
            n = names.get(int(code), f"reason_{code}")
            drops[n] = drops.get(n, 0) + int(w.drops[code])
    slow = getattr(rt, "slow", None)
    if slow is not None:
        for n, v in slow.drops.items():
            drops[n] = drops.get(n, 0) + v
    rx, tx, _ = rt.totals()
    first = [w for w in rt.workers if w.stage == 0]
    rx_bytes = sum(int(w.ws[W_RX_BYTES]) for w in first)
    el = max(rt.live_elapsed(), 1e-9)
    nfs, stages = {}, []
    total_cycles = 0
    for s, ss in enumerate(rt.specs):
        ws = [w for w in rt.workers if w.stage == s]
        cyc = sum(int(w.ws[W_CYCLES]) for w in ws)
        srx = sum(int(w.nfstat[-1, NF_RX]) for w in ws)
        total_cycles += cyc
        for j, spec in enumerate(ss):
            r = sum(int(w.nfstat[j, NF_RX]) for w in ws)
            nfs[spec.name] = {
                "rx": r,
                "tx": sum(int(w.nfstat[j, NF_TX]) for w in ws),
                "drops": sum(int(w.nfstat[j, NF_DROPS]) for w in ws),
                "cycles_per_packet": _cpp(sum(int(w.nfstat[j, NF_CYCLES]) for w in ws),
                                          sum(int(w.nfstat[j, NF_TIMED]) for w in ws)),
                "cached": sum(int(w.nfstat[j, NF_CACHED]) for w in ws),
                "stage": s,
            }
        stages.append({
            "nfs": [sp.name for sp in ss],
            "replicas": sum(1 for w in ws if w.active),
            "cores": [w.core for w in ws if w.active],
            "rx": srx,
            "tx": sum(int(w.ws[W_TX]) for w in ws),
            "drops": sum(int(w.drops.sum()) for w in ws),
            "cycles_per_packet": _cpp(cyc, srx),
            "busy_cycles_per_packet": _cpp(sum(busy(w) for w in ws), srx),
            "ring_wait_cycles_per_packet": _cpp(sum(int(w.ws[W_BUSY]) - busy(w) for w in ws), srx),
            "parse_writeback_cycles_per_packet": _cpp(sum(int(w.nfstat[-1, NF_CYCLES]) for w in ws),
                                                      sum(int(w.nfstat[-1, NF_TIMED]) for w in ws)),
            "bursts": sum(int(w.ws[W_BURSTS]) for w in ws),
            "counters_per_packet": _counters(ws, srx),
            "idle_polls": sum(int(w.ws[W_IDLE]) for w in ws),
            "flow_cache": flowcache.report([w.flowcache for w in ws]),
        })
    rings = []
    for w in rt.workers:
        if w.stage == 0:
            continue
        for u in range(len(w.src.rings)):
            polls, tot, mx = (int(x) for x in w.src.fill[u])
            rings.append({"from": f"s{w.stage - 1}r{u}", "to": f"s{w.stage}r{w.replica}",
                          "size": rt.opts.ring_size,
                          "fill_mean": round(tot / polls, 2) if polls else 0.0, "fill_max": mx})
    ports = {str(p): v for p, v in sorted(port_counts(rt).items())}
    for name, vals in nf_stats(rt).items():
        nfs[name]["state"] = vals
    punted = sum(int(w.ws[W_PUNTED]) for w in rt.workers)
    out = {
        "model": rt.plan.model,
        "chain": rt.plan.chain,
        "stages_spec": rt.plan.spec,
        "cores": len({w.core for w in rt.workers}),
        "workers": len(rt.workers),
        "oversubscribed": rt.oversubscribed,
        "elapsed_s": round(el, 4),
        "io": rt.io.name,
        "rx": rx,
        "tx": tx,
        "drops": dict(sorted(drops.items())),
        "mpps": round(rx / el / 1e6, 4),
        "tx_mpps": round(tx / el / 1e6, 4),
        "gbps": round((rx_bytes + FCS * rx) * 8 / el / 1e9, 4),
        "gbps_wire": round((rx_bytes + (FCS + WIRE_OVERHEAD) * rx) * 8 / el / 1e9, 4),
        "cycles_per_packet": _cpp(total_cycles, rx),
        "busy_cycles_per_packet": _cpp(sum(busy(w) for w in rt.workers), rx),
        "tsc_hz": int(rt.hz),
        "nfs": nfs,
        "stages": stages,
        "rings": rings,
        "ports": ports,
        "burst": rt.opts.burst,
        "startup_s": None if rt.startup_s is None else round(rt.startup_s, 3),
    }
    if slow is not None or punted:
        out["slowpath"] = dict(punted=punted, **(slow.report(rt.workers) if slow is not None else {}))
    out.update(rt.io.report_extra(rt))
    return out


class Rates:
    """The run's totals sampled every `every` seconds on a thread of their
    own (reading the workers' counters, no lock); rates() gives the rise
    over the last `window` seconds, per second: what `pynf ctl stats` adds
    to the report as "rates"."""

    def __init__(self, rt, every=0.1, window=1.0):
        self.rt, self.every, self.window = rt, every, window
        self.samples = collections.deque(maxlen=int(window / every) + 2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="pynf-rates")

    def start(self):
        self.sample()
        self.thread.start()
        return self

    def stop(self):
        self.stopped.set()

    def _run(self):
        while not self.stopped.wait(self.every):
            self.sample()

    def sample(self):
        rx, tx, drops = self.rt.totals()
        rx_bytes = sum(int(w.ws[W_RX_BYTES]) for w in self.rt.workers if w.stage == 0)
        self.samples.append((time.perf_counter(), rx, tx, drops, rx_bytes))

    def rates(self):
        if len(self.samples) < 2:
            return {}
        new = self.samples[-1]
        old = next((x for x in self.samples if new[0] - x[0] <= self.window + self.every / 2),
                   self.samples[0])
        dt = new[0] - old[0]
        if dt <= 0:
            return {}
        d = [b - a for a, b in zip(old[1:], new[1:])]
        return {"interval_s": round(dt, 3), "rx_pps": round(d[0] / dt), "tx_pps": round(d[1] / dt),
                "drops_pps": round(d[2] / dt),
                "rx_gbps": round((d[3] + FCS * d[0]) * 8 / dt / 1e9, 4)}
