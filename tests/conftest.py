import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from pynf.config import NO_JIT  # noqa: E402

CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "corpus", "tcpdump")

jit_only = pytest.mark.skipif(NO_JIT, reason="needs the Numba JIT: the runtime's loops call the C shim")


@pytest.fixture
def corpus_files():
    if not os.path.isdir(CORPUS):
        pytest.skip(f"packet corpus not found at {CORPUS} (../shared/corpus/tcpdump)")
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS) if f.endswith(".pcap"))
