"""Every slot of the counter arrays and argument lists that compiled code
and Python share, named once. Kernels read these names as compile-time
constants; the report (pynf.runtime.report), the metrics, the runtime and the I/O
backends read the arrays through them.
"""

# A worker's counters, ws: int64[WS_SIZE], one array per worker (pynf.runtime.runtime)
W_RX = 0            # packets received (first stage: from the NIC; later: from rings)
W_TX = 1            # packets passed on (to a port, or to the next stage's rings)
W_BURSTS = 2        # non-empty bursts
W_IDLE = 3          # polls that found nothing
W_CYCLES = 4        # TSC cycles in the stage function (all bursts)
W_RX_BYTES = 5      # bytes received
W_PUNTED = 6        # packets handed to the slow path (pynf.control.slowpath)
W_BUSY = 7          # TSC cycles of receive + stage + transmit of non-empty bursts
W_INJ_SENT = 8      # punted packets the slow path sent back out through this worker
W_ORIG_SENT = 9     # packets the slow path made itself (ARP requests), sent
W_ORIG_FAILED = 10  # ... refused by the port
W_CONTROL = 11      # set by the runtime: a control change waits; return after this burst
WS_SIZE = 16

# Per-NF counters of a stage, nfstat: int64[nfs + 1, NF_COLS]; row k is NF k,
# the last row the stage's own parse and write-back (pynf.compiler.stage)
NF_RX = 0           # packets the NF saw
NF_TX = 1           # ... it passed on
NF_DROPS = 2        # ... it dropped
NF_CYCLES = 3       # TSC cycles, on timed bursts only (one in stage.SAMPLE)
NF_TIMED = 4        # packets in timed bursts: cycles per packet = NF_CYCLES / NF_TIMED
NF_BURSTS = 5       # bursts (last row: picks the timed ones)
NF_PUNTED = 6       # packets handed to the slow path
NF_CACHED = 7       # packets whose effect came from the flow cache (pynf.flowcache), of NF_RX
NF_COLS = 8

# Ring producer's options and counters, RingOut.opts (pynf.io.ring, dpdk_kernels)
RO_POLICY = 0       # P_WAIT or P_DROP when a ring is full
RO_FULL = 1         # times a ring was found full
RO_WAIT_CYCLES = 2  # TSC cycles spent waiting for room (kept out of W_BUSY's work)
RO_KEY = 3          # what the next stage steers by (a K_* code of pynf.packet.keys)

# A worker loop's arguments (pynf.compiler.loops.LOOP's signature)
A_DEADLINE = 13     # TSC value at which the loop returns to Python
A_FLOWCACHE = 17    # the stage replica's flow cache (pynf.flowcache.table.FlowCache)
A_STATES = 18       # the stage's NF states follow, one per NF

# A port's own counters as the shim's pynf_port_stats fills them (rte_eth_stats)
PORT_STATS = ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf")
