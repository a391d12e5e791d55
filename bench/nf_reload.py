"""`nf reload` under full load: acl,counter,l3fwd runs (in-memory I/O,
--compile fast) until fused; then counter is edited (one line) and
reloaded. Prints the reload's time, the longest stretch in which the
worker received nothing (sampled every millisecond from another thread),
and whether every packet was counted once.

    PYTHONPATH=. python bench/nf_reload.py
"""
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from test_fuse import _runtime, _wait  # noqa: E402

from pynf.control.commands import Commands  # noqa: E402
from pynf.runtime.report import report  # noqa: E402
from pynf.slots import W_RX  # noqa: E402


def main():
    path = os.path.join(tempfile.mkdtemp(), f"reloaded{random.randrange(1 << 30)}.py")
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "examples", "counter.py"), path)
    rt = _runtime(f"{path}:counter", duration=300)
    rt.build()
    rt.compile()
    t = threading.Thread(target=rt.run)
    t.start()
    samples, stop = [], []

    def sample():
        while not stop:
            samples.append((time.perf_counter(), int(rt.workers[0].ws[W_RX])))
            time.sleep(0.001)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    start = time.perf_counter()
    if not _wait(lambda: rt.fuser.swapped):
        raise SystemExit("never fused")
    fused0 = time.perf_counter()
    time.sleep(0.5)
    text = open(path).read().replace("st.packets[p] += 1", f"st.packets[p] += {random.randrange(2, 1000)}")
    open(path, "w").write(text)
    t0 = time.perf_counter()
    print(Commands(rt).run(["nf", "reload", "counter"]).strip())
    _wait(lambda: len(rt.fuser.swapped) == 2)
    fused = time.perf_counter() - t0
    time.sleep(0.5)
    stop.append(1)
    rt.request_stop()
    t.join()
    rep = report(rt)
    rt.close()
    print(f"started unfused, fused {fused0 - start:.1f} s later: longest stretch without a packet "
          f"received meanwhile {_stall(samples, start + 1, fused0) * 1e3:.0f} ms")
    print(f"reload: fused again {fused:.1f} s after the command; longest stretch without a packet received "
          f"from the command on: {_stall(samples, t0, t0 + fused + 0.5) * 1e3:.0f} ms; "
          f"rx = tx + drops: {rep['rx'] == rep['tx'] + sum(rep['drops'].values())}")


def _stall(samples, a, b):
    """The longest time between two samples with rx growing, within [a, b]."""
    worst, last = 0.0, None
    for ts, rx in samples:
        if not a <= ts <= b:
            continue
        if last is None or rx != last[1]:
            if last is not None:
                worst = max(worst, ts - last[0])
            last = (ts, rx)
    return worst


if __name__ == "__main__":
    main()
