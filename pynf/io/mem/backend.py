"""The in-memory NIC as the runtime sees it: the backend object (cold code)
over the pool (pynf.io.mem.pool), the compiled kernels (pynf.io.mem.kernels)
and the rings (pynf.io.ring)."""
import numpy as np

from pynf import shim
from pynf.compiler.loops import LoopParts
from pynf.io.mem.kernels import C_ON, make_capture, make_queue
from pynf.io.mem.pool import CACHE_SIZE, MemPool, cache_flush, make_cache
from pynf.io.ring import make_ring_in, make_ring_out


class MemIO:
    """The in-memory NIC as the runtime sees it (cold code); a
    pynf.io.backend.Backend."""

    name = "mem"
    slowpath = False            # punted packets are dropped (no_slowpath)
    ring_name = "shim ring"
    # the worker loops' I/O (pynf.compiler.loops): queues of the in-memory
    # NIC, shim rings between stages
    loop_parts = LoopParts(
        imports="from pynf.io.mem import kernels as _mem\nfrom pynf.io import ring as _ring",
        rx={"nic": "_mem.rx(src, pool, cache, h, b, burst, drops, ws)",
            "ring": "_ring.rx_mem(src, pool, h, b, burst, ws)"},
        done={"nic": "src.st[3] != 0", "ring": "upstream_done[0] != 0 and _ring.rings_empty(src)"},
        tx={"nic": "_mem.tx(b, live, m, n, h, pool, cache, txmap, txstat, cap, drops, ws)",
            "ring": "_ring.tx_ring(b, live, m, n, h, dst, pool, cache, drops, ws)"},
        room="_mem.capture_room(cap, burst)")

    def __init__(self, feed, tx_ports, budget=None, rate_gbps=None, hz=None, pps=None):
        self.feed = feed
        self.tx_ports = list(tx_ports)
        self.txmap = np.array(self.tx_ports, dtype=np.int32)
        self.budget = budget
        self.rate = rate_gbps
        self.pps = pps
        self.hz = hz
        self.queues = []
        self.caches = []

    def open(self, nqueues, opts):
        f = self.feed
        if len(f.seqs) != nqueues:
            raise ValueError("feed built for another queue count")
        # Buffers: every worker's cache full plus a burst in hand, every ring
        # full, and room to spare (as a mempool is sized for rings + bursts +
        # in flight).
        self.mempool = MemPool(self.pool_size(opts))
        tpb = self.hz / (self.rate * 1e9 / nqueues) if self.rate else 0.0
        tpf = self.hz / (self.pps / nqueues) if self.pps else 0.0
        for k, seq in enumerate(f.seqs):
            budget = -1
            if self.budget is not None:
                budget = self.budget // nqueues + (1 if k < self.budget % nqueues else 0)
            port = opts.rx_ports[k % len(opts.rx_ports)]
            self.queues.append(make_queue(f.arena, f.t_off, f.t_len, f.t_copy, seq, port,
                                          passes=1 if f.once else -1, budget=budget,
                                          tsc_per_bit=tpb, tsc_per_frame=tpf))

    def ready(self):
        pass

    def queue_check(self, nq, ntx, opts):
        return None, None           # every replica has a queue of its own

    def pool_size(self, opts):
        workers = getattr(opts, "n_workers", 1)
        return 2 * workers * (CACHE_SIZE + 256) + getattr(opts, "ring_slots", 0) + 4096

    def rx_queue(self, k):
        return self.queues[k]

    def mem(self):
        return self.mempool.mem

    def pool_arg(self):
        return self.mempool.pool

    def tx_queue(self, k):
        return make_ring_out([], 0)

    def make_ring(self, size):
        return shim.Ring(size, single_producer=True, single_consumer=True)

    def ring_in(self, rings):
        return make_ring_in([r.addr for r in rings])

    def ring_out(self, rings, policy, active=None):
        return make_ring_out([r.addr for r in rings], policy, active)

    def thread_exit(self):
        pass

    def make_cache(self):
        c = make_cache()
        self.caches.append(c)
        return c

    def make_capture(self, on):
        if not on:
            return make_capture(1, 1)
        c = make_capture(16 << 20, 65536)
        c.st[C_ON] = 1
        return c

    def cache_flush(self, cache):
        cache_flush(self.mempool.pool, cache)

    def thread_init(self):
        pass

    def in_use(self):
        return self.mempool.in_use(self.caches)

    def report_extra(self, rt):
        return {"buffers_in_use": int(self.in_use())}

    def close(self):
        pass
