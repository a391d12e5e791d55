"""Fast start (pynf.runtime.fuse, issue 24): a stage whose fused code is not
cached runs unfused at once (each NF compiled alone) and is fused in the
background, swapped in between bursts with nothing lost or counted twice."""
import threading
import time

import pytest

from support import ROOT, conserved, run_pynf

pytestmark = pytest.mark.jit


def _copy(tmp_path, name):
    """A copy of the example counter NF, registered as `name`, that a test may edit."""
    path = tmp_path / f"{name}.py"
    text = open(f"{ROOT}/examples/counter.py").read()
    path.write_text(text.replace('@nf("counter"', f'@nf("{name}"'))
    return path


def _runtime(token, **kw):
    from pynf.io import feed
    from pynf.io.mem.backend import MemIO
    from pynf.nf.context import RunContext
    from pynf.packet.clock import tsc_hz
    from pynf.runtime.chain import parse
    from pynf.runtime.options import Options
    from pynf.runtime.runtime import Runtime
    opts = Options(cores=[0], compile="fast", **kw)
    return Runtime(parse(rtc=f"acl,{token},l3fwd", cores=1), RunContext(flows=256), opts,
                   io=MemIO(feed.builtin(256, 64, 1, 1), opts.tx_ports, hz=tsc_hz()))


def test_unfused_then_fused_counts_every_packet_once(tmp_path):
    counter = _copy(tmp_path, "counted")
    from pynf.runtime.report import report
    from pynf.slots import NF_RX
    rt = _runtime(f"{counter}:counted", duration=120)
    rt.build()
    rt.compile()
    assert all(w.unfused is not None for w in rt.workers)        # not in the cache: unfused first
    t = threading.Thread(target=rt.run)
    t.start()
    t0 = time.monotonic()
    while not rt.fuser.swapped and rt.fuser.error is None and time.monotonic() - t0 < 110:
        time.sleep(0.05)
    before = int(rt.workers[0].nfstat[1, NF_RX])
    time.sleep(0.3)                     # some bursts fused
    rt.request_stop()
    t.join()
    rep = report(rt)
    rt.close()
    assert rt.fuser.error is None and rt.fuser.swapped, "the fused stage never swapped in"
    assert rt.workers[0].unfused is None and rt.workers[0].loop is not None
    assert before > 0 and rep["nfs"]["counted"]["rx"] > before    # packets on both sides of the swap
    st = rt.mail.states("counted")[0]
    assert conserved(rep)
    assert int(st.packets.sum()) == rep["nfs"]["counted"]["rx"]   # each packet counted once


def test_an_edited_nf_compiles_alone_and_runs_at_once(tmp_path):
    counter = _copy(tmp_path, "edited")
    args = ["--rtc", f"acl,{counter}:edited,l3fwd", "--packets", "20000", "--compile", "fast"]
    rc, rep, err = run_pynf(args)
    assert rc == 0, err
    text = counter.read_text().replace("st.bytes[p] += pkts.len[i]", "st.bytes[p] += pkts.len[i] + 1")
    counter.write_text(text)                      # a one-line edit
    rc, rep, err = run_pynf(args)
    assert rc == 0 and conserved(rep), err
    compiled = [ln for ln in err.splitlines() if ln.startswith("pynf:   ")]
    # only the edited NF compiles before running: acl, l3fwd and the unfused loop come from the cache
    assert all("NF edited" in ln for ln in compiled), compiled
    assert rep["nfs"]["edited"]["rx"] == rep["rx"] - rep["drops"].get("acl", 0)
