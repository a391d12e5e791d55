"""Bad flags, bad files and odd environments: one line and exit 2 (or a
warning and a working run), never a traceback or a silent misreading."""
import os
import subprocess
import sys

import pytest

from support import ROOT, run_pynf


def run(args):
    rc, rep, err = run_pynf(args)
    return rc, err


def one_line(err):
    return err.strip() and err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--duration", "nan"], ["--duration", "inf"], ["--rate", "nan"],
                                  ["--set", "lb.tcp_timeout=nan"]])
def test_non_finite_numbers_refused(flag):
    rc, err = run(["--rtc", "acl,lb,l3fwd", "--io", "mem", *flag])
    assert rc == 2 and one_line(err) and "finite" in err


@pytest.mark.parametrize("flag,text", [("--routes", "1.2.3.\u00b2 0\n"), ("--routes", "1.2.3.4 \u00b2\n"),
                                       ("--backends", "1.2.3.4:\u00b2\n")])
def test_unicode_digits_in_files(tmp_path, flag, text):
    f = tmp_path / "f.txt"
    f.write_text(text, encoding="utf-8")
    rc, err = run(["--rtc", "lb,l3fwd", "--io", "mem", flag, str(f)])
    assert rc == 2 and one_line(err) and f"{f}:1:" in err


def test_pcap_out_into_a_missing_directory(tmp_path):
    rc, err = run(["--rtc", "l3fwd", "--io", "mem", "--pcap-out", str(tmp_path / "no" / "x.pcap")])
    assert rc == 2 and one_line(err) and "no directory" in err


def test_cache_directory_that_cannot_be_made():
    env = dict(os.environ, PYNF_CACHE_DIR="/proc/pynf-cannot")
    env.pop("NUMBA_DISABLE_JIT", None)      # (plain Python caches nothing, so says nothing)
    p = subprocess.run([sys.executable, "-m", "pynf.cli.main", "list"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 0 and "lb" in p.stdout
    assert one_line(p.stderr) and "/proc/pynf-cannot" in p.stderr


def test_numba_flags_are_in_the_cache_key():
    code = "from pynf.compiler.cache import digest; print(digest('pynf/nfs/lb.py'))"
    digests = set()
    for check in ("0", "1"):
        env = dict(os.environ, NUMBA_BOUNDSCHECK=check)
        digests.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   cwd=ROOT, env=env, timeout=120).stdout.strip())
    assert len(digests) == 2


@pytest.mark.jit
@pytest.mark.dpdk
@pytest.mark.parametrize("flags,msg", [(["--rx-ports", "5"], "--rx-ports 5"),
                                       (["--cores", "64"], "at most 16 queues")])
def test_dpdk_port_and_queue_errors(flags, msg):
    rc, err = run(["--rtc", "acl", "--io", "dpdk", "--duration", "1", *flags])
    assert rc == 2 and msg in err
