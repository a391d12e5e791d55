"""cffi build script for pynf._shim_dpdk, against DPDK found by pkg-config.

Run by setup.py (cffi_modules) only where `pkg-config --exists libdpdk`.
"""
import shlex
import subprocess
from pathlib import Path

from cffi import FFI

HEADER = Path(__file__).resolve().parent / "pynf_dpdk.h"


def pkg(flag):
    out = subprocess.run(["pkg-config", flag, "libdpdk"], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout)


cflags = pkg("--cflags")
libs = pkg("--libs")

ffibuilder = FFI()
ffibuilder.cdef(HEADER.read_text())
ffibuilder.set_source(
    "pynf._shim_dpdk",
    '#include "pynf_dpdk.h"',
    sources=["shim/dpdk.c"],
    include_dirs=["shim"] + [f[2:] for f in cflags if f.startswith("-I")],
    extra_compile_args=["-O3", "-Wall"] + [f for f in cflags if not f.startswith("-I")],
    libraries=[f[2:] for f in libs if f.startswith("-l")],
    library_dirs=[f[2:] for f in libs if f.startswith("-L")],
    extra_link_args=[f for f in libs if not f.startswith(("-l", "-L"))],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
