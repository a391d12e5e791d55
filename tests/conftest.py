"""Fixtures and the markers' meaning (pyproject.toml declares them):

    jit    needs the Numba JIT: skipped under NUMBA_DISABLE_JIT=1, and the
           plain-Python run selects the others with -m "not jit"
    dpdk   needs the DPDK shim and EAL on virtual devices: skipped where
           DPDK is missing (a failure instead under PYNF_REQUIRE_DPDK=1)
    slow   long-running (still part of the default run)
    long   minutes long: run only with `pytest --long` (results in bench/RESULTS.md)
"""
import os

import pytest

from pynf.compiler.jit import NO_JIT

from support import DPDK_SKIP, HERE

# real and malformed captures (tests/corpus/README.md); PYNF_CORPUS names another folder
CORPUS = os.environ.get("PYNF_CORPUS") or os.path.join(HERE, "corpus")

# Tests compile each stage fused before running (--compile fused), as they
# did before fast start: a background compile would only compete with the
# next test. tests/test_fuse.py tries fast start itself.
os.environ.setdefault("PYNF_COMPILE", "fused")

if DPDK_SKIP and os.environ.get("PYNF_REQUIRE_DPDK") == "1" and not NO_JIT:
    raise RuntimeError(f"PYNF_REQUIRE_DPDK=1 but {DPDK_SKIP}")


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="also run the tests marked long")


def pytest_collection_modifyitems(config, items):
    no_long = pytest.mark.skip(reason="a long test: run with --long")
    no_jit = pytest.mark.skip(reason="needs the Numba JIT: the runtime's loops call the C shim")
    no_dpdk = pytest.mark.skip(reason=f"DPDK tests: {DPDK_SKIP}")
    for item in items:
        if item.get_closest_marker("long") and not config.getoption("--long"):
            item.add_marker(no_long)
        elif NO_JIT and item.get_closest_marker("jit"):
            item.add_marker(no_jit)
        elif DPDK_SKIP and item.get_closest_marker("dpdk"):
            item.add_marker(no_dpdk)


@pytest.fixture
def corpus_files():
    if not os.path.isdir(CORPUS):
        pytest.skip(f"packet corpus not found at {CORPUS} (set PYNF_CORPUS to a folder of .pcap files)")
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS) if f.endswith(".pcap"))
