"""Prometheus metrics: `pynf run --metrics [ADDR:]PORT` serves /metrics.

prometheus_client serves the text format; this module is one custom
collector that, at each scrape, reads the counters the workers already
keep (numpy arrays they add to; no lock is taken, nothing on the fast path
changes) and the live run report (pynf.runtime.report.report), so a scrape and
`pynf ctl stats` agree. Names and labels follow Prometheus' conventions:
counters end in _total, units are in the name (bytes, cycles), one metric
name per quantity and labels for ports, NFs, reasons, stages.

    pynf_rx_packets_total / pynf_tx_packets_total    the chain's, as in the report
    pynf_port_{rx,tx}_{packets,bytes}_total{port}    what pynf received / sent per port
    pynf_drops_total{reason}                         every counted drop (docs/design.md)
    pynf_nf_packets_total{nf,direction="in"|"out"}, pynf_nf_drops_total{nf}
    pynf_nf_cycles_total{nf}, pynf_nf_timed_packets_total{nf}, pynf_nf_cached_packets_total{nf}
                                                     cycles over the packets they timed:
                                                     rate() / rate() = cycles per packet
    pynf_flow_cache_{hits,misses,inserts,evictions,resent,refused,invalidations,switches}_total{stage},
    pynf_flow_cache_entries{stage}, pynf_flow_cache_replicas_on{stage}
                                                     the flow cache (pynf/flowcache/): gauges
                                                     for its size and how many replicas use it
    pynf_worker_busy_cycles_total{stage,replica}, pynf_worker_idle_polls_total{...}
    pynf_tsc_hz                                      to turn cycles into seconds
    pynf_ring_fill_entries{from,to} (summary: _sum/_count over polls), pynf_ring_size_entries
    pynf_buffers_in_use                              mbufs (DPDK) or pool buffers (in-memory)
    pynf_nic_*_total{port}                           the NIC's own counters (DPDK: rte_eth_stats)
    pynf_<nf>_<name>[_total]                         what an NF's stats= reports (lb: flows,
                                                     flow_capacity, expired/evicted/new_total)
    pynf_slowpath_*_total, pynf_neigh_entries, pynf_neigh_*_total
"""
import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.process_collector import ProcessCollector

from pynf.errors import UsageError, is_decimal
from pynf.flowcache.table import FC_REPORT
from pynf.runtime.report import report
from pynf.slots import NF_CACHED, NF_CYCLES, NF_DROPS, NF_RX, NF_TIMED, NF_TX, W_BUSY, W_IDLE

NIC = (("ipackets", "rx_packets"), ("opackets", "tx_packets"), ("ibytes", "rx_bytes"),
       ("obytes", "tx_bytes"), ("imissed", "rx_missed"), ("ierrors", "rx_errors"),
       ("oerrors", "tx_errors"), ("rx_nombuf", "rx_nombuf"))


def _counter(name, doc, labels=()):
    return CounterMetricFamily(name, doc, labels=list(labels))


class RunCollector:
    """Collects a running Runtime's figures at each scrape."""

    def __init__(self, rt):
        self.rt = rt
        self.lock = threading.Lock()         # scrapes one at a time (never held by workers)

    def collect(self):
        with self.lock:
            yield from self._collect()

    def _collect(self):
        rt = self.rt
        rep = report(rt)
        c = _counter("pynf_rx_packets", "Packets the chain received")
        c.add_metric([], rep["rx"])
        yield c
        c = _counter("pynf_tx_packets", "Packets the chain sent")
        c.add_metric([], rep["tx"])
        yield c
        fams = {k: _counter(f"pynf_port_{k}", f"Port {k.replace('_', ' ')} (pynf's count)", ["port"])
                for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
        for p, d in rep["ports"].items():
            fams["rx_packets"].add_metric([p], d["rx"])
            fams["rx_bytes"].add_metric([p], d["rx_bytes"])
            fams["tx_packets"].add_metric([p], d["tx"])
            fams["tx_bytes"].add_metric([p], d["tx_bytes"])
        yield from fams.values()
        c = _counter("pynf_drops", "Packets dropped, by reason", ["reason"])
        for reason, n in rep["drops"].items():
            c.add_metric([reason], n)
        yield c
        yield from self._nfs()
        yield from self._workers()
        yield from self._rings(rep)
        yield from self._flow_cache(rep)
        g = GaugeMetricFamily("pynf_tsc_hz", "TSC ticks per second (cycles to seconds)")
        g.add_metric([], rt.hz)
        yield g
        in_use = rep.get("mbufs_in_use", rep.get("buffers_in_use"))
        if in_use is not None:
            g = GaugeMetricFamily("pynf_buffers_in_use", "Packet buffers out of the pool (mbufs on DPDK)")
            g.add_metric([], in_use)
            yield g
        if rep.get("nic"):
            for key, name in NIC:
                c = _counter(f"pynf_nic_{name}", f"The NIC's own {key} counter (rte_eth_stats)", ["port"])
                for p, d in rep["nic"].items():
                    c.add_metric([p], d[key])
                yield c
        for nf, d in rep["nfs"].items():
            for k, v in (d.get("state") or {}).items():
                name = f"pynf_{nf}_{k}"
                if k.endswith("_total"):
                    c = _counter(name[:-len("_total")], f"{nf}: {k[:-6]}")
                    c.add_metric([], v)
                    yield c
                else:
                    g = GaugeMetricFamily(name, f"{nf}: {k}")
                    g.add_metric([], v)
                    yield g
        yield from self._slowpath(rep.get("slowpath"))

    def _nfs(self):
        rt = self.rt
        pk = _counter("pynf_nf_packets", "Packets an NF received (in) and passed on (out)",
                      ["nf", "direction"])
        dr = _counter("pynf_nf_drops", "Packets an NF dropped", ["nf"])
        cy = _counter("pynf_nf_cycles", "TSC cycles an NF spent on the packets it timed", ["nf"])
        tp = _counter("pynf_nf_timed_packets", "Packets whose NF cycles were timed", ["nf"])
        ca = _counter("pynf_nf_cached_packets", "Packets whose NF effect came from the flow cache", ["nf"])
        for s, ss in enumerate(rt.specs):
            ws = [w for w in rt.workers if w.stage == s]
            for j, spec in enumerate(ss):
                def tot(col, j=j, ws=ws):
                    return sum(int(w.nfstat[j, col]) for w in ws)
                pk.add_metric([spec.name, "in"], tot(NF_RX))
                pk.add_metric([spec.name, "out"], tot(NF_TX))
                dr.add_metric([spec.name], tot(NF_DROPS))
                cy.add_metric([spec.name], tot(NF_CYCLES))
                tp.add_metric([spec.name], tot(NF_TIMED))
                ca.add_metric([spec.name], tot(NF_CACHED))
        yield from (pk, dr, cy, tp, ca)

    def _flow_cache(self, rep):
        gauges = {"capacity": ("pynf_flow_cache_entries", "Flow cache capacity (entries)"),
                  "on": ("pynf_flow_cache_replicas_on", "Stage replicas whose flow cache is in use")}
        fams = {k: (GaugeMetricFamily(*gauges[k], labels=["stage"]) if k in gauges
                    else _counter(f"pynf_flow_cache_{k}", f"Flow cache {k}", ["stage"]))
                for k, _ in FC_REPORT}
        for s, st in enumerate(rep["stages"]):
            for k, v in (st.get("flow_cache") or {}).items():
                if k in fams:
                    fams[k].add_metric([str(s)], v)
        yield from fams.values()

    def _workers(self):
        busy = _counter("pynf_worker_busy_cycles", "TSC cycles a worker spent on non-empty bursts",
                        ["stage", "replica"])
        idle = _counter("pynf_worker_idle_polls", "Polls that found nothing", ["stage", "replica"])
        for w in self.rt.workers:
            lab = [str(w.stage), str(w.replica)]
            busy.add_metric(lab, int(w.ws[W_BUSY]))
            idle.add_metric(lab, int(w.ws[W_IDLE]))
        yield from (busy, idle)

    def _rings(self, rep):
        if not self.rt.rings:
            return
        fill = SummaryMetricFamily("pynf_ring_fill_entries",
                                   "Entries in a ring when its consumer polled it", labels=["from", "to"])
        size = GaugeMetricFamily("pynf_ring_size_entries", "Ring size", labels=["from", "to"])
        for w in self.rt.workers:
            if w.stage == 0:
                continue
            for u in range(len(w.src.rings)):
                polls, tot, _ = (int(x) for x in w.src.fill[u])
                lab = [f"s{w.stage - 1}r{u}", f"s{w.stage}r{w.replica}"]
                fill.add_metric(lab, count_value=polls, sum_value=tot)
                size.add_metric(lab, self.rt.opts.ring_size)
        yield from (fill, size)

    def _slowpath(self, sp):
        if not sp:
            return
        for k in ("punted", "received", "sent", "originated", "originate_failed"):
            if k in sp:
                c = _counter(f"pynf_slowpath_{k}", f"Slow path: {k.replace('_', ' ')}")
                c.add_metric([], sp[k])
                yield c
        nb = sp.get("neighbours")
        if nb:
            g = GaugeMetricFamily("pynf_neigh_entries", "Neighbour (ARP) table entries")
            g.add_metric([], nb.get("entries", 0))
            yield g
            for k, v in nb.items():
                if k != "entries":
                    c = _counter(f"pynf_neigh_{k}", f"Neighbour table: {k}")
                    c.add_metric([], v)
                    yield c


def scrape(addr, port, timeout=10):
    """Read a pynf's /metrics back: {(sample name, ((label, value), ...)): value},
    parsed with prometheus_client's own parser (bench.dashboard, the tests)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://{addr}:{port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def parse_listen(text):
    """'[ADDR:]PORT' -> (addr, port); ADDR defaults to 127.0.0.1."""
    addr, sep, port = text.rpartition(":")
    if not sep:
        addr = "127.0.0.1"
    addr = addr.strip("[]") or "127.0.0.1"
    if not is_decimal(port) or not 0 < int(port) < 65536:
        raise UsageError(f"--metrics {text}: want [ADDR:]PORT with PORT 1..65535")
    return addr, int(port)


class MetricsServer:
    """/metrics over HTTP (prometheus_client's server) for one Runtime."""

    def __init__(self, rt, listen):
        self.addr, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RunCollector(rt))
        self.registry.register(ProcessCollector(registry=None))
        try:
            self.httpd, self.thread = start_http_server(self.port, self.addr, registry=self.registry)
        except OSError as e:
            raise UsageError(f"--metrics {listen}: cannot listen: {e.strerror or e}") from None

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
