"""pynf: network functions in Python, compiled by Numba into packet pipelines.

Where to look:
  pynf.nf        the NF API: @nf decorator, registry, drop verdicts
  pynf.batch     the packet batch (header arrays) NFs operate on
  pynf.packet    parse and write-back (RFC 1624 incremental checksums)
  pynf.table     preallocated open-addressing flow tables
  pynf.stage     the stage compiler (fuses NFs into one compiled function)
  pynf.runtime   RTC / pipeline / hybrid workers
  pynf.io        I/O backends: in-memory NIC and DPDK
  pynf.cli       `pynf run`
  nfs/           the NF library (acl, lb, l3fwd)
  shim/          the C shim (rings, TSC, DPDK bursts)
"""

__version__ = "0.1.0"
