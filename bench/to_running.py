"""Time a pynf command: seconds from its start to its 'pynf: running' line
and to its end, and the report's cycles per packet (with --json); the
lines that say what was compiled, and how.

    python bench/to_running.py pynf run --rtc acl,lb,l3fwd --duration 1 --json --quiet
"""
import json
import subprocess
import sys
import time


def main(argv):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    running = None
    lines = []
    for line in p.stderr:
        lines.append(line.rstrip())
        if running is None and line.startswith("pynf: running"):
            running = round(time.perf_counter() - t0, 2)
    out = p.stdout.read()
    p.wait()
    total = time.perf_counter() - t0
    try:
        cpp = json.loads(out).get("cycles_per_packet")
    except ValueError:
        cpp = None
    print(f"to_running={running} total={total:.2f} cpp={cpp} rc={p.returncode}")
    for ln in lines:
        if ln.startswith("pynf:   ") or "fused" in ln:
            print("   ", ln)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
