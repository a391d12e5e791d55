"""Property tests (hypothesis): frames from header-field strategies, raw
bytes and mutated corpus captures, through every NF and the paper's chain.

For any burst: no exception; one verdict per frame, each a port, a known
drop reason or a slow-path hand-over, and the drop counters add up to the
dropped frames; a forwarded frame keeps its length, and its checksums are
valid exactly when they were valid on input (an NF that rewrites headers
updates them incrementally, RFC 1624), except that l3fwd drops a wrong IPv4
header checksum (ip_csum). scripts/test also runs this file with
NUMBA_BOUNDSCHECK=1 (compiled with bounds checks, in a cache of its own),
so an out-of-bounds access in any kernel raises instead of reading
another packet's bytes.
"""
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynf.compiler.jit import NO_JIT
from pynf.io import pcap
from pynf.nf.context import RunContext
from pynf.packet.drops import NAMES
from pynf.testing import Chain

import packets as P
from support import HERE

EXAMPLES = 25 if NO_JIT else 150
CORPUS = [pcap.read(os.path.join(HERE, "corpus", f))
          for f in sorted(os.listdir(os.path.join(HERE, "corpus"))) if f.endswith(".pcap")]
CORPUS_FRAMES = [c.frame(i) for c in CORPUS for i in range(len(c)) if len(c.frame(i)) <= 2048]

_CHAINS = {}


def chain(names, tmp):
    key = tuple(names)
    if key not in _CHAINS:
        svc = os.path.join(tmp, "services.txt")
        with open(svc, "w") as f:
            f.write("10.0.0.2:80 192.168.1.1:80 192.168.1.2:8080\n10.0.0.3:53 192.168.2.1:53\n")
        # l3fwd checks IPv4 header checksums (off by default in exact-match mode)
        ctx = RunContext(files={"backends": svc} if "lb_services" in names else {},
                         settings={"l3fwd": {"verify_ip_csum": "1"}} if "l3fwd" in names else {})
        _CHAINS[key] = Chain([n.replace("lb_services", "lb") for n in names], ctx)
    return _CHAINS[key]


ADDRS = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.1", "192.168.0.5", "172.16.0.9"])


@st.composite
def structured(draw):
    proto = draw(st.sampled_from([6, 17, 1, 47]))
    kw = dict(proto=proto, sport=draw(st.integers(0, 65535)), dport=draw(st.sampled_from([23, 53, 80, 443, 0])),
              ttl=draw(st.integers(0, 255)), payload=draw(st.binary(max_size=64)),
              options=draw(st.sampled_from([b"", b"\x01" * 4, b"\x01" * 40])),
              udp_csum=draw(st.booleans()), tcp_flags=draw(st.sampled_from([0x02, 0x10, 0x11, 0x04, 0x18])),
              ident=draw(st.integers(0, 65535)))
    if draw(st.integers(0, 5)) == 0:
        kw.update(frag_off=draw(st.integers(0, 100)), mf=draw(st.booleans()), df=False)
    frame = P.eth(P.ipv4(draw(ADDRS), draw(ADDRS), **kw), vlan=draw(st.sampled_from([None, 7])))
    if draw(st.integers(0, 4)) == 0:            # a wrong IPv4 header checksum
        b = bytearray(frame)
        b[24 if frame[12:14] == b"\x08\x00" else 28] ^= draw(st.integers(1, 255))
        frame = bytes(b)
    return frame


@st.composite
def mutated(draw):
    f = bytearray(draw(st.sampled_from(CORPUS_FRAMES)))
    for _ in range(draw(st.integers(0, 4))):
        if f:
            f[draw(st.integers(0, len(f) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        f = f[:draw(st.integers(0, len(f)))]
    return bytes(f)


FRAMES = st.one_of(structured(), mutated(), st.binary(max_size=120))
CHAINS = [["acl"], ["lb"], ["lb_services"], ["l3fwd"], ["acl", "lb", "l3fwd"], ["acl", "lb_services", "l3fwd"]]


def ip_ok(frame):
    """The IPv4 header checksum verifies (None: no complete IPv4 header)."""
    off = 18 if frame[12:14] == b"\x81\x00" else 14
    if len(frame) < off + 20 or frame[off - 2:off] != b"\x08\x00":
        return None
    ihl = (frame[off] & 15) * 4
    return P.csum(frame[off:off + ihl]) == 0 if len(frame) >= off + ihl else None


@pytest.mark.parametrize("names", CHAINS, ids=[",".join(c) for c in CHAINS])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
@given(frames=st.lists(FRAMES, min_size=1, max_size=40))
def test_any_burst(names, frames, tmp_path):
    ch = chain(names, str(tmp_path))
    before = dict(ch.drop_counts())
    verdicts, outs = ch.run(frames)
    assert len(verdicts) == len(frames) == len(outs)
    dropped = {}
    known = set(NAMES.values()) | {r for sp in ch.specs for r in sp.drops}
    for f, v, o in zip(frames, verdicts, outs):
        if isinstance(v, str):
            assert v in known and o is None
            dropped[v] = dropped.get(v, 0) + 1
            continue
        if isinstance(v, tuple):
            assert v[0] == "slowpath"
            continue
        assert isinstance(v, int) and v >= 0 and len(o) == len(f)
        if "l3fwd" in names:
            assert ip_ok(o) is not False                 # wrong ones were dropped (ip_csum)
        else:
            assert ip_ok(o) == ip_ok(f)
        if ip_ok(f):
            assert P.checksums_ok(o) == P.checksums_ok(f), (f.hex(), o.hex())
    after = ch.drop_counts()
    assert {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)} \
        == dropped


def test_corpus_frames_loaded():
    assert len(CORPUS_FRAMES) > 1000


def fuzz_frames(n, seed=7):
    """n frames for a long pass: mutated corpus frames, truncations and raw
    bytes, generated with random (hypothesis is for shrinking, not bulk)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.7:
            f = bytearray(rng.choice(CORPUS_FRAMES))
            for _ in range(rng.randrange(5)):
                if f:
                    f[rng.randrange(len(f))] = rng.randrange(256)
            if rng.random() < 0.2:
                f = f[:rng.randrange(len(f) + 1)]
            out.append(bytes(f))
        elif k < 0.9:
            out.append(P.udp(f"10.0.0.{rng.randrange(1, 9)}", f"10.0.0.{rng.randrange(1, 9)}",
                             sport=rng.randrange(65536), ttl=rng.randrange(256)))
        else:
            out.append(rng.randbytes(rng.randrange(121)))
    return out


@pytest.mark.long
@pytest.mark.jit
@pytest.mark.parametrize("io_kind", ["mem", pytest.param("dpdk", marks=pytest.mark.dpdk)])
def test_a_million_fuzzed_frames_through_pynf_run(tmp_path, io_kind):
    """pytest --long: 1,000,000 frames through `pynf run --rtc acl,lb,l3fwd`."""
    from support import conserved, run_pynf, write_pcap
    path = tmp_path / "fuzz.pcap"
    write_pcap(path, fuzz_frames(1_000_000))
    rc, rep, err = run_pynf(["--rtc", "acl,lb,l3fwd", "--pcap-in", str(path)], io_kind)
    assert rc == 0, err
    assert rep["rx"] == 1_000_000 and conserved(rep)
    assert rep.get("buffers_in_use", 0) == 0 and rep.get("mbufs_in_use", 0) == 0
    print(f"\n{io_kind}: rx {rep['rx']:,} tx {rep['tx']:,} drops {rep['drops']}")
