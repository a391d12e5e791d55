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
    for t in threading.enumerate():         # the first run's fused compile, left going in this process,
        if t.name == "pynf-fuse":           # holds Numba's compiler lock: let it end
            t.join()
    text = counter.read_text().replace("st.bytes[p] += pkts.len[i]", "st.bytes[p] += pkts.len[i] + 1")
    counter.write_text(text)                      # a one-line edit
    rc, rep, err = run_pynf(args)
    assert rc == 0 and conserved(rep), err
    compiled = [ln for ln in err.splitlines() if ln.startswith("pynf:   ")]
    # only the edited NF compiles before running: acl, l3fwd and the unfused loop come from the cache
    assert all("NF edited" in ln for ln in compiled), compiled
    assert rep["nfs"]["edited"]["rx"] == rep["rx"] - rep["drops"].get("acl", 0)


def _wait(cond, limit=110):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < limit:
        time.sleep(0.05)
    return cond()


def test_nf_reload_runs_the_edited_code_and_keeps_the_state(tmp_path):
    """pynf ctl nf reload: the edited NF runs from the next burst, with its
    state; each packet passes through the old code or the new, once."""
    from pynf.control.commands import Commands
    from pynf.runtime.report import report
    path = _copy(tmp_path, "reloaded")
    rt = _runtime(f"{path}:reloaded", duration=300)
    rt.build()
    rt.compile()
    t = threading.Thread(target=rt.run)
    t.start()
    try:
        assert _wait(lambda: rt.fuser.swapped), "never fused"
        path.write_text(path.read_text().replace("st.packets[p] += 1", "st.packets[p] += 2"))
        out = Commands(rt).run(["nf", "reload", "reloaded"])
        assert "state kept" in out, out
        assert _wait(lambda: len(rt.fuser.swapped) == 2), "the new code never fused"
        time.sleep(0.2)
    finally:
        rt.request_stop()
        t.join()
    rep = report(rt)
    rt.close()
    st = rt.mail.states("reloaded")[0]
    rx = rep["nfs"]["reloaded"]["rx"]
    assert conserved(rep)
    assert int(st.bytes.sum()) == 60 * rx                # every packet counted once (60-byte frames)
    through_new = int(st.packets.sum()) - rx              # the new code counts 2 a packet
    assert 0 < through_new < rx


def test_nf_reload_with_a_new_state_layout_and_refusals(tmp_path):
    from pynf.control.commands import Commands
    from pynf.errors import UsageError
    from pynf.runtime.report import report
    path = _copy(tmp_path, "relaid")
    rt = _runtime(f"{path}:relaid", duration=300)
    rt.build()
    rt.compile()
    cmd = Commands(rt)
    with pytest.raises(UsageError, match="not running"):
        cmd.run(["nf", "reload", "relaid"])
    t = threading.Thread(target=rt.run)
    t.start()
    try:
        assert _wait(lambda: rt.workers[0].ws[0] > 0, 30)
        with pytest.raises(UsageError, match="no NF 'nope'"):
            cmd.run(["nf", "reload", "nope"])
        text = path.read_text()
        path.write_text(text.replace('drops=("blocked",)', 'drops=("blocked", "other")'))
        with pytest.raises(UsageError, match="drop reasons changed"):
            cmd.run(["nf", "reload", "relaid"])
        path.write_text(text.replace('"packets bytes block"', '"packets bytes block extra"').replace(
            "block=np.array([cfg.block_proto], dtype=np.int64))",
            "block=np.array([cfg.block_proto], dtype=np.int64), extra=np.zeros(1, dtype=np.int64))"))
        out = cmd.run(["nf", "reload", "relaid"])
        assert "made anew" in out, out
        time.sleep(0.3)
    finally:
        rt.request_stop()
        t.join()
    rep = report(rt)
    rt.close()
    assert conserved(rep)
    assert 0 < int(rt.mail.states("relaid")[0].packets.sum()) < rep["nfs"]["relaid"]["rx"]
