"""Render docs/grafana/pynf-dashboard.json's panels from a real run.

There is no Grafana on the machines pynf is built on, so this stands in for
a screenshot: it runs `pynf run --metrics` on built-in traffic, scrapes
/metrics every second (parsed with prometheus_client's parser), makes a few
live changes through the control socket, then evaluates each panel's own
PromQL queries over the scrapes (the handful of forms the dashboard uses:
rate, sum, sum by, scalar, / and * between them) and draws the panels in
the dashboard's grid with matplotlib.

    python -m bench.dashboard [--seconds 40] [--io mem] [--out docs/grafana/dashboard.png]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from pynf.control.metrics import scrape
from pynf.control.server import ask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASH = os.path.join(ROOT, "docs", "grafana", "pynf-dashboard.json")
WINDOW_S = 2.0          # what $__rate_interval stands for here


# ---- a small PromQL evaluator over a list of (t, scrape) ----

def _series(scrapes, name):
    """{labels: [(t, v), ...]} of one metric name."""
    out = {}
    for t, sc in scrapes:
        for (n, lab), v in sc.items():
            if n == name:
                out.setdefault(lab, []).append((t, v))
    return out


def _rate(points):
    out = []
    for k, (t, v) in enumerate(points):
        j = k
        while j > 0 and t - points[j - 1][0] <= WINDOW_S + 0.5:
            j -= 1
        if j < k:
            t0, v0 = points[j]
            out.append((t, max(0.0, v - v0) / (t - t0)))
    return out


def _binop(a, b, op):
    f = (lambda x, y: x / y if y else float("nan")) if op == "/" else (lambda x, y: x * y)
    if isinstance(b, float):
        return {lab: [(t, f(v, b)) for t, v in pts] for lab, pts in a.items()}
    if "scalar" in b:
        sc = dict(b["scalar"])
        return {lab: [(t, f(v, sc[t])) for t, v in pts if t in sc] for lab, pts in a.items()}
    out = {}
    for lab, pts in a.items():
        if lab in b:
            other = dict(b[lab])
            out[lab] = [(t, f(v, other[t])) for t, v in pts if t in other]
    return out


def evaluate(expr, scrapes):
    expr = expr.replace("[$__rate_interval]", "").strip()
    for op in (" / ", " * "):
        depth = 0
        for k, ch in enumerate(expr):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and expr[k:k + 3] == op:
                a = evaluate(expr[:k], scrapes)
                rhs = expr[k + 3:].strip()
                b = float(rhs) if re.fullmatch(r"[\d.e+]+", rhs) else evaluate(rhs, scrapes)
                return _binop(a, b, op.strip())
    m = re.fullmatch(r"sum by \((\w+)\) \((.*)\)", expr)
    if m:
        return _sum(evaluate(m.group(2), scrapes), m.group(1))
    m = re.fullmatch(r"sum\((.*)\)", expr)
    if m:
        return _sum(evaluate(m.group(1), scrapes), None)
    m = re.fullmatch(r"rate\((\w+)\)", expr)
    if m:
        return {lab: _rate(p) for lab, p in _series(scrapes, m.group(1)).items()}
    m = re.fullmatch(r"scalar\((\w+)\)", expr)
    if m:
        s = _series(scrapes, m.group(1))
        return {"scalar": next(iter(s.values()), [])}
    if re.fullmatch(r"\w+", expr):
        return _series(scrapes, expr)
    raise ValueError(f"query form not handled here: {expr}")


def _sum(vec, by):
    out = {}
    for lab, pts in vec.items():
        key = tuple((k, v) for k, v in lab if k == by) if by else ()
        acc = out.setdefault(key, {})
        for t, v in pts:
            acc[t] = acc.get(t, 0.0) + v
    return {k: sorted(d.items()) for k, d in out.items()}


def legend(fmt, lab):
    d = dict(lab)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: d.get(m.group(1), ""), fmt)


# ---- the run ----

def record(seconds, io_kind, port, sock):
    p = subprocess.Popen([sys.executable, "-m", "pynf.cli.main", "run", "--rtc", "acl,lb,l3fwd", "--io", io_kind,
                          "--duration", str(seconds + 60), "--control", sock, "--metrics", str(port),
                          "--json", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    while not os.path.exists(sock):
        if p.poll() is not None:
            raise SystemExit(p.stderr.read())
        time.sleep(0.2)
    allow = os.path.join(os.path.dirname(sock), "allow.txt")
    with open(allow, "w") as f:
        f.write("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 allow\n")
    events = {int(seconds * 0.25): (["lb", "backend", "drain", "*", "192.168.0.1:8080"], "drain a backend"),
              int(seconds * 0.3): (["lb", "flush"], "flush LB flows"),
              int(seconds * 0.5): (["acl", "load", allow], "ACL: allow all"),
              int(seconds * 0.75): (["route", "del", "192.168.0.3"], "delete a route")}
    scrapes, marks = [], []
    t0 = time.time()
    for k in range(seconds + 1):
        while time.time() < t0 + k:
            time.sleep(0.01)
        scrapes.append((round(time.time() - t0, 3), scrape("127.0.0.1", port)))
        if k in events:
            words, what = events[k]
            rc, out, err = ask(sock, words)
            marks.append((time.time() - t0, what if rc == 0 else f"{what}: {err}"))
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    return scrapes, marks, json.loads(out)


def render(scrapes, marks, out_png, subtitle):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(DASH) as f:
        dash = json.load(f)
    panels = dash["panels"]
    rows = max(p["gridPos"]["y"] // 8 for p in panels) + 1
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, 2, figsize=(16, 3.2 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    for p in panels:
        ax = axes[p["gridPos"]["y"] // 8][p["gridPos"]["x"] // 12]
        ax.set_facecolor("#181b1f")
        ax.set_title(p["title"], loc="left", fontsize=10, color="#ccccdc")
        for tgt in p["targets"]:
            for lab, pts in sorted(evaluate(tgt["expr"], scrapes).items()):
                if lab == "scalar" or not pts:
                    continue
                ax.plot([t for t, _ in pts], [v for _, v in pts], lw=1.4,
                        label=legend(tgt["legendFormat"], lab))
        for t, _what in marks:
            ax.axvline(t, color="#ff9830", lw=0.8, alpha=0.6)
        unit = p["fieldConfig"]["defaults"]["unit"]
        ax.set_ylabel({"pps": "packets/s", "bps": "bits/s", "percentunit": "share", "ops": "per s",
                       "none": "cycles"}.get(unit, ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.15)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left", framealpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("seconds", fontsize=8)
    notes = "; ".join(f"{t:.0f} s: {w}" for t, w in marks)
    fig.suptitle(f"pynf dashboard (docs/grafana/pynf-dashboard.json), {subtitle}\n"
                 f"orange lines: {notes}", fontsize=10, color="#ccccdc")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80, facecolor=fig.get_facecolor())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--io", default="mem", choices=("mem", "dpdk"))
    ap.add_argument("--port", type=int, default=9469)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "grafana", "dashboard.png"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        scrapes, marks, rep = record(a.seconds, a.io, a.port, os.path.join(d, "pynf.sock"))
    render(scrapes, marks, a.out, f"pynf run --rtc acl,lb,l3fwd --io {a.io}, "
                                  f"{time.strftime('%Y-%m-%d')}, {rep['mpps']:.2f} Mpps over the run")
    print(f"{a.out}: {len(scrapes)} scrapes, final rx {rep['rx']:,} tx {rep['tx']:,}")


if __name__ == "__main__":
    main()
