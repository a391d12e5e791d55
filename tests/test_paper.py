"""`pynf profile` and `pynf bench paper --quick` (files, plots, numbers; no timing)."""
import csv
import io
import json
import os

import pytest

from pynf.cli import main as cli

pytestmark = pytest.mark.jit


def test_profile_json():
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["profile", "acl,lb,l3fwd", "--io", "mem", "--duration", "0.5", "--json"], out, err)
    assert rc == 0, err.getvalue()
    res = json.loads(out.getvalue())
    assert [r["nf"] for r in res["nfs"]] == ["acl", "lb", "l3fwd"]
    assert all(r["rtc"] > 0 and r["pl"] > 0 for r in res["nfs"])
    assert res["ring_hop_cycles"] is not None
    assert res["mpps"]["rtc"] > 0 and res["mpps"]["pl"] > 0
    assert (res["counters"] is None) == (res["counters_note"] is not None)


def test_profile_table():
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["profile", "acl,l3fwd", "--io", "mem", "--duration", "0.3"], out, err)
    assert rc == 0, err.getvalue()
    assert "ring hop" in out.getvalue() and "l3fwd" in out.getvalue()


def test_bench_paper_quick(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["bench", "paper", "--quick", "--out", str(tmp_path)], out, err)
    assert rc == 0, err.getvalue()
    names = set(os.listdir(tmp_path))
    assert {"fig2.csv", "fig5.csv", "fig6.csv", "table2.csv", "report.md"} <= names
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) == 4
    import matplotlib.image as mpimg
    for n in pngs:
        img = mpimg.imread(os.path.join(tmp_path, n))
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01   # not blank
    for name in ("fig2", "fig5", "fig6"):
        rows = list(csv.DictReader(open(tmp_path / f"{name}.csv")))
        assert rows and all(float(r["mpps"]) > 0 for r in rows)
        assert all(float(r["mpps_min"]) <= float(r["mpps"]) <= float(r["mpps_max"]) for r in rows)
    t2 = list(csv.DictReader(open(tmp_path / "table2.csv")))
    assert [r["nf"] for r in t2] == ["acl", "lb", "l3fwd"] and all(float(r["rtc"]) > 0 for r in t2)
    report = (tmp_path / "report.md").read_text()
    for claim in ("1.4-3.3x", "1024 B", "L3 access", "2.2-2.3x"):
        assert claim in report
    assert report.count("here, because") == 4
    assert "## Machine" in report and "tsc_ghz" in report
