"""The EAL and the DPDK objects pynf makes through the shim: starting the
EAL once per process, packet pools (DpdkPool), rte_rings (RteRing), and
what DPDK says of the machine (whether the shim is built, a CPU's NUMA
node). pynf.io.dpdk.backend builds ports and queues on them.
"""
import ctypes
import os

import numpy as np

from pynf import shim
from pynf.errors import RuntimeFailure, UsageError
from pynf.io.dpdk import kernels as dk

_EAL = {"args": None, "managed": False}
MBUF_CACHE = 256


def available():
    return shim.DPDK_MISSING is None


def why_unavailable():
    if shim.DPDK_MISSING is None:
        return None
    return ("the DPDK shim is not built (DPDK not found by pkg-config when pynf was installed; "
            "install libdpdk-dev and pkg-config, then `pip install -e .`)")


def eal_init(args, managed=False):
    """Start the EAL once per process. Later runs must ask for the same
    arguments, except that runs on pynf's own virtual devices (managed) share
    whatever EAL pynf started (only the memory size differs between them)."""
    if _EAL["args"] is not None:
        if managed and _EAL["managed"]:
            return False
        if args != _EAL["args"]:
            raise UsageError("the EAL is already running in this process with other arguments")
        return False
    lib, ffi = shim.dpdk, shim.dffi
    affinity = os.sched_getaffinity(0)
    argv = [ffi.new("char[]", a.encode()) for a in ["pynf", *args]]
    ret = lib.pynf_eal_init(len(argv), ffi.new("char *[]", argv))
    # NB: the EAL pins the calling thread to its main lcore; the workers
    # (threads created later) would inherit that one core.
    os.sched_setaffinity(0, affinity)
    if ret < 0:
        raise RuntimeFailure(f"EAL init failed: {ffi.string(lib.pynf_strerror(ret)).decode()} "
                             f"(EAL arguments: {' '.join(args)})")
    _EAL["args"] = list(args)
    _EAL["managed"] = managed
    return True


def eal_args():
    """The arguments the EAL was started with, or None."""
    return _EAL["args"]


def strerror(ret):
    """DPDK's words for an error code."""
    return shim.dffi.string(shim.dpdk.pynf_strerror(ret)).decode()


class DpdkPool:
    """A pktmbuf pool and the numpy view of its memory the stage indexes."""

    _seq = 0

    def __init__(self, n, socket, data_room=0):
        DpdkPool._seq += 1
        self.name = f"pynf_pool{os.getpid()}_{DpdkPool._seq}"
        self.n = n
        self.ptr = shim.dpdk.pynf_pool_create(self.name.encode(), n, MBUF_CACHE, data_room, socket)
        if self.ptr == shim.dffi.NULL:
            raise RuntimeFailure(f"cannot create a mempool of {n} mbufs: not enough DPDK memory "
                                 "(raise -m, or free hugepages)")
        lo, hi = shim.dffi.new("uint64_t *"), shim.dffi.new("uint64_t *")
        if shim.dpdk.pynf_pool_span(self.ptr, lo, hi) < 0:
            raise RuntimeFailure("mempool has no memory")
        self.base = int(lo[0])
        size = int(hi[0]) - self.base
        self.mem = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(self.base))
        self.view = dk.PoolView(self.mem, np.uint64(self.base))

    def in_use(self):
        return shim.dpdk.pynf_pool_in_use(self.ptr)

    def free(self):
        if self.ptr is not None:
            shim.dpdk.pynf_pool_free(self.ptr)
            self.ptr = None


class RteRing:
    _seq = 0

    def __init__(self, size):
        RteRing._seq += 1
        name = f"pynf_r{os.getpid()}_{RteRing._seq}"
        self.ptr = shim.dpdk.pynf_rte_ring_create(name.encode(), size, -1)
        if self.ptr == shim.dffi.NULL:
            raise RuntimeFailure(f"cannot create rte_ring {name} of {size}")
        self.addr = int(shim.dffi.cast("uintptr_t", self.ptr))
        self.size = size

    def count(self):
        return shim.dpdk.pynf_rte_ring_count(self.ptr)

    def close(self):
        if self.ptr is not None:
            shim.dpdk.pynf_rte_ring_free(self.ptr)
            self.ptr = None


def cpu_node(cpu):
    """NUMA node of a CPU (Linux sysfs), -1 if unknown."""
    d = f"/sys/devices/system/cpu/cpu{cpu}"
    try:
        for name in os.listdir(d):
            if name.startswith("node") and name[4:].isdigit():
                return int(name[4:])
    except OSError:
        pass
    return -1
