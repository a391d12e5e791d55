"""What several test files share: paths, the conservation check, test
captures, and why DPDK tests would skip. (Imported as `support`: pytest
puts this folder on sys.path; conftest.py holds only fixtures and hooks.)"""
import os
import random

from pynf.compiler.jit import NO_JIT
from pynf.io import pcap

import packets as P

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def dpdk_skip_reason():
    """Why the DPDK tests cannot run here, or None."""
    if NO_JIT:
        return "needs the Numba JIT"
    from pynf.io.dpdk import backend as dpdk
    return dpdk.why_unavailable()


DPDK_SKIP = dpdk_skip_reason()


def run_pynf(args, io="mem"):
    """`pynf run ARGS --json --quiet` through the CLI in this process (with
    --io io unless ARGS give one): (exit status, report or None, stderr)."""
    import io as _io
    import json

    from pynf.cli import main as cli
    out, err = _io.StringIO(), _io.StringIO()
    if "--io" not in args:
        args = [*args, "--io", io]
    rc = cli.main(["run", *args, "--json", "--quiet"], out, err)
    return rc, (json.loads(out.getvalue()) if rc == 0 else None), err.getvalue()


def conserved(rep):
    return rep["rx"] == rep["tx"] + sum(rep["drops"].values())


def write_pcap(path, frames):
    w = pcap.Writer(str(path))
    for k, f in enumerate(frames):
        w.write(f, 1_000_000_000 + k * 1000)
    w.close()


def mixed_frames(rng, n):
    frames = []
    for _ in range(n):
        kind = rng.random()
        src = f"10.0.{rng.randrange(4)}.{rng.randrange(256)}"
        dst = rng.choice(["10.0.0.2", "10.0.0.3", "10.0.0.4", "172.16.0.9"])
        if kind < 0.4:
            frames.append(P.udp(src, dst, sport=rng.randrange(1, 65536), dport=rng.choice([53, 80, 23]),
                                ttl=rng.choice([1, 2, 64]), udp_csum=rng.random() < 0.8))
        elif kind < 0.8:
            frames.append(P.tcp(src, dst, sport=rng.randrange(1, 65536), dport=rng.choice([80, 443, 23]),
                                ttl=rng.choice([2, 64])))
        elif kind < 0.9:
            frames.append(P.eth(P.ipv4(src, dst, options=b"\x01" * 4), vlan=rng.randrange(4096)))
        else:
            frames.append(rng.choice([P.arp(), P.ipv6(), P.udp()[:20],
                                      P.eth(P.ipv4(src, dst, frag_off=8, df=False, payload=b"f" * 24))]))
    return frames


def flow_frames(nflows=60, per_flow=30, seed=4):
    """Interleaved packets of many flows; the IP id numbers each flow's packets."""
    rng = random.Random(seed)
    flows = [(f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}", f"10.0.0.{rng.randrange(1, 200)}",
              rng.randrange(1024, 65536), rng.choice([80, 443, 53]), rng.choice([P.udp, P.tcp]))
             for _ in range(nflows)]
    seqs = [0] * nflows
    frames = []
    for _ in range(nflows * per_flow):
        k = rng.randrange(nflows)
        src, dst, sp, dp, mk = flows[k]
        frames.append(mk(src, dst, sport=sp, dport=dp, ident=seqs[k]))
        seqs[k] += 1
    return frames


def corpus_runs(files, tmp_dir):
    """The corpus as few runs, every frame still replayed: the captures with
    an ordinary header (little-endian, microseconds, no record past the
    snap length, nothing cut short) merged into one file, in order, and
    each other capture alone (the readers' corner cases). [(path, frames)]"""
    import struct

    from pynf.io import pcap
    merged, runs = [], []
    for path in files:
        with open(path, "rb") as f:
            head = f.read(24)
        cap = pcap.read(path)
        snap = struct.unpack("<I", head[16:20])[0] if len(head) == 24 else 0
        if (cap.notes or head[:4] != struct.pack("<I", 0xA1B2C3D4) or not len(cap)
                or int(cap.len.max()) > snap):
            runs.append((path, len(cap)))
        else:
            merged += [(cap.frame(i), int(cap.ts_ns[i])) for i in range(len(cap))]
    out = os.path.join(str(tmp_dir), "corpus-merged.pcap")
    w = pcap.Writer(out)
    for frame, ts in merged:
        w.write(frame, ts)
    w.close()
    return [(out, len(merged))] + runs
