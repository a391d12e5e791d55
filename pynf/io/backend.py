"""The I/O backend contract: what the runtime asks of pynf.io.mem.backend.MemIO
and pynf.io.dpdk.backend.DpdkIO, written once.

A backend owns the packet buffers and the ports. The runtime opens it with
the number of first-stage replicas (then `ready`), asks it for one receive source per
replica, one transmit sink per last-stage replica and the rings between
stages, hands each worker its cache and capture buffer, and closes it after
every worker has exited. `loop_parts` are its kernels' calls in the
worker loops (pynf.compiler.loops), so the runtime names no backend.
"""
from typing import Protocol


class Backend(Protocol):
    name: str                       # "mem" | "dpdk": the report's `io`
    loop_parts: object              # its part of the worker loops (pynf.compiler.loops.LoopParts)
    slowpath: bool                  # punted packets reach pynf.control.slowpath (else: no_slowpath)
    ring_name: str                  # what its inter-stage rings are, for the start-up table
    txmap: object                   # int32 array: NF output port k -> index into the tx ports
    tx_ports: list                  # the ports packets leave by

    def open(self, nqueues, opts):
        """Create the pool, the ports and nqueues receive queues (opts: pynf.runtime.runtime.Options)."""

    def queue_check(self, nq, ntx, opts):
        """(rx_why, tx_why): why the ports cannot give nq receiving replicas
        a queue each (None: they can), and ntx transmitting ones."""

    def ready(self):
        """Finish what open() left running (DPDK: the mbuf pool, then the
        ports); the runtime makes the NFs' states in between."""

    def rx_queue(self, k):
        """Receive source of first-stage replica k."""

    def tx_queue(self, k, *slow):
        """Transmit sink of last-stage replica k (DPDK: and the slow path's rings)."""

    def make_ring(self, size):
        """A single-producer/single-consumer ring between two stages' replicas."""

    def ring_in(self, rings):
        """A worker's view of the rings it consumes."""

    def ring_out(self, rings, policy, active=None):
        """A worker's view of the rings it produces into (policy: wait or drop
        when full; active: how many of them get flows at first)."""

    def mem(self):
        """The packet memory (uint8 array) the batch's offsets index."""

    def pool_arg(self):
        """What the compiled loops get as `pool`."""

    def make_cache(self):
        """A worker's buffer cache."""

    def cache_flush(self, cache):
        """Give a worker's cached buffers back (at its exit)."""

    def make_capture(self, on):
        """A worker's --pcap-out capture buffer (on: this worker transmits and captures)."""

    def thread_init(self):
        """Called on each worker thread before its loop (DPDK: register the lcore)."""

    def thread_exit(self):
        """Called on each worker thread after its loop."""

    def report_extra(self, rt):
        """Backend figures for the report: buffers in use, NIC counters."""

    def close(self):
        """Release ports and pool; safe to call twice."""
