"""Worker loops: generated beside the stage (pynf.compiler.stage) and compiled with it.

A worker runs one replica of one stage: receive a burst (from a NIC queue
or from its input rings), run the stage, hand the burst on (to a port or to
the next stage's rings). The loop is compiled, holds no GIL, and returns to
Python only every few milliseconds (at `deadline`, a TSC value) so that the
runtime can stop it, flush captures and show progress.

Worker counters (ws) and argument positions: pynf.slots.

Return codes: 0 deadline reached, 1 capture buffer full (flush and call
again), 2 input finished (queue replayed, or upstream done and rings empty).
"""

RC_DEADLINE, RC_FLUSH, RC_DONE = 0, 1, 2

HEADER = '''
from pynf.compiler.intrinsics import rdtsc as _rdtsc
from pynf import shim as _shim
from pynf.io.mem import kernels as _mem
from pynf.slots import W_BURSTS, W_BUSY, W_CONTROL, W_CYCLES, W_IDLE
from pynf.io import ring as _ring
'''
HEADER_DPDK = '''
from pynf.io.dpdk import kernels as _dk
'''

# {name}, {rx}, {done}, {tx}, {states}
LOOP = '''
@hot
def {name}(b, live, h, src, dst, pool, cache, txmap, txstat, cap, ws, drops, nfstat,
           deadline, burst, flags, upstream_done, fc{states}):
    idle = 0
    while True:
        {inject}
        if not _mem.capture_room(cap, burst):
            return 1
        t_rx = _rdtsc()
        n = {rx}
        if n == 0:
            if {done}:
                return 2
            ws[W_IDLE] += 1
            idle += 1
            if _rdtsc() > deadline or ws[W_CONTROL] != 0:
                return 0
            # NB: an idle worker that spins starves a busy one sharing its core
            if idle > 256:
                _shim.cpu_yield()
            else:
                _shim.cpu_pause()
            continue
        idle = 0
        t0 = _rdtsc()
        m = stage(b, live, n, flags, drops, nfstat, fc{states})
        t1 = _rdtsc()
        ws[W_CYCLES] += t1 - t0
        ws[W_BURSTS] += 1
        {tx}
        t2 = _rdtsc()
        ws[W_BUSY] += t2 - t_rx
        if t2 > deadline or ws[W_CONTROL] != 0:
            return 0
'''

# "mem": the in-memory NIC; "ring": shim rings of buffer indices;
# "dpdk": ethdev queues; "dring": rte_rings of mbufs.
RX = {
    "mem": "_mem.rx(src, pool, cache, h, b, burst, drops, ws)",
    "ring": "_ring.rx_mem(src, pool, h, b, burst, ws)",
    "dpdk": "_dk.rx(src, pool.base, h, b, burst, drops, ws)",
    "dring": "_dk.ring_rx(src, pool.base, h, b, burst, ws)",
}
# sends what the slow path queued (the last stage's replicas on DPDK)
INJECT = {"dpdk": "_dk.inject(dst, txmap, txstat, drops, ws)"}
DONE = {
    "mem": "src.st[3] != 0",
    "ring": "upstream_done[0] != 0 and _ring.rings_empty(src)",
    "dpdk": "src.st[3] != 0",
    "dring": "upstream_done[0] != 0 and _ring.rings_empty(src)",
}
TX = {
    "mem": "_mem.tx(b, live, m, n, h, pool, cache, txmap, txstat, cap, drops, ws)",
    "ring": "_ring.tx_ring(b, live, m, n, h, dst, pool, cache, drops, ws)",
    "dpdk": "_dk.tx(b, live, m, n, h, dst, txmap, txstat, drops, ws)",
    "dring": "_dk.ring_tx(b, live, m, n, h, dst, drops, ws, cache)",
}
MEM_KINDS = [("mem", "mem"), ("mem", "ring"), ("ring", "ring"), ("ring", "mem")]
DPDK_KINDS = [("dpdk", "dpdk"), ("dpdk", "dring"), ("dring", "dring"), ("dring", "dpdk")]


def loop_name(rx, tx):
    return f"loop_{rx}_{tx}"


def generate(nstates, kinds):
    """Source of the loops for each (rx kind, tx kind) in `kinds`."""
    states = "".join(f", st{j}" for j in range(nstates))
    out = [HEADER]
    if any("dpdk" in k or "dring" in k for k in kinds):
        out.append(HEADER_DPDK)
    for rx, tx in sorted(set(kinds)):
        out.append(LOOP.format(name=loop_name(rx, tx), rx=RX[rx], done=DONE[rx], tx=TX[tx],
                               inject=INJECT.get(tx, "pass"), states=states))
    return "".join(out)
