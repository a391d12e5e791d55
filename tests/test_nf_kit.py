"""The NF author's kit (issue 24): the clock, start-up checks."""
import textwrap
import time

import pytest

from pynf.nf import NFError, load
from pynf.testing import Chain

import packets as P
from support import run_pynf

CLOCKED = '''
from collections import namedtuple
import numpy as np
from pynf.nf import SECOND, nf, now

St = namedtuple("St", "seen")

@nf("clocked", state=lambda: St(np.zeros(4, dtype=np.int64)))
def clocked(pkts, live, n, st):
    t = now(pkts)
    st.seen[0] = t
    st.seen[1] = now(pkts)          # the same reading within a burst
    st.seen[2] += n
    st.seen[3] = t // SECOND
'''


def _nf(tmp_path, name, text):
    f = tmp_path / f"{name}.py"
    f.write_text(textwrap.dedent(text))
    return f"{f}:{name}"


@pytest.fixture(scope="module")
def nfdir(tmp_path_factory):
    """One folder for this module's NF files (an NF's name is registered once per file)."""
    return tmp_path_factory.mktemp("nfs")


def test_clock_fixed_advanced_and_live(nfdir):
    ch = Chain([_nf(nfdir, "clocked", CLOCKED)])
    seen = ch.states[0].seen
    ch.set_time(5_000_000_000)
    ch.run([P.udp()] * 3)
    assert seen[0] == seen[1] == 5_000_000_000 and seen[3] == 5
    ch.advance(1_500_000_000)
    ch.run([P.udp()])
    assert seen[0] == 6_500_000_000
    ch.set_time(None)                   # the live clock: the host's monotonic clock, in ns
    a0 = time.monotonic_ns()
    ch.run([P.udp()])
    t1 = int(seen[0])
    time.sleep(0.05)
    ch.run([P.udp()])
    t2 = int(seen[0])
    a1 = time.monotonic_ns()
    assert a0 - 1_000_000 <= t1 < t2 <= a1 + 1_000_000
    assert 0.04e9 <= t2 - t1 <= 0.5e9
    with pytest.raises(ValueError):
        ch.advance(1)


def test_each_burst_reads_the_clock_once(nfdir):
    ch = Chain([_nf(nfdir, "clocked", CLOCKED)])
    ch.run([P.udp()] * 70, burst=32)     # three bursts: n summed over them
    st = ch.states[0]
    assert st.seen[2] == 70 and st.seen[0] == st.seen[1]


BAD = {
    "drop(2) but it declares 2 drop reason(s) (drop(0)..drop(1))": '''
        from pynf.nf import nf, drop
        OVER = 2
        @nf("bad", drops=("a", "b"), per_packet=True)
        def bad(pkts, i, st):
            if pkts.ttl[i] < 2:
                pkts.port[i] = drop(OVER)
        ''',
    "DROP (drop(0)) but it declares 0 drop reason(s)": '''
        from pynf.nf import nf, DROP
        @nf("bad", per_packet=True)
        def bad(pkts, i, st):
            pkts.port[i] = DROP
        ''',
    "pkts.srcip is not a batch field (fields: mem, off, len,": '''
        from pynf.nf import nf
        @nf("bad", per_packet=True)
        def bad(pkts, i, st):

            if pkts.srcip[i] == 1:
                pkts.port[i] = 1
        ''',
}


@pytest.mark.parametrize("want", sorted(BAD))
def test_mistakes_found_before_compiling(tmp_path, want):
    with pytest.raises(NFError) as e:
        load(_nf(tmp_path, "bad", BAD[want]))
    assert want in str(e.value) and "bad.py:" in str(e.value)
    if "srcip" in want:
        assert "bad.py:6)" in str(e.value)      # the line that uses it


SETUP = '''
from dataclasses import dataclass
import numpy as np
from pynf.nf import nf

@dataclass(frozen=True)
class C:
    n: int = 4
    def validate(self):
        if self.n > 8:
            raise ValueError("n must be at most 8")

def state(cfg):
    return (np.zeros(cfg.n) / 0 if cfg.n == 3 else [1][cfg.n],)

@nf("setup", config=C, state=state, per_packet=True)
def setup(pkts, i, st):
    pass
'''


@pytest.mark.parametrize("n, want", [
    ("9", "pynf: NF setup: configuration: n must be at most 8"),
    pytest.param("4", "pynf: NF setup: state: IndexError: list index out of range", marks=pytest.mark.jit)])
def test_errors_in_an_nfs_setup_are_one_line(nfdir, n, want):
    rc, _, err = run_pynf(["--rtc", _nf(nfdir, "setup", SETUP), "--set", f"setup.n={n}", "--packets", "10"])
    assert rc == 2, err
    assert err.strip().splitlines()[-1] == want
    assert "Traceback" not in err


PAYLOAD = '''
from collections import namedtuple
import numpy as np
from pynf.nf import nf
from pynf.nf.access import byte, equal, iequal, payload

St = namedtuple("St", "out word")

@nf("pay", state=lambda: St(np.zeros(6, dtype=np.int64), np.frombuffer(b"get ", dtype=np.uint8).copy()),
    per_packet=True)
def pay(pkts, i, st):
    lo, hi = payload(pkts, i)
    st.out[0] = lo
    st.out[1] = hi
    st.out[2] = byte(pkts, i, lo, hi)
    st.out[3] = byte(pkts, i, hi, hi)               # one past the end: -1
    st.out[4] = equal(pkts, i, lo, hi, st.word, 4)
    st.out[5] = iequal(pkts, i, lo, hi, st.word, 4)
'''


def _pay(ch, frame):
    ch.run([frame])
    return [int(x) for x in ch.states[0].out]


def test_payload_bounds_and_compares(nfdir):
    ch = Chain([_nf(nfdir, "pay", PAYLOAD)])
    # UDP, 3 bytes of payload in a frame padded to 60: the padding is not payload
    f = P.udp(payload=b"GET")
    assert len(f) == 60
    assert _pay(ch, f) == [42, 45, ord("G"), -1, 0, 0]
    # TCP with 12 bytes of options: the payload starts after them
    s, d = P.ip("10.0.0.1"), P.ip("10.0.0.2")
    f = P.eth(P.ipv4(s, d, 6, l4=P.l4_header(6, 1234, 80, b"GET /x", s, d, doff=8)))
    assert _pay(ch, f) == [14 + 20 + 32, 14 + 20 + 32 + 6, ord("G"), -1, 0, 1]
    f = P.eth(P.ipv4(s, d, 6, l4=P.l4_header(6, 1234, 80, b"get /x", s, d)))
    assert _pay(ch, f)[4:] == [1, 1]
    # a UDP length shorter than the IP payload bounds it
    f = bytearray(P.udp(payload=b"abcdefgh", udp_csum=False))
    f[14 + 20 + 4:14 + 20 + 6] = (8 + 2).to_bytes(2, "big")
    assert _pay(ch, bytes(f))[:2] == [42, 44]
    # (an IPv4 total length past the frame never reaches an NF: the parser drops it)
    f = bytearray(P.udp(payload=b"x" * 30))
    f[16:18] = (1400).to_bytes(2, "big")
    assert ch.run([bytes(f)])[0][0] not in (0, 1)
    # a non-first fragment: the IP payload
    f = P.udp(payload=b"y" * 16, frag_off=4)
    assert _pay(ch, f)[:3] == [34, 34 + 16, ord("y")]


def test_raw_packet_access_is_refused(nfdir):
    text = '''
        from pynf.nf import nf

        def peek(pkts, i):
            return pkts.mem[pkts.off[i] + 40]

        @nf("raw", per_packet=True)
        def raw(pkts, i, st):
            if peek(pkts, i) == 1:
                pkts.port[i] = 1
        '''
    with pytest.raises(NFError) as e:
        load(_nf(nfdir, "raw", text))
    assert "raw.py:5): pkts.mem is not part of the NF API: use pynf.nf.access" in str(e.value)
