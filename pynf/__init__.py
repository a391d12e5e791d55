"""pynf: network functions in Python, compiled by Numba into packet pipelines.

Where to look:
  pynf.nf        the NF API: @nf decorator, registry, drop verdicts
  pynf.packet.batch     the packet batch (header arrays) NFs operate on
  pynf.packet.parse    parse and write-back (RFC 1624 incremental checksums)
  pynf.tables.hashtable     preallocated open-addressing flow tables
  pynf.compiler.stage     the stage compiler (fuses NFs into one compiled function)
  pynf.runtime.runtime   RTC / pipeline / hybrid workers
  pynf.io        I/O backends: in-memory NIC and DPDK
  pynf.cli.main       `pynf run`
  nfs/           the NF library (acl, lb, l3fwd)
  shim/          the C shim (rings, TSC, DPDK bursts)
"""

__version__ = "0.1.0"
