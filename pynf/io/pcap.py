"""Classic pcap (libpcap format) reader and writer, Ethernet link type only.

Reads both byte orders and both microsecond and nanosecond magics. A frame
captured short (caplen < len) is replayed as the caplen bytes that exist;
a record of any size that the file holds is read (a frame too big for a
buffer is then dropped and counted as `oversize`). A last record cut short
ends the capture, and `Capture.notes` says so (the CLI prints it).
Anything that is not a readable Ethernet pcap is a UsageError naming the
file: the CLI turns it into exit status 2.
"""
import struct

import numpy as np

from pynf.compiler.jit import hot
from pynf.errors import UsageError

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
CHUNK_BYTES = 4 << 20     # Writer.write_templates' buffer


class Capture:
    """The frames of a pcap file, concatenated: data[off[i]:off[i]+len[i]]."""

    def __init__(self, data, off, length, ts_ns, notes=()):
        self.data, self.off, self.len, self.ts_ns = data, off, length, ts_ns
        self.notes = list(notes)        # what was not replayed, and why

    def __len__(self):
        return len(self.off)

    def frame(self, i):
        return bytes(self.data[self.off[i]:self.off[i] + self.len[i]])


def read(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) < 24:
        raise UsageError(f"{path}: not a pcap file (too short for a pcap header)")
    for endian in "<>":
        magic = struct.unpack(endian + "I", raw[:4])[0]
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        hint = " (pcapng is not supported; convert with `editcap -F pcap`)" \
            if raw[:4] == b"\x0a\x0d\x0d\x0a" else ""
        raise UsageError(f"{path}: not a pcap file (bad magic {raw[:4].hex()}){hint}")
    scale = 1000 if magic == MAGIC_US else 1
    _, _, _, _, _, linktype = struct.unpack(endian + "HHiIII", raw[4:24])
    if linktype & 0xFFFF != LINKTYPE_ETHERNET:
        raise UsageError(f"{path}: link type {linktype & 0xFFFF} is not Ethernet (1)")
    rec = struct.Struct(endian + "IIII")
    offs, lens, ts, notes = [], [], [], []
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, caplen, _wirelen = rec.unpack_from(raw, pos)
        pos += 16
        if pos + caplen > len(raw):
            notes.append(f"{path}: record {len(offs) + 1} (byte {pos - 16}) is cut short: caplen "
                         f"{caplen}, {len(raw) - pos} bytes left; replaying the {len(offs)} before it")
            break
        offs.append(pos)
        lens.append(caplen)
        ts.append(sec * 1_000_000_000 + frac * scale)
        pos += caplen
    data = np.frombuffer(raw, dtype=np.uint8)
    if not notes and pos < len(raw):
        notes.append(f"{path}: {len(raw) - pos} bytes after record {len(offs)} are not a whole "
                     "record header; ignored")
    return Capture(data, np.array(offs, dtype=np.int64), np.array(lens, dtype=np.int32),
                   np.array(ts, dtype=np.int64), notes)


class Writer:
    """Writes frames as a microsecond pcap, Ethernet link type."""

    def __init__(self, path):
        try:
            self.f = open(path, "wb")
        except OSError as e:
            raise UsageError(f"{path}: cannot write: {e.strerror}") from None
        self.path = path
        self.count = 0
        self.f.write(struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, frame, ts_ns):
        sec, ns = divmod(int(ts_ns), 1_000_000_000)
        self.f.write(struct.pack("<IIII", sec, ns // 1000, len(frame), len(frame)))
        self.f.write(frame)
        self.count += 1

    def write_many(self, mem, offs, lens, ts_ns):
        """Frames mem[offs[i]:offs[i]+lens[i]], timestamps ts_ns[i]."""
        parts = []
        for o, ln, t in zip(offs.tolist(), lens.tolist(), ts_ns.tolist()):
            sec, ns = divmod(t, 1_000_000_000)
            parts.append(struct.pack("<IIII", sec, ns // 1000, ln, ln))
            parts.append(mem[o:o + ln].tobytes())
        self.f.write(b"".join(parts))
        self.count += len(offs)

    def write_templates(self, arena, t_off, t_len, t_copy, seq, chunk_bytes=CHUNK_BYTES):
        """Frames seq[i] of a template arena (pynf.io.feed: t_copy[t] bytes of
        template t, zeros up to t_len[t]), at time 0, made a chunk at a time
        in one reused buffer (a million frames would otherwise fault in a
        fresh 80-MB buffer: 0.2-0.7 s on a VM)."""
        seq = np.asarray(seq, dtype=np.int64)
        if not len(seq):
            return
        per = 16 + min(int(np.asarray(t_len).max()), SNAPLEN)
        step = max(1, chunk_bytes // per)
        buf = np.empty(per * min(step, len(seq)), dtype=np.uint8)
        for a in range(0, len(seq), step):
            n = _fill_records(arena, t_off, t_len, t_copy, seq[a:a + step], SNAPLEN, buf)
            self.f.write(buf[:n].data)
        self.count += len(seq)

    def close(self):
        if self.f:
            self.f.close()
            self.f = None


@hot
def _fill_records(arena, t_off, t_len, t_copy, seq, snap, out):
    """pcap records (little-endian, time 0) of seq's templates into out,
    which has room for them; every byte is written (out is reused).
    Returns the bytes written."""
    o = 0
    for j in range(len(seq)):
        t = seq[j]
        ln = min(np.int64(t_len[t]), snap)
        c = min(np.int64(t_copy[t]), ln)
        for k in range(8):
            out[o + k] = 0                                 # time 0
        for k in range(4):
            out[o + 8 + k] = (ln >> (8 * k)) & 0xFF        # captured length
            out[o + 12 + k] = (ln >> (8 * k)) & 0xFF       # original length
        src = np.int64(t_off[t])
        for k in range(c):
            out[o + 16 + k] = arena[src + k]
        for k in range(c, ln):
            out[o + 16 + k] = 0
        o += 16 + ln
    return o
