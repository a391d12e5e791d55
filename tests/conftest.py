import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from pynf.config import NO_JIT  # noqa: E402

# real and malformed captures; PYNF_CORPUS names another folder of .pcap files
CORPUS = os.environ.get("PYNF_CORPUS") or os.path.join(os.path.dirname(ROOT), "shared", "corpus", "tcpdump")

jit_only = pytest.mark.skipif(NO_JIT, reason="needs the Numba JIT: the runtime's loops call the C shim")


def _dpdk_reason():
    if NO_JIT:
        return "needs the Numba JIT"
    from pynf.io import dpdk
    return dpdk.why_unavailable()


DPDK_SKIP = _dpdk_reason()
if DPDK_SKIP and os.environ.get("PYNF_REQUIRE_DPDK") == "1" and not NO_JIT:
    raise RuntimeError(f"PYNF_REQUIRE_DPDK=1 but {DPDK_SKIP}")
dpdk_only = pytest.mark.skipif(DPDK_SKIP is not None, reason=f"DPDK tests: {DPDK_SKIP}")


@pytest.fixture
def corpus_files():
    if not os.path.isdir(CORPUS):
        pytest.skip(f"packet corpus not found at {CORPUS} (set PYNF_CORPUS to a folder of .pcap files)")
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS) if f.endswith(".pcap"))
