"""Fixtures and the markers' meaning (pyproject.toml declares them):

    jit    needs the Numba JIT: skipped under NUMBA_DISABLE_JIT=1, and the
           plain-Python run selects the others with -m "not jit"
    dpdk   needs the DPDK shim and EAL on virtual devices: skipped where
           DPDK is missing (a failure instead under PYNF_REQUIRE_DPDK=1)
    slow   long-running (still part of the default run)
"""
import os

import pytest

from pynf.config import NO_JIT

from support import DPDK_SKIP, HERE

# real and malformed captures (tests/corpus/README.md); PYNF_CORPUS names another folder
CORPUS = os.environ.get("PYNF_CORPUS") or os.path.join(HERE, "corpus")

if DPDK_SKIP and os.environ.get("PYNF_REQUIRE_DPDK") == "1" and not NO_JIT:
    raise RuntimeError(f"PYNF_REQUIRE_DPDK=1 but {DPDK_SKIP}")


def pytest_collection_modifyitems(config, items):
    no_jit = pytest.mark.skip(reason="needs the Numba JIT: the runtime's loops call the C shim")
    no_dpdk = pytest.mark.skip(reason=f"DPDK tests: {DPDK_SKIP}")
    for item in items:
        if NO_JIT and item.get_closest_marker("jit"):
            item.add_marker(no_jit)
        elif DPDK_SKIP and item.get_closest_marker("dpdk"):
            item.add_marker(no_dpdk)


@pytest.fixture
def corpus_files():
    if not os.path.isdir(CORPUS):
        pytest.skip(f"packet corpus not found at {CORPUS} (set PYNF_CORPUS to a folder of .pcap files)")
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS) if f.endswith(".pcap"))
