"""The paper's Fig. 6 alone, with the flow-cache series (issue 11): the RTC
chain's Mpps by flow count, cache off and on, `pynf bench paper`'s full
sweep and method (bench.paper.run_fig6), without the other experiments.

    .venv/bin/python -m bench.fig6 [--io dpdk|mem] [--repeats 3] [--out DIR]

Writes DIR/fig6.csv and DIR/fig6_rtc_state.png and prints the table.
"""
import argparse
import os
import sys

from bench import paper


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--io", choices=("dpdk", "mem"), default="dpdk")
    ap.add_argument("--repeats", type=int, default=paper.SWEEPS["full"]["repeats"])
    ap.add_argument("--out", default="bench/results/fig6")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    rows = paper.run_fig6(paper.Runner(a.io, a.repeats, sys.stderr), paper.SWEEPS["full"])
    paper.write_csv(os.path.join(a.out, "fig6.csv"), rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    paper.draw_fig6(ax, rows)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "fig6_rtc_state.png"), dpi=110)
    info = paper.machine(a.io)
    print(f"{info['cpu']}, {info['cores']} core(s), io {a.io}, {a.repeats} runs a point (median, min-max)\n")
    print("| flows | frame | flow cache | Mpps | min | max |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['flows']:,} | {r['frame_size']} | {'on' if r['model'] == 'rtc+cache' else 'off'} | "
              f"{r['mpps']} | {r['mpps_min']} | {r['mpps_max']} |")


if __name__ == "__main__":
    main()
