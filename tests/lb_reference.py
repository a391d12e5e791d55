"""Plain-Python reference of lb's backend choice (Maglev, NSDI '16, section
3.4), written from the paper and lb's docstring, independently of
pynf.tables.maglev's code, to compare the NF against.

`Lb` is a drop-in for tests/reference.py's hash-mod-N `Lb` (same
constructor and call) for paper mode without a full table.
"""
import hashlib

from pynf.tables.hashing import hash5

M_DEFAULT = 65537


def offset_skip(ip, port, m):
    """The backend's permutation: BLAKE2b (16 bytes, person 'pynf-maglev')
    of its name 'a.b.c.d:port'; offset = first 8 bytes (little-endian) mod
    M, skip = last 8 bytes mod (M - 1) + 1."""
    nm = f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}:{port}"
    d = hashlib.blake2b(nm.encode(), digest_size=16, person=b"pynf-maglev").digest()
    return int.from_bytes(d[:8], "little") % m, int.from_bytes(d[8:], "little") % (m - 1) + 1


def maglev_table(backends, m=M_DEFAULT):
    """Lookup table: list of m backends (ip, port), filled round-robin in
    sorted backend order (Pseudocode 1 of the paper)."""
    order = sorted(backends)
    if not order:
        return []
    perm = [offset_skip(ip, port, m) for ip, port in order]
    nxt = [0] * len(order)
    entry = [None] * m
    filled = 0
    while filled < m:
        for i, (off, skip) in enumerate(perm):
            c = (off + nxt[i] * skip) % m
            while entry[c] is not None:
                nxt[i] += 1
                c = (off + nxt[i] * skip) % m
            entry[c] = order[i]
            nxt[i] += 1
            filled += 1
            if filled == m:
                break
    return entry


def choose(table, src, dst, sport, dport, proto):
    """The backend of a new flow: table[hash5 % M]."""
    return table[int(hash5(src, dst, sport, dport, proto)) % len(table)]


class Lb:
    """Paper mode: every TCP/UDP non-fragment gets its flow's backend."""

    def __init__(self, backends, capacity=1 << 20, on_full="evict", non_l4="pass", m=M_DEFAULT):
        self.table = maglev_table(list(backends), m)
        self.non_l4 = non_l4
        self.flows = {}

    def __call__(self, h):
        """(new dst, new dport) or a drop reason or None (pass unchanged)."""
        if h["proto"] not in (6, 17) or h["fragment"]:
            return "lb_non_l4" if self.non_l4 == "drop" else None
        key = (h["src"], h["dst"], h["sport"], h["dport"], h["proto"])
        if key not in self.flows:
            self.flows[key] = choose(self.table, *key)
        return self.flows[key]
