"""Python and Numba facade over the C shim (shim/).

Compiled kernels call the shim's functions directly: each C symbol is
registered with LLVM (llvmlite add_symbol) and declared as a Numba
ExternalFunction, so a call is a plain native call, resolved by name. That
keeps kernels that call the shim cacheable on disk (a cffi function
object would bake its address into the cached code). Pointers cross as
uint64 addresses (`arr.ctypes.data` inside a kernel).

Python code uses `core` / `dpdk` (the cffi modules) and the helpers here,
which turn C return codes into exceptions.
"""
import llvmlite.binding as llvm
from numba import types

from pynf.errors import RuntimeFailure

try:
    from pynf import _shim_core as _core
except ImportError as e:  # pragma: no cover - a broken install
    raise ImportError("pynf's C shim is not built: run `pip install -e .` in the "
                      f"project root ({e})") from None

core = _core.lib
ffi = _core.ffi

u64, u32, i64, i32, void = types.uint64, types.uint32, types.int64, types.int32, types.void


def _register(module, name, sig):
    addr = int(module.ffi.cast("uintptr_t", module.ffi.addressof(module.lib, name)))
    llvm.add_symbol(name, addr)
    return types.ExternalFunction(name, sig)


# ring handles and arrays are passed as uint64 addresses
ring_enqueue_burst = _register(_core, "pynf_ring_enqueue_burst", u32(u64, u64, u32))
ring_dequeue_burst = _register(_core, "pynf_ring_dequeue_burst", u32(u64, u64, u32))
ring_count = _register(_core, "pynf_ring_count", u32(u64))
cpu_pause = _register(_core, "pynf_pause", void())
cpu_yield = _register(_core, "pynf_yield", void())

RING_SP = core.PYNF_RING_SP
RING_SC = core.PYNF_RING_SC


class Ring:
    """An owned shim ring; `.addr` is what kernels take."""

    def __init__(self, size, single_producer=False, single_consumer=False):
        flags = (RING_SP if single_producer else 0) | (RING_SC if single_consumer else 0)
        self._p = core.pynf_ring_create(size, flags)
        if self._p == ffi.NULL:
            raise RuntimeFailure(f"cannot create a ring of {size} entries")
        self.addr = int(ffi.cast("uintptr_t", self._p))
        self.size = size

    def count(self):
        return core.pynf_ring_count(self._p)

    def enqueue(self, arr):
        return core.pynf_ring_enqueue_burst(self._p, ffi.cast("uint64_t *", arr.ctypes.data), len(arr))

    def dequeue(self, arr):
        return core.pynf_ring_dequeue_burst(self._p, ffi.cast("uint64_t *", arr.ctypes.data), len(arr))

    def close(self):
        if self._p is not None:
            core.pynf_ring_free(self._p)
            self._p = None

    def __del__(self):
        self.close()


def rdtsc():
    return core.pynf_rdtsc()


# ---- DPDK (only where the shim was built against it) ----

try:
    from pynf import _shim_dpdk as _dpdk
except ImportError as e:
    _dpdk = None
    DPDK_MISSING = str(e)
else:
    DPDK_MISSING = None
    dpdk = _dpdk.lib
    dffi = _dpdk.ffi
    # (port, queue, bufs, offs, lens, n, base, oversize) -> kept
    dpdk_rx = _register(_dpdk, "pynf_rx", types.uint16(types.uint16, types.uint16, u64, u64, u64,
                                                        types.uint16, u64, u64))
    dpdk_tx = _register(_dpdk, "pynf_tx", types.uint16(types.uint16, types.uint16, u64, types.uint16))
    dpdk_free_bulk = _register(_dpdk, "pynf_free_bulk", void(u64, u32))
    dpdk_locate = _register(_dpdk, "pynf_mbuf_locate", void(u64, u64, u64, u64, u32, u64))
    rte_ring_enqueue = _register(_dpdk, "pynf_rte_ring_enqueue", u32(u64, u64, u32))
    rte_ring_dequeue = _register(_dpdk, "pynf_rte_ring_dequeue", u32(u64, u64, u32))
    rte_ring_count = _register(_dpdk, "pynf_rte_ring_count", u32(u64))
