"""Run a pynf command; print seconds from start to the 'pynf: running' line,
the total wall time, and the report's cycles per packet (with --json)."""
import json, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
running = None
lines = []
for line in p.stderr:
    lines.append(line.rstrip())
    if running is None and line.startswith("pynf: running"):
        running = time.perf_counter() - t0
out = p.stdout.read()
p.wait()
total = time.perf_counter() - t0
cpp = None
try:
    rep = json.loads(out)
    cpp = rep.get("busy_cycles_per_packet") or rep.get("cycles_per_packet")
except Exception:
    pass
print(f"to_running={running if running is None else round(running, 2)} total={total:.2f} cpp={cpp} rc={p.returncode}")
for ln in lines:
    if ln.startswith("pynf:   ") or "unfused" in ln or "fused:" in ln:
        print("   ", ln)
