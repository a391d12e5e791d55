"""The NF API: the README's example, field analysis, registry errors."""
import inspect
import os
import re
import sys

import pytest

from pynf.nf import NFError, fields_used, load, nf
from pynf.testing import Chain, run_frames

import packets as P
from support import ROOT


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's NF example, written to a file as a reader would."""
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"## Write an NF.*?```python\n(.*?)```", text, re.S)
    assert m, "README lost its NF example"
    path = tmp_path_factory.mktemp("readme") / "readme_counter.py"
    path.write_text(m.group(1))
    return str(path)


def test_readme_example_runs(example):
    path = example
    frames = [P.udp(), P.tcp(), P.udp(), P.arp()]
    res = run_frames([f"{path}:counter"], frames)
    assert res.verdicts == [0, 0, 0, "not_ipv4"]
    st = Chain([f"{path}:counter"]).states[0]
    assert st.packets.sum() == 0          # a fresh chain has fresh state


def test_readme_example_blocks_and_counts(example):
    from pynf.nf.context import RunContext
    path = example
    ch = Chain(["acl", f"{path}:counter", "l3fwd"],
               RunContext(settings={"counter": {"block_proto": "17"}}))
    frames = [P.udp(), P.tcp(dst="10.0.0.1"), P.tcp(dst="10.0.0.1", dport=23)]
    verdicts, _ = ch.run(frames)
    assert verdicts == ["blocked", 0, "acl"]       # 10.0.0.1 has a default route; acl runs first
    st = ch.states[1]
    assert st.packets[17] == 1 and st.packets[6] == 1 and st.bytes[6] == len(frames[1])


def test_example_file_matches_readme(example):
    assert open(example).read() == open(os.path.join(ROOT, "examples", "counter.py")).read()


def test_field_analysis():
    def f1(pkts, live, n, st):
        for j in range(n):
            i = live[j]
            pkts.ttl[i] -= 1
            pkts.port[i] = pkts.dport[i] % 2
    r, w = fields_used(f1)
    assert r == {"dport"} and w == {"ttl"}

    def f2(pkts, live, n, st):
        helper(pkts, live)  # noqa: F821 - the batch escapes: assume everything

    r, w = fields_used(f2)
    assert "dst_ip" in w and "eth_src" in w

    def f3(pkts, live, n, st):
        d = pkts.dst_ip     # aliased array: may be written
        d[live[0]] = 1

    assert "dst_ip" in fields_used(f3)[1]


def test_library_nfs_declare_what_they_write():
    assert load("acl").writes == frozenset()
    # services mode rewrites the reply's source back to VIP:PORT
    assert load("lb").writes == {"dst_ip", "dport", "src_ip", "sport"}
    # router mode answers ICMP echo (swaps the addresses); the analysis
    # follows the batch into l3fwd's module helpers (route, echo_reply)
    assert load("l3fwd").writes == {"ttl", "eth_src", "eth_dst", "src_ip", "dst_ip"}
    # ... but each declares what its paper mode writes, and a stage writes back only that
    from pynf.nfs.l3fwd import L3fwdConfig
    from pynf.nfs.lb import LbConfig
    assert load("lb").written(LbConfig()) == {"dst_ip", "dport"}
    assert load("l3fwd").written(L3fwdConfig()) == {"ttl", "eth_src", "eth_dst"}
    assert load("l3fwd").written(L3fwdConfig(prefixes=((0, 0, 1, 0),))) == load("l3fwd").writes
    from pynf.compiler.stage import generate
    paper = generate([load("lb"), load("l3fwd")], 0, [{"dst_ip", "dport"}, {"ttl", "eth_src", "eth_dst"}])
    # the write-back is a module of its own per set of fields, named in the stage
    wb = re.search(r"^from (pynf_wb_\w+) import writeback$", paper, re.M).group(1)
    src = inspect.getsource(sys.modules[wb])
    assert "eth, ttl, src_ip, dst_ip, sport, dport = True, True, False, True, False, True" in src


def test_registry_errors(tmp_path):
    with pytest.raises(NFError, match="unknown NF 'nope'"):
        load("nope")
    with pytest.raises(NFError, match="snake_case"):
        nf("Bad-Name")
    with pytest.raises(NFError, match="must take"):
        nf("two_args")(lambda a, b: None)
    with pytest.raises(NFError, match="no such NF file"):
        load(str(tmp_path / "missing.py") + ":x")
    p = tmp_path / "empty.py"
    p.write_text("x = 1\n")
    with pytest.raises(NFError, match="defines no NF"):
        load(f"{p}:x")


def test_per_packet_form_and_its_signature(tmp_path):
    from pynf.nf import NFError, load
    from pynf.testing import run_frames
    src = tmp_path / "ttlcap.py"
    src.write_text(
        "from pynf.nf import drop, nf\n"
        "@nf('ttlcap', drops=('low',), per_packet=True)\n"
        "def ttlcap(pkts, i, st):\n"
        "    if pkts.ttl[i] < 10:\n"
        "        pkts.port[i] = drop(0)\n"
        "    elif pkts.ttl[i] > 100:\n"
        "        pkts.ttl[i] = 100\n")
    spec = load(f"{src}:ttlcap")
    assert spec.per_packet and spec.writes == {"ttl"}
    res = run_frames([spec, "l3fwd"], [P.udp(dst="10.0.0.1", ttl=5), P.udp(dst="10.0.0.1", ttl=200),
                                       P.udp(dst="10.0.0.1", ttl=50)])
    assert res.verdicts[0] == "low" and res.frames[1][22] == 99 and res.frames[2][22] == 49
    bad = tmp_path / "bad.py"
    bad.write_text("from pynf.nf import nf\n@nf('bad', per_packet=True)\ndef bad(pkts, live, n, st):\n    pass\n")
    with pytest.raises(NFError, match=r"must take \(pkts, i, state\)"):
        load(f"{bad}:bad")
