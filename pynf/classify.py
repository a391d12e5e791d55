"""5-tuple packet classification for ClassBench rule sets (the ACL).

Rules (docs/design.md, the format DPDK's l3fwd reads):

    @<src>/<len> <dst>/<len> <sport_lo> : <sport_hi> <dport_lo> : <dport_hi> <proto>/<mask> [allow|deny]

The first matching rule in file order wins; no match allows. A raw
ClassBench flags field (0x0000/0x0200) after the protocol is accepted and
ignored.

Algorithm: bit-vector intersection (Lakshman & Stiliadis, SIGCOMM '98) over
equivalence classes. For each field the value space is cut into elementary
intervals at rule boundaries; intervals covered by the same set of rules
share a class, whose bitmap has bit r set when rule r matches. A packet's
matching rules are the AND of its five class bitmaps, and the first
matching rule is the lowest set bit. Class lookup is one load for ports and
protocol (direct tables) and one to three loads for addresses (a 16-8-8
multibit trie over the intervals). All tables are built once, in cold
code; the fast path only reads them.
"""
import re
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.config import hot
from pynf.errors import ConfigError, format_ipv4, parse_ipv4, read_lines
from pynf.intrinsics import cttz64


@dataclass(frozen=True)
class Rule:
    src: int
    src_len: int
    dst: int
    dst_len: int
    sport_lo: int
    sport_hi: int
    dport_lo: int
    dport_hi: int
    proto: int
    proto_mask: int
    allow: bool
    line: int = 0

    def prefix_range(self, which):
        v, n = (self.src, self.src_len) if which == "src" else (self.dst, self.dst_len)
        mask = ((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF) if n else 0
        lo = v & mask
        return lo, lo | (~mask & 0xFFFFFFFF)

    def matches(self, src, dst, sport, dport, proto):
        """Plain-Python match, the reference the compiled classifier is tested against."""
        slo, shi = self.prefix_range("src")
        dlo, dhi = self.prefix_range("dst")
        return (slo <= src <= shi and dlo <= dst <= dhi
                and self.sport_lo <= sport <= self.sport_hi
                and self.dport_lo <= dport <= self.dport_hi
                and (proto & self.proto_mask) == (self.proto & self.proto_mask))


    def text(self):
        """The rule in the file's grammar (parse_rule(r.text()) == r, but for line)."""
        return (f"@{format_ipv4(self.src)}/{self.src_len} {format_ipv4(self.dst)}/{self.dst_len} "
                f"{self.sport_lo} : {self.sport_hi} {self.dport_lo} : {self.dport_hi} "
                f"0x{self.proto:02x}/0x{self.proto_mask:02x} {'allow' if self.allow else 'deny'}")


_NUM = re.compile(r"^(0x[0-9a-fA-F]+|\d+)$")


def _num(tok, lo, hi, what, path, no):
    if not _NUM.match(tok):
        raise ConfigError(path, no, f"bad {what} {tok!r}")
    v = int(tok, 0)
    if not lo <= v <= hi:
        raise ConfigError(path, no, f"{what} {tok} out of range {lo}..{hi}")
    return v


def _prefix(tok, what, path, no):
    ip, sep, ln = tok.partition("/")
    v = parse_ipv4(ip)
    if v is None or not sep:
        raise ConfigError(path, no, f"bad {what} prefix {tok!r} (want a.b.c.d/len)")
    return v, _num(ln, 0, 32, f"{what} prefix length", path, no)


def parse_rule(text, path="<rules>", no=0):
    s = text.strip()
    if not s.startswith("@"):
        raise ConfigError(path, no, "rule must start with '@'")
    toks = s[1:].replace(":", " : ").split()
    if len(toks) < 9 or toks[3] != ":" or toks[6] != ":":
        raise ConfigError(path, no, "want '@src/len dst/len sport_lo : sport_hi "
                                    "dport_lo : dport_hi proto/mask [allow|deny]'")
    src, src_len = _prefix(toks[0], "source", path, no)
    dst, dst_len = _prefix(toks[1], "destination", path, no)
    splo = _num(toks[2], 0, 65535, "source port", path, no)
    sphi = _num(toks[4], 0, 65535, "source port", path, no)
    dplo = _num(toks[5], 0, 65535, "destination port", path, no)
    dphi = _num(toks[7], 0, 65535, "destination port", path, no)
    if splo > sphi or dplo > dphi:
        raise ConfigError(path, no, "port range with low above high")
    pv, sep, pm = toks[8].partition("/")
    if not sep:
        raise ConfigError(path, no, f"bad protocol {toks[8]!r} (want value/mask)")
    proto = _num(pv, 0, 255, "protocol", path, no)
    pmask = _num(pm, 0, 255, "protocol mask", path, no)
    rest = toks[9:]
    if rest and re.match(r"^0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$", rest[0]):
        rest = rest[1:]          # ClassBench flags field: not matched on
    allow = False
    if rest:
        if len(rest) > 1 or rest[0].lower() not in ("allow", "deny"):
            raise ConfigError(path, no, f"unexpected {' '.join(rest)!r} (want allow or deny)")
        allow = rest[0].lower() == "allow"
    return Rule(src, src_len, dst, dst_len, splo, sphi, dplo, dphi, proto, pmask, allow, no)


def parse_rules(path):
    return [parse_rule(text, path, no) for no, text in read_lines(path)]


# ---- building the classifier (cold) ----

# All tables in three arrays (so that a kernel keeps their pointers in
# registers): class tables in `tab`, bitmaps in `bm`, offsets in `hdr`.
Classifier = namedtuple("Classifier", ["tab", "bm", "hdr", "allow"])
(H_SRC1, H_SRC2, H_SRC3, H_DST1, H_DST2, H_DST3, H_SPORT, H_DPORT, H_PROTO,
 H_SRC_BM, H_DST_BM, H_SPORT_BM, H_DPORT_BM, H_PROTO_BM, H_WORDS, H_RULES) = range(16)


def _classes(ranges, nrules, words, top):
    """Elementary intervals over [0, top] and their class ids and bitmaps."""
    pts = {0}
    for lo, hi in ranges:
        pts.add(lo)
        if hi + 1 <= top:
            pts.add(hi + 1)
    points = np.array(sorted(pts), dtype=np.int64)
    bm = np.zeros((len(points), max(words, 1)), dtype=np.uint64)
    for r, (lo, hi) in enumerate(ranges):
        a = np.searchsorted(points, lo)
        b = np.searchsorted(points, hi, side="right")
        bm[a:b, r >> 6] |= np.uint64(1 << (r & 63))
    uniq, inv = np.unique(bm, axis=0, return_inverse=True)
    return points, inv.reshape(-1).astype(np.int32), uniq


def _interval(points, x):
    return np.searchsorted(points, x, side="right") - 1


def _dir_16_8_8(points, cls):
    """Multibit trie (strides 16, 8, 8) mapping an address to its class."""
    starts = np.arange(1 << 16, dtype=np.int64) << 16
    lo = _interval(points, starts)
    hi = _interval(points, starts + 0xFFFF)
    l1 = cls[lo].astype(np.int32)
    l2, l3 = [], []
    for p in np.nonzero(lo != hi)[0]:
        l1[p] = -1 - len(l2)
        s2 = (int(p) << 16) + (np.arange(256, dtype=np.int64) << 8)
        lo2, hi2 = _interval(points, s2), _interval(points, s2 + 0xFF)
        t2 = cls[lo2].astype(np.int32)
        for q in np.nonzero(lo2 != hi2)[0]:
            t2[q] = -1 - len(l3)
            s3 = int(s2[q]) + np.arange(256, dtype=np.int64)
            l3.append(cls[_interval(points, s3)].astype(np.int32))
        l2.append(t2)
    cat = lambda ts: np.concatenate(ts) if ts else np.zeros(256, dtype=np.int32)
    return l1, cat(l2), cat(l3)


def build(rules):
    """Compile a rule list into a Classifier (tuple of arrays)."""
    n = len(rules)
    words = max(1, (n + 63) // 64)
    tabs, bms = [], []
    for f in ("src", "dst"):
        pts, cls, bm = _classes([r.prefix_range(f) for r in rules], n, words, 0xFFFFFFFF)
        tabs += list(_dir_16_8_8(pts, cls))
        bms.append(bm)
    for f in ("sport", "dport"):
        pts, cls, bm = _classes([(getattr(r, f + "_lo"), getattr(r, f + "_hi")) for r in rules],
                                n, words, 0xFFFF)
        tabs.append(cls[_interval(pts, np.arange(1 << 16))].astype(np.int32))
        bms.append(bm)
    pm = np.zeros((256, words), dtype=np.uint64)
    vals = np.arange(256)
    for r, rule in enumerate(rules):
        hit = (vals & rule.proto_mask) == (rule.proto & rule.proto_mask)
        pm[hit, r >> 6] |= np.uint64(1 << (r & 63))
    uniq, inv = np.unique(pm, axis=0, return_inverse=True)
    tabs.append(inv.reshape(-1).astype(np.int32))
    bms.append(uniq)
    hdr = np.zeros(16, dtype=np.int64)
    hdr[:9] = np.cumsum([0] + [len(t) for t in tabs[:-1]])
    bm_sizes = [b.size for b in bms]
    hdr[H_SRC_BM:H_PROTO_BM + 1] = np.cumsum([0] + bm_sizes[:-1])
    hdr[H_WORDS] = words
    hdr[H_RULES] = n
    allow = np.ones(n + 1, dtype=np.int8)
    for r, rule in enumerate(rules):
        allow[r] = 1 if rule.allow else 0
    return Classifier(np.concatenate(tabs).astype(np.int32),
                      np.concatenate([b.reshape(-1) for b in bms]).view(np.int64).copy(),
                      hdr, allow)


# ---- the fast path ----

@hot(inline="always")
def _trie(tab, l1, l2, l3, x):
    e = tab[np.uint64(l1 + (x >> 16))]
    if e >= 0:
        return e
    e = tab[np.uint64(l2 + (-1 - e) * 256 + ((x >> 8) & 0xFF))]
    if e >= 0:
        return e
    return tab[np.uint64(l3 + (-1 - e) * 256 + (x & 0xFF))]


@hot(inline="always")
def first_match(c, src, dst, sport, dport, proto):
    """Index of the first rule matching the 5-tuple, or the rule count."""
    tab, bm, h = c.tab, c.bm, c.hdr
    w = h[H_WORDS]
    cs = _trie(tab, h[H_SRC1], h[H_SRC2], h[H_SRC3], int(src)) * w + h[H_SRC_BM]
    cd = _trie(tab, h[H_DST1], h[H_DST2], h[H_DST3], int(dst)) * w + h[H_DST_BM]
    c1 = tab[np.uint64(h[H_SPORT] + int(sport))] * w + h[H_SPORT_BM]
    c2 = tab[np.uint64(h[H_DPORT] + int(dport))] * w + h[H_DPORT_BM]
    cp = tab[np.uint64(h[H_PROTO] + int(proto))] * w + h[H_PROTO_BM]
    # NB: indices are cast to unsigned: a signed index costs a
    # negative-index fix-up per load.
    if w == 1:          # up to 64 rules: one word, no loop
        x = bm[np.uint64(cs)] & bm[np.uint64(cd)] & bm[np.uint64(c1)] \
            & bm[np.uint64(c2)] & bm[np.uint64(cp)]
        return cttz64(x) if x != 0 else h[H_RULES]
    for k in range(w):
        x = bm[np.uint64(cs + k)] & bm[np.uint64(cd + k)] & bm[np.uint64(c1 + k)] \
            & bm[np.uint64(c2 + k)] & bm[np.uint64(cp + k)]
        if x != 0:
            return k * 64 + cttz64(x)
    return h[H_RULES]
