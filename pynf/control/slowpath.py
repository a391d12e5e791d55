"""The slow path: a Python thread that takes the packets the fast path
hands over, and sends packets of its own.

The last stage's replicas put punted packets (pynf.nf.slowpath, and ARP
frames when ports have addresses) on their own single-producer ring; this
thread drains them every millisecond or so and calls, per packet, the
handler of the NF that punted it (`@nf(..., slow=handler)`), or the ARP
resolver (pynf.control.neigh) for ARP. A handler gets the SlowPath and a
Frame (its bytes as a writable numpy view, in place in the mbuf) and must
do one of:

    sp.send(frame, port)        send it (changed or not) out of a port
    sp.drop(frame, "reason")    free it, counted under that reason
    keep it (frame.keep()) and do either later, from this thread

and may make packets of its own with sp.originate(frame_bytes, port).
A handler that does none of these has its frame dropped as
`slowpath_unhandled`. Packets go out through the first last-stage replica,
which drains an inject ring between bursts (pynf.io.dpdk.kernels.inject),
so no transmit queue is shared between threads.

Counting keeps rx = tx + drops: a punted packet ends up sent (counted by
the worker that sends it), refused by its port (tx_full) or dropped here
under a reason; packets made here are counted apart (`originated`).
"""
import threading
import time

import numpy as np

from pynf import shim
from pynf.io.dpdk.eal import RteRing
from pynf.io.dpdk.kernels import ADDR_MASK, INJ_ORIG
from pynf.packet.drops import punt_owner
from pynf.slots import W_INJ_SENT, W_ORIG_FAILED

POLL_S = 0.0005
TICK_S = 0.01
BATCH = 256


class Frame:
    """A punted packet: `data` is its bytes in place (writable)."""

    __slots__ = ("handle", "data", "in_port", "done", "kept")

    def __init__(self, handle, data, in_port):
        self.handle, self.data, self.in_port = handle, data, in_port
        self.done = False
        self.kept = False

    def keep(self):
        """The handler keeps the frame to send or drop later."""
        self.kept = True
        return self


class SlowPath:
    def __init__(self, io, specs, host=None, ring_size=1024):
        self.io, self.pool = io, io.pool
        self.handlers = [s.slow for s in specs]
        self.names = [s.name for s in specs]
        self.punt_rings = []
        self.inject = RteRing(ring_size)
        self.ring_size = ring_size
        self.drops = {}
        self.received = 0
        self.originated = 0
        self.originate_failed = 0
        self.sending = True
        self.resolver = None
        if host is not None:
            from pynf.control.neigh import Resolver
            self.resolver = Resolver(host, self)
        self._buf = np.zeros(BATCH, dtype=np.uint64)
        self._off = np.zeros(BATCH, dtype=np.int64)
        self._len = np.zeros(BATCH, dtype=np.int32)
        self._port = np.zeros(BATCH, dtype=np.int32)
        self._one = np.zeros(1, dtype=np.uint64)
        self._stop = threading.Event()
        self._thread = None
        self.error = None

    def punt_ring(self):
        """A new ring for one last-stage replica to punt into."""
        r = RteRing(self.ring_size)
        self.punt_rings.append(r)
        return r.addr

    # -- what handlers call --

    def send(self, frame, port):
        self._one[0] = np.uint64(frame.handle) | (np.uint64(self.io.ethdev(port)) << np.uint64(48))
        frame.done = True
        if self.sending and shim.dpdk.pynf_rte_ring_enqueue(
                self.inject.ptr, shim.dffi.cast("uint64_t *", self._one.ctypes.data), 1) == 1:
            return
        self._free(frame.handle)
        self._count("slowpath_full" if self.sending else "slowpath_shutdown")

    def drop(self, frame, reason):
        frame.done = True
        self._free(frame.handle)
        self._count(reason)

    def originate(self, data, port):
        """Send a packet made here (not a received one) out of port."""
        h = shim.dpdk.pynf_mbuf_alloc(self.pool.ptr, len(data)) if self.sending else 0
        if h == 0:
            self.originate_failed += 1
            return False
        o = self._locate_one(h)
        self.pool.mem[o:o + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        self._one[0] = np.uint64(h) | INJ_ORIG | (np.uint64(self.io.ethdev(port)) << np.uint64(48))
        if shim.dpdk.pynf_rte_ring_enqueue(self.inject.ptr,
                                           shim.dffi.cast("uint64_t *", self._one.ctypes.data), 1) != 1:
            self._free(h)
            self.originate_failed += 1
            return False
        self.originated += 1
        return True

    # -- the thread --

    def start(self):
        self._thread = threading.Thread(target=self._run, name="pynf-slowpath", daemon=True)
        self._thread.start()

    def _run(self):
        self.io.thread_init()
        try:
            last = 0.0
            while not self._stop.is_set():
                got = self.poll()
                now = time.monotonic()
                if self.resolver is not None and now - last >= TICK_S:
                    self.resolver.tick()
                    last = now
                if got == 0:
                    time.sleep(POLL_S)
        except Exception as e:  # noqa: BLE001 - reported with the run
            self.error = e
        finally:
            self.io.thread_exit()

    def poll(self):
        """Take and handle what the workers punted; returns how many."""
        total = 0
        ffi, lib = shim.dffi, shim.dpdk
        for r in self.punt_rings:
            got = lib.pynf_rte_ring_dequeue(r.ptr, ffi.cast("uint64_t *", self._buf.ctypes.data), BATCH)
            if got == 0:
                continue
            codes = (self._buf[:got] >> np.uint64(48)).astype(np.int64)
            self._buf[:got] &= np.uint64(0xFFFFFFFFFFFF)
            self._locate_all(got)
            self.received += got
            for j in range(got):
                o, ln = int(self._off[j]), int(self._len[j])
                f = Frame(int(self._buf[j]), self.pool.mem[o:o + ln], self.io.port_number(int(self._port[j])))
                self._dispatch(f, int(codes[j]))
            total += got
        return total

    def _dispatch(self, frame, code):
        owner, k = punt_owner(code)
        if owner == 0:
            if self.resolver is None:
                return self.drop(frame, "arp_consumed")
            self.resolver.on_arp(frame)
        else:
            fn = self.handlers[owner - 1] if owner - 1 < len(self.handlers) else None
            if fn is None:
                return self.drop(frame, "slowpath_unhandled")
            fn(self, frame, k)
        if not frame.done and not frame.kept:
            self.drop(frame, "slowpath_unhandled")

    def stop(self):
        """Stop the thread, then drop what is still punted or held and free
        what was never sent (the workers have exited)."""
        if not self.sending:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sending = False
        self.poll()
        if self.resolver is not None:
            self.resolver.flush()
        ffi, lib = shim.dffi, shim.dpdk
        while True:
            got = lib.pynf_rte_ring_dequeue(self.inject.ptr, ffi.cast("uint64_t *", self._buf.ctypes.data),
                                            BATCH)
            if got == 0:
                break
            for e in self._buf[:got]:
                self._free(int(e & ADDR_MASK))
                if e & INJ_ORIG:
                    self.originated -= 1
                    self.originate_failed += 1
                else:
                    self._count("slowpath_shutdown")

    def close(self):
        for r in self.punt_rings:
            r.close()
        self.inject.close()

    def report(self, workers):
        sent = sum(int(w.ws[W_INJ_SENT]) for w in workers)
        failed = sum(int(w.ws[W_ORIG_FAILED]) for w in workers)
        out = {"received": self.received, "sent": sent, "drops": dict(sorted(self.drops.items())),
               "originated": self.originated - failed,
               "originate_failed": self.originate_failed + failed}
        if self.resolver is not None:
            t = self.resolver.table
            out["neighbours"] = dict(t.stats, entries=t.size())
        return out

    # -- helpers --

    def _count(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _free(self, handle):
        self._one[0] = handle
        shim.dpdk.pynf_free_bulk(shim.dffi.cast("uint64_t *", self._one.ctypes.data), 1)

    def _locate_one(self, h):
        """Data offset of one mbuf (scratch apart from the batch in hand)."""
        buf, off = np.array([h], dtype=np.uint64), np.zeros(1, dtype=np.int64)
        self._locate(buf, off, np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int32), 1)
        return int(off[0])

    def _locate_all(self, n):
        self._locate(self._buf, self._off, self._len, self._port, n)

    def _locate(self, buf, off, ln, port, n):
        ffi = shim.dffi
        shim.dpdk.pynf_mbuf_locate(ffi.cast("uint64_t *", buf.ctypes.data),
                                   ffi.cast("int64_t *", off.ctypes.data),
                                   ffi.cast("int32_t *", ln.ctypes.data),
                                   ffi.cast("int32_t *", port.ctypes.data), n, int(self.pool.base))
