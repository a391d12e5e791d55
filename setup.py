"""Only here for cffi_modules: the shim's C extensions.

_shim_core (rings, TSC) always builds; _shim_dpdk builds where
`pkg-config libdpdk` finds DPDK, and is skipped with a note elsewhere.
"""
import os
import shutil
import subprocess
import sys

from setuptools import setup


def dpdk_available():
    if shutil.which("pkg-config") is None:
        return False
    return subprocess.run(["pkg-config", "--exists", "libdpdk"]).returncode == 0


modules = ["shim/build_core.py:ffibuilder"]
if dpdk_available() and os.path.exists("shim/build_dpdk.py"):
    modules.append("shim/build_dpdk.py:ffibuilder")
else:
    print("pynf: DPDK not found by pkg-config; building without the DPDK shim "
          "(pynf will run on --io mem)", file=sys.stderr)

setup(cffi_modules=modules)
