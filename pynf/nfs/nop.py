"""nop: passes every packet unchanged to output port 0.

Synopsis:   pynf run --rtc nop
Drops:      none (the stage still drops malformed frames while parsing)
Use:        the I/O ceiling: a chain that costs only pynf's parse and
            its receive and transmit (bench/dpdk_vs_c.py compares it with a
            C rx -> tx loop).
"""
from pynf.nf import nf


@nf("nop")
def nop(pkts, live, n, st):
    pass
