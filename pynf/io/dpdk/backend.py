"""DPDK I/O: ethdev ports through the shim, mbufs straight into the stage.

With EAL arguments (`pynf run ... -- EAL ARGS`) they go to rte_eal_init
unchanged and the ports are whatever the EAL created (NICs, net_pcap,
net_null, net_ring, net_memif, net_af_packet, net_tap). Without, pynf needs
neither a NIC nor hugepages: it starts the EAL with --no-huge --no-pci and
attaches virtual devices itself:

- receive: one net_pcap device with one rx_pcap stream (= queue) per
  first-stage replica. The built-in traffic (or --pcap-in) is written into
  those per-queue files split by a hash of the 5-tuple, so a flow always
  reaches the same replica: net_pcap has no RSS, so the split is done in
  software when the files are written. Replayed in a loop (infinite_rx)
  unless a --pcap-in is to be replayed once.
- transmit: one net_null device per --tx-ports entry, or with --pcap-out one
  net_pcap device with one tx_pcap stream per last-stage replica; the
  streams are merged by timestamp into the --pcap-out file at the end.

NF output port k goes to tx port list[k % len]. Every worker gets its own
rx queue on each rx port and its own tx queue on each tx port (queue =
replica index), so no queue is shared between cores.
"""
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pynf import shim
from pynf.compiler.loops import LoopParts
from pynf.errors import RuntimeFailure, UsageError
from pynf.io import pcap
from pynf.io.dpdk import kernels as dk
from pynf.io.dpdk.eal import (
    MBUF_CACHE,
    DpdkPool,
    RteRing,
    available,
    cpu_node,
    eal_args,
    eal_init,
    strerror,
    why_unavailable,
)
from pynf.io.ring import make_ring_in, make_ring_out
from pynf.packet.batch import DATAROOM, HEADROOM
from pynf.slots import PORT_STATS

RX_DESC = 1024
TX_DESC = 1024


PCAP_MAX_QUEUES = 16        # DPDK's RTE_PMD_PCAP_MAX_QUEUES


class DpdkIO:
    """DPDK ports and an mbuf pool as the runtime sees them; a
    pynf.io.backend.Backend."""

    name = "dpdk"

    def __init__(self, feed, opts, say=lambda s: None, tx_ports_given=False, bound=None):
        """feed: a pynf.io.feed.Feed, or a function that builds one (built-in
        traffic, which loops) with bound = (frames at most, longest frame):
        then the EAL and the mbuf pool are started before it is built."""
        if not available():
            raise RuntimeFailure(f"--io dpdk: {why_unavailable()}")
        self._feed, self.opts, self.say = feed, opts, say
        self._bound = bound
        self.tx_ports_given = tx_ports_given
        self.user_eal = bool(opts.eal_args)
        self.probed = []             # ports pynf attached (removed at close)
        self.tmp = None              # the tx pcap streams (--pcap-out)
        self.rx_tmp = None           # the rx pcap streams (RAM-backed where there is room)
        self.pool = None
        self._pool_job = None        # the pool being made, then the ports set up on it
        self._ports_job = None       # (open -> ready, on a thread of their own)
        self.queues = []
        self.stats0 = {}
        self.tx_files = None
        self.rx_ports, self.tx_ports = [], []
        self.closed = False

    @property
    def feed(self):
        if callable(self._feed):
            self._feed = self._feed()
        return self._feed

    def _frames(self):
        """(frames the rx devices keep, longest frame), from the bound
        while the feed is not built yet."""
        if callable(self._feed):
            return self._bound
        f = self.feed
        return (f.frames if f.once else sum(len(s) for s in f.seqs),
                int(f.t_len.max()) if len(f.t_len) else 0)

    # -- set-up --

    slowpath = True             # punted packets go to pynf.control.slowpath
    ring_name = "rte_ring"
    # the worker loops' I/O (pynf.compiler.loops): ethdev queues, rte_rings
    # between stages; the last stage's first replica sends what the slow
    # path queued
    loop_parts = LoopParts(
        imports="from pynf.io.dpdk import kernels as _dk\nfrom pynf.io import ring as _ring",
        rx={"nic": "_dk.rx(src, pool.base, h, b, burst, drops, ws)",
            "ring": "_dk.ring_rx(src, pool.base, h, b, burst, ws)"},
        done={"nic": "src.st[3] != 0", "ring": "upstream_done[0] != 0 and _ring.rings_empty(src)"},
        tx={"nic": "_dk.tx(b, live, m, n, h, dst, txmap, txstat, drops, ws)",
            "ring": "_dk.ring_tx(b, live, m, n, h, dst, drops, ws, cache)"},
        inject={"nic": "_dk.inject(dst, txmap, txstat, drops, ws)"})

    def open(self, nq, opts):
        ntx = opts.n_tx_queues
        if opts.ifaces:
            rx, tx, expected = self._attach_ifaces(nq, ntx, opts)
            self.rx_ring_mbufs = {}
        elif self.user_eal:
            self._check_hugepages(opts.eal_args)
            eal_init(list(opts.eal_args))
            ports = self._ports()
            if not ports:
                raise RuntimeFailure("the EAL created no ethdev ports (give --vdev=... or a NIC's PCI address)")
            rx = list(opts.rx_ports)
            tx = list(opts.tx_ports) if self.tx_ports_given else ([p for p in ports if p not in rx] or rx)
            for p in rx + tx:
                if p not in ports:
                    raise UsageError(f"--rx-ports/--tx-ports: no ethdev port {p} (ports: {ports})")
            expected = [-1] * nq
            self.rx_ring_mbufs = {0: self._infinite_mbufs(opts.eal_args)}
        else:
            rx, tx, expected = self._attach_vdevs(nq, ntx, opts)
        # pynf's own devices only: other devices may bring frames of any size
        room = self._data_room() if not (opts.ifaces or self.user_eal) else 0
        self.rx_ports, self.tx_ports = rx, tx
        infos = {p: self._info(p) for p in set(rx + tx)}
        socket = max(infos[rx[0]]["socket"], 0)
        for p in sorted(set(rx + tx)):
            nrx = nq if p in rx else 0
            ntxq = ntx if p in tx else 0
            if nrx > infos[p]["max_rx"] or ntxq > infos[p]["max_tx"]:
                raise RuntimeFailure(f"port {p} ({infos[p]['name']}) has {infos[p]['max_rx']} rx / "
                                     f"{infos[p]['max_tx']} tx queues; {nrx} / {ntxq} needed")
        if self._pool_job is None:
            self._start_pool(self._pool_size(nq, ntx, len(set(rx)), len(set(tx)), opts), socket, room)
        setup = [(p, nq if p in rx else 0, ntx if p in tx else 0, infos[p]["name"]) for p in sorted(set(rx + tx))]
        self._ports_job = self._bg.submit(self._setup_ports, self._pool_job, setup)    # on the pool's thread
        self._bg.shutdown(wait=False)
        rss = {p: infos[p]["rss"] and nq > 1 for p in rx}
        for i in opts.ifaces or []:
            i.mac = int.from_bytes(bytes(infos[i.port]["mac"]), "big")
        self._check_numa(infos, opts)
        self.txmap = np.arange(len(tx), dtype=np.int32)
        self.say(self._describe(infos, nq, ntx, rss))
        from pynf.packet.clock import tsc_hz
        hz = tsc_hz()
        for k in range(nq):
            budget = -1
            if opts.packets is not None:
                budget = opts.packets // nq + (1 if k < opts.packets % nq else 0)
            pnum = list(range(len(rx))) if opts.ifaces else None
            self.queues.append(dk.make_rx(rx, k, budget=budget, expected=expected[k], pnum=pnum,
                                          tsc_per_bit=hz / (opts.rate * 1e9 / nq) if opts.rate else 0.0,
                                          tsc_per_frame=hz / (opts.pps / nq) if opts.pps else 0.0))

    def _pool_size(self, nq, ntx, nrx_ports, ntx_ports, opts):
        """mbufs: every descriptor ring full, what the rx devices keep, the
        rings between stages, every worker's cache and burst, and room."""
        return (nrx_ports * nq * RX_DESC + ntx_ports * ntx * TX_DESC + sum(self.rx_ring_mbufs.values())
                + (opts.ring_slots or 0) + (opts.n_workers + 1) * (MBUF_CACHE * 2 + 512) + 4096)

    def _start_pool(self, n, socket, room):
        """Make the pool on a thread of its own (the C calls hold no GIL),
        then set the ports up on it there (open() queues that): the rest
        of open() and the NFs' states go on meanwhile; ready() waits."""
        self._bg = ThreadPoolExecutor(1, thread_name_prefix="pynf-dpdk-open")
        self._pool_job = self._bg.submit(DpdkPool, n, socket, room)

    def _setup_ports(self, pool_job, setup):
        self.pool = pool_job.result()
        for p, nrx, ntxq, name in setup:
            ret = shim.dpdk.pynf_port_setup(p, nrx, ntxq, RX_DESC, TX_DESC, self.pool.ptr, 1)
            if ret < 0:
                raise RuntimeFailure(f"port {p} ({name}) cannot be configured: {strerror(ret)}")
            self.stats0[p] = self.port_stats(p)

    def ready(self):
        """Wait for the mbuf pool and the ports set up on it. Making a
        million mbufs first touches their memory (0.5 s here) and net_pcap
        then copies its file into them (0.2 s): open() leaves both running
        beside the NFs' state building (bench/RESULTS.md)."""
        self._finish()

    def _finish(self):
        """The background work's outcome (its error, raised here), once."""
        jobs, self._pool_job, self._ports_job = (self._pool_job, self._ports_job), None, None
        for job in jobs:
            if job is not None:
                job.result()

    def _check_hugepages(self, eal_args):
        if any(a == "--no-huge" for a in eal_args):
            return
        free = 0
        base = "/sys/kernel/mm/hugepages"
        try:
            for d in os.listdir(base):
                with open(os.path.join(base, d, "free_hugepages")) as f:
                    free += int(f.read())
        except OSError:
            return
        if free == 0:
            self.say("pynf: warning: no free hugepages (see README, 'DPDK on a real NIC'); "
                     "the EAL will fail unless --no-huge is given")

    def _check_numa(self, infos, opts):
        cores = opts.cores or sorted(os.sched_getaffinity(0))
        for p in set(self.rx_ports + self.tx_ports):
            sock = infos[p]["socket"]
            if sock < 0:
                continue
            far = [c for c in cores[:opts.n_workers] if cpu_node(c) not in (sock, -1)]
            if far:
                self.say(f"pynf: warning: port {p} is on NUMA node {sock} but workers run on cores "
                         f"{far} of another node: every packet crosses the interconnect")

    def queue_check(self, nq, ntx, opts):
        """Can the ports give each of nq receiving replicas its own RSS queue,
        and each of ntx transmitting replicas its own tx queue? Returns
        (rx_why, tx_why): None where they can. pynf's own vdevs always can
        (their rx streams are split by hash, their tx queues made to fit)."""
        if not self.user_eal or (nq <= 1 and ntx <= 1):
            return None, None
        self._check_hugepages(opts.eal_args)
        eal_init(list(opts.eal_args))
        ports = self._ports()
        rx = [p for p in opts.rx_ports if p in ports]
        tx = list(opts.tx_ports) if self.tx_ports_given else ([p for p in ports if p not in rx] or rx)
        rx_why = tx_why = None
        for p in rx if nq > 1 else []:
            info = self._info(p)
            if not info["rss"]:
                rx_why = f"port {p} ({info['name']}) has no RSS"
            elif info["max_rx"] < nq:
                rx_why = f"port {p} ({info['name']}) has {info['max_rx']} rx queue(s)"
        for p in tx if ntx > 1 else []:
            if p in ports and self._info(p)["max_tx"] < ntx:
                tx_why = f"port {p} ({self._info(p)['name']}) has {self._info(p)['max_tx']} tx queue(s)"
        return rx_why, tx_why

    @staticmethod
    def _infinite_mbufs(eal_args):
        """mbufs a net_pcap infinite_rx device keeps (its whole file, in a ring)."""
        total = 0
        for arg in eal_args:
            if "infinite_rx=1" not in arg:
                continue
            for part in arg.split(","):
                if part.startswith("rx_pcap="):
                    total += len(pcap.read(part[len("rx_pcap="):]))
        return total

    def _ports(self):
        out, p = [], shim.dpdk.pynf_port_next(-1)
        while p >= 0:
            out.append(p)
            p = shim.dpdk.pynf_port_next(p)
        return out

    def _info(self, p):
        ffi = shim.dffi
        info = ffi.new("pynf_port_info *")
        ret = shim.dpdk.pynf_port_info_get(p, info)
        if ret < 0:
            raise RuntimeFailure(f"port {p}: {strerror(ret)}")
        return dict(name=ffi.string(info.name).decode(), driver=ffi.string(info.driver).decode(),
                    max_rx=info.max_rx_queues, max_tx=info.max_tx_queues, socket=info.socket,
                    rss=info.rss_offloads != 0, mac=list(info.mac))

    def _attach_vdevs(self, nq, ntx, opts):
        if list(opts.rx_ports) != [0]:
            raise UsageError(f"--rx-ports {','.join(map(str, opts.rx_ports))}: with built-in traffic or "
                             "--pcap-in pynf makes its own ports and receives on port 0; --rx-ports picks "
                             "among ports given with EAL arguments (after --)")
        for what, n in (("first", nq), ("last", ntx if opts.pcap_out else 0)):
            if n > PCAP_MAX_QUEUES:
                raise UsageError(f"{n} replicas in the {what} stage: pynf's own DPDK device (net_pcap) "
                                 f"has at most {PCAP_MAX_QUEUES} queues (use --io mem, or fewer --cores)")
        mb = self._memory_mb(opts)
        eal_init(["--no-huge", "--no-pci", "-m", str(mb), "--no-shconf", "--no-telemetry",
                  "-l", str(sorted(os.sched_getaffinity(0))[0]), "--log-level=4"], managed=True)
        tag = f"{os.getpid()}_{DpdkPool._seq + 1}"
        loop = callable(self._feed) or not self.feed.once
        self.rx_ring_mbufs = {0: self._frames()[0] if loop else 0}
        # net_pcap is on NUMA socket -1 (SOCKET_ID_ANY): the pool can start now
        self._start_pool(self._pool_size(nq, ntx, 1, 1 if opts.pcap_out else len(opts.tx_ports), opts),
                         0, self._data_room())
        self.tmp = tempfile.TemporaryDirectory(prefix="pynf-dpdk-")
        self.rx_tmp = tempfile.TemporaryDirectory(prefix="pynf-dpdk-rx-", dir=self._rx_dir())
        files, expected = self._write_queue_files(nq)
        rxdev = f"net_pcap_rx{tag}," + ",".join(f"rx_pcap={f}" for f in files) + (",infinite_rx=1" if loop else "")
        rx = [self._probe(rxdev)]
        if opts.pcap_out:
            self.tx_files = [os.path.join(self.tmp.name, f"tx{k}.pcap") for k in range(ntx)]
            tx = [self._probe(f"net_pcap_tx{tag}," + ",".join(f"tx_pcap={f}" for f in self.tx_files))]
        else:
            self.tx_files = None
            tx = [self._probe(f"net_null_tx{tag}_{k}") for k in range(len(opts.tx_ports))]
        return rx, tx, ([-1] * nq if loop else expected)

    def _attach_ifaces(self, nq, ntx, opts):
        """One port per --iface, in the order given: net_af_packet (the
        default), whose nq sockets the kernel spreads flows over
        (PACKET_FANOUT by flow hash), so each replica polls its own queue;
        tx queues are the same pairs. --iface-driver af_xdp (or auto, where
        it attaches) uses net_af_xdp with one replica (XDP sockets are per
        NIC queue; a veth has one): faster on veths (bench/RESULTS.md), but
        DPDK 22.11's af_xdp keeps the mbufs of its fill ring at close, so
        mbufs_in_use is not 0 at exit; hence not the default."""
        if ntx > nq:
            raise UsageError(f"--iface: the last stage has {ntx} replicas, more than the first "
                             f"stage's {nq} (interface ports have one queue pair per replica)")
        want = opts.iface_driver or "af_packet"
        if want == "af_xdp" and nq > 1:
            raise UsageError(f"--iface-driver af_xdp: one replica per port queue; {nq} replicas "
                             "need af_packet (or auto)")
        eal_init(["--no-huge", "--no-pci", "-m", str(max(1024, nq * 256 + 512)), "--no-shconf",
                  "--no-telemetry", "-l", str(sorted(os.sched_getaffinity(0))[0]), "--log-level=4"],
                 managed=True)
        ports = []
        self.iface_drivers = []
        for i in opts.ifaces:
            tag = f"{os.getpid()}_{DpdkPool._seq + 1}_{i.port}"
            # ethdev ids are process-wide; NFs see pynf's numbering (the order given)
            port = None
            if want == "af_xdp" or (want == "auto" and nq == 1):
                try:
                    port = self._probe(f"net_af_xdp{tag},iface={i.name}")
                    self.iface_drivers.append("af_xdp")
                except RuntimeFailure as e:
                    if want == "af_xdp":
                        raise
                    self.say(f"pynf: {i.name}: af_xdp unavailable ({e}); using af_packet")
            if port is None:
                port = self._probe(f"net_af_packet{tag},iface={i.name},qpairs={nq},qdisc_bypass=1,"
                                   "framecnt=8192")
                self.iface_drivers.append("af_packet")
            ports.append(port)
        self.iface_ports = ports
        return ports, ports, [-1] * nq

    def _data_room(self):
        """mbuf headroom + data for pynf's own devices: room for the largest
        frame of the traffic (at least 128 bytes: the parser reads up to 94
        bytes into a frame), at most DPDK's default (a longer frame then
        spans mbufs and is dropped as oversize, as before). A million
        built-in 64-byte frames take a 256-byte room, not 2,176: the pool
        was built in 0.58 s instead of 18.4 s (bench/RESULTS.md)."""
        longest = self._frames()[1]
        data = min(DATAROOM, max(128, -(-longest // 64) * 64))
        return HEADROOM + data

    def _memory_mb(self, opts):
        frames = self._frames()[0]
        mbufs = frames + opts.n_workers * 4096 + (opts.ring_slots or 0) + 65536
        # NB: an mbuf (128 bytes of struct, its room, the mempool's header)
        # needs about twice that of --no-huge EAL memory: the mempool first
        # asks for one contiguous zone, then populates page by page.
        per = 2 * (128 + self._data_room() + 64)
        return max(512, int(mbufs * per / (1 << 20)) + 512)

    def _probe(self, devargs):
        ret = shim.dpdk.pynf_dev_probe(devargs.encode())
        if ret < 0:
            raise RuntimeFailure(f"cannot attach {devargs.split(',')[0]}: {strerror(ret)}")
        name = devargs.split(",")[0]
        port = shim.dpdk.pynf_port_by_name(name.encode())
        if port < 0:
            raise RuntimeFailure(f"{name}: attached but no port: {strerror(port)}")
        self.probed.append(port)
        return port

    def _rx_dir(self):
        """/dev/shm (tmpfs) where it has room for the rx streams twice over,
        else the temporary directory: they live only while the port does
        (a looping net_pcap reads them once, at start), and writing a
        million frames through a disk's page cache took 6x longer here."""
        f = self.feed
        need = sum(16 * len(s) + int(f.t_len[s].sum()) for s in f.seqs) + 24 * len(f.seqs)
        try:
            st = os.statvfs("/dev/shm")
            if os.access("/dev/shm", os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize > 2 * need:
                return "/dev/shm"
        except OSError:
            pass
        return None

    def _write_queue_files(self, nq):
        f = self.feed
        files, counts = [], []
        for k, seq in enumerate(f.seqs):
            path = os.path.join(self.rx_tmp.name, f"rx{k}.pcap")
            w = pcap.Writer(path)
            # built-in templates hold the first 64 bytes, the rest is zero
            # payload. NB: libpcap (net_pcap's reader) stops at a record over
            # 262,144 bytes; one over 65,535 is dropped as oversize all the same
            w.write_templates(f.arena, f.t_off, f.t_len, f.t_copy, seq)
            w.close()
            files.append(path)
            counts.append(len(seq))
        return files, counts

    def _describe(self, infos, nq, ntx, rss):
        def port(p):
            i = infos[p]
            return f"{p} ({i['name']}, {i['driver']})"
        rx = ", ".join(port(p) for p in self.rx_ports)
        tx = ", ".join(port(p) for p in self.tx_ports)
        if nq == 1:
            steer = "one rx queue"
        elif all(rss.values()):
            steer = f"{nq} rx queues, flows spread by the port's RSS"
        elif self.user_eal:
            steer = (f"{nq} rx queues on ports without RSS: each replica polls its own queue; "
                     "flows are only kept on one replica if the device spreads them that way")
        else:
            steer = f"{nq} rx queues, flows split by 5-tuple hash into per-queue pcap streams (net_pcap has no RSS)"
        mapping = ", ".join(f"NF port k%{len(self.tx_ports)}={k} -> port {p}" for k, p in enumerate(self.tx_ports))
        eal = " ".join(eal_args() or [])
        return f"pynf: DPDK (EAL {eal}): rx {rx}; tx {tx}; {steer}; {mapping}"

    # -- what the runtime asks for --

    def rx_queue(self, k):
        return self.queues[k]

    def port_number(self, ethdev):
        """The port number NFs use for an ethdev id (see make_rx's pnum)."""
        if self.opts.ifaces:
            return self.rx_ports.index(ethdev)
        return ethdev

    def ethdev(self, port):
        """The ethdev id NF output port `port` goes to."""
        return self.tx_ports[self.txmap[port % len(self.txmap)]]

    def tx_queue(self, k, punt_ring=0, inject_ring=0):
        return dk.make_tx(self.tx_ports, k, punt_ring, inject_ring)

    def mem(self):
        return self.pool.mem

    def pool_arg(self):
        return self.pool.view

    def make_cache(self):
        return np.zeros(256, dtype=np.uint64)       # scratch for bulk frees

    def make_capture(self, on):
        from pynf.io.mem.kernels import make_capture
        return make_capture(1, 1)                   # --pcap-out goes through net_pcap

    def cache_flush(self, cache):
        pass

    def thread_init(self):
        if shim.dpdk.pynf_thread_register() < 0:
            pass                                    # works without a cache, only slower

    def thread_exit(self):
        shim.dpdk.pynf_thread_unregister()

    def make_ring(self, size):
        return RteRing(size)

    def ring_in(self, rings):
        return make_ring_in([r.addr for r in rings], rte=True)

    def ring_out(self, rings, policy, active=None):
        return make_ring_out([r.addr for r in rings], policy, active, rte=True)

    def port_stats(self, p):
        out = shim.dffi.new(f"uint64_t[{len(PORT_STATS)}]")
        shim.dpdk.pynf_port_stats(p, out)
        return list(out)

    def nic_stats(self):
        """The ports' own counters (rte_eth_stats) since pynf started them:
        live while running, the final figures after close()."""
        nic = {}
        now = getattr(self, "final_stats", {}) if self.closed else {p: self.port_stats(p) for p in self.stats0}
        for p in sorted(now):
            nic[str(p)] = {k: a - b for k, a, b in zip(PORT_STATS, now[p], self.stats0[p])}
        return nic

    def report_extra(self, rt):
        in_use = getattr(self, "mbufs_in_use", None) if self.closed else (self.pool.in_use() if self.pool else 0)
        return {"mbufs_in_use": in_use, "nic": self.nic_stats(), "eal": eal_args()}

    def close(self):
        """Stop and detach pynf's ports, count mbufs still out, free the pool."""
        if self.closed:
            return
        self.closed = True
        lib = shim.dpdk
        try:                    # opened, never ready: wait for the pool, so that it is freed
            self._finish()
        except RuntimeFailure:
            pass
        self.final_stats = {p: self.port_stats(p) for p in self.stats0}
        for p in self.probed:
            lib.pynf_dev_remove_port(p)
        for p in self.stats0:
            if p not in self.probed:
                lib.pynf_port_stop(p)
        self.mbufs_in_use = self.pool.in_use() if self.pool else 0
        if self.tx_files and self.opts.pcap_out:
            merge_pcaps(self.tx_files, self.opts.pcap_out)
        if self.pool and self.mbufs_in_use == 0:
            self.pool.free()
        for d in (self.tmp, self.rx_tmp):
            if d:
                d.cleanup()


def merge_pcaps(files, out):
    """Merge per-queue pcaps into one, in timestamp (= transmit) order."""
    caps = [pcap.read(f) for f in files]
    w = pcap.Writer(out)
    order = sorted(((int(c.ts_ns[i]), k, i) for k, c in enumerate(caps) for i in range(len(c))))
    for ts, k, i in order:
        w.write(caps[k].frame(i), ts)
    w.close()
