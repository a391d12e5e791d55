"""cffi build script for pynf._shim_core: rings and the TSC; no DPDK needed.

Run by setup.py (cffi_modules) from the project root; paths are relative to it.
"""
from pathlib import Path

from cffi import FFI

HEADER = Path(__file__).resolve().parent / "pynf_core.h"

ffibuilder = FFI()
ffibuilder.cdef(HEADER.read_text())
ffibuilder.set_source(
    "pynf._shim_core",
    '#include "pynf_core.h"',
    sources=["shim/ring.c"],
    include_dirs=["shim"],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
