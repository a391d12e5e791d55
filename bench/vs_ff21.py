"""pynf now against pynf at commit ff21b16 (before the real-hosts work) and
the C chain, alternated on one capture (issue 19, item 2):

    git worktree add /work/ff21 ff21b16
    # ff21b16's shim, built beside its sources (its setup.py predates today's setuptools):
    mkdir /tmp/ffb && cp -r /work/ff21/shim /tmp/ffb && cd /tmp/ffb && for m in core dpdk; do
      .venv/bin/python -c "import runpy,sys; sys.path.insert(0,'shim');
        runpy.run_path('shim/build_$m.py')['ffibuilder'].compile(tmpdir='.')"; done
    cp /tmp/ffb/pynf/*.so /work/ff21/pynf/
    .venv/bin/python -m bench.vs_ff21 FLOWS ROUNDS DURATION     # ONLY="HEAD default,..." picks variants
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench.dpdk_vs_c import ROOT, build_cref, eal, run_c, write_inputs

OLD = os.environ.get("PYNF_OLD_TREE", "/work/ff21")


def pynf(root, files, duration, extra, cache):
    mb = int((files["frames"] + 65536) * 5 / 1024) + 512
    mod = "pynf.cli.main" if root == ROOT else "pynf.cli"     # ff21b16 had one cli module
    cmd = [sys.executable, "-m", mod, "run", "--rtc", "acl,lb,l3fwd", "--io", "dpdk",
           "--acl-rules", files["rules"], "--routes", files["routes"], "--backends", files["backends"],
           *extra, "--duration", str(duration), "--json", "--quiet", "--", *eal(files, mb)]
    if root == ROOT:
        cmd[4:4] = ["--compile", "fused"]
    env = dict(os.environ, PYTHONPATH=root, PYNF_CACHE_DIR=cache)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-800:])
    return json.loads(r.stdout)

def main():
    a = sys.argv[1:] + ["100000", "5", "3"][len(sys.argv) - 1:]
    flows, rounds, dur = int(a[0]), int(a[1]), float(a[2])
    b = build_cref()
    with tempfile.TemporaryDirectory() as d:
        f = write_inputs(d, flows)
        cap = ["--set", "lb.capacity=262144"]
        variants = {"HEAD default": (ROOT, [], "/tmp/pynf-head-cache"),
                    "HEAD cache off": (ROOT, ["--flow-cache", "off"], "/tmp/pynf-head-cache"),
                    "HEAD cap": (ROOT, cap, "/tmp/pynf-head-cache"),
                    "HEAD off noverify": (ROOT, ["--flow-cache", "off", "--set", "l3fwd.verify_ip_csum=0"],
                                          "/tmp/pynf-head-cache"),
                    "ff21b16 cap": (OLD, cap, "/tmp/pynf-old-cache")}
        only = os.environ.get("ONLY")
        if only:
            variants = {k: v for k, v in variants.items() if k in only.split(",")}
        runs = {"C": [], **{k: [] for k in variants}}
        for root, extra, cache in variants.values():
            pynf(root, f, 0.5, extra, cache)
        for _ in range(rounds):
            runs["C"].append(run_c(b, f, flows, dur))
            for k, (root, extra, cache) in variants.items():
                runs[k].append(pynf(root, f, dur, extra, cache))
        c = [x["mpps"] for x in runs["C"]]
        med = statistics.median
        print("| variant | Mpps median | runs | / C | busy cyc/pkt | stage cyc/pkt | per NF (median) |")
        print("|---|---|---|---|---|---|---|")
        for k, xs in runs.items():
            m = [x["mpps"] for x in xs]
            cyc = f"{med(x['cycles_per_packet'] for x in xs):.0f}"
            if k == "C":
                print(f"| C | {med(m):.2f} | {' '.join(f'{a:.2f}' for a in m)} | 1 | {cyc} | | |")
                continue
            busy = med(x.get("busy_cycles_per_packet", 0) for x in xs)
            per = ", ".join(f"{n}: {med(x['nfs'][n]['cycles_per_packet'] for x in xs):.1f}" for n in xs[0]["nfs"])
            print(f"| {k} | {med(m):.2f} | {' '.join(f'{a:.2f}' for a in m)} | "
                  f"{' '.join(f'{a / b:.2f}' for a, b in zip(m, c))} | {busy:.0f} | {cyc} | {per} |")


if __name__ == "__main__":
    main()
