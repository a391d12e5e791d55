"""5-tuple packet classification for ClassBench rule sets (the ACL).

Rules (docs/design.md, the format DPDK's l3fwd reads):

    @<src>/<len> <dst>/<len> <sport_lo> : <sport_hi> <dport_lo> : <dport_hi> <proto>/<mask> [allow|deny]

The first matching rule in file order wins; no match allows. A raw
ClassBench flags field (0x0000/0x0200) after the protocol is accepted and
ignored.

Two algorithms, chosen by the rule count (both built once, in cold code;
the fast path only reads them):

- Up to BITVECTOR_MAX rules, bit-vector intersection (Lakshman &
  Stiliadis, SIGCOMM '98) over equivalence classes. For each field the
  value space is cut into elementary intervals at rule boundaries;
  intervals covered by the same set of rules share a class, whose bitmap
  has bit r set when rule r matches. A packet's matching rules are the AND
  of its five class bitmaps, and the first matching rule is the lowest set
  bit. Class lookup is one load for ports and protocol (direct tables) and
  one to three loads for addresses (a 16-8-8 multibit trie over the
  intervals). Memory grows with rules x intervals: quadratic.

- Above it, the same intersection over chunks of 64 rules instead of
  rules (an aggregated bit vector, after Baboescu & Varghese, SIGCOMM '01),
  then an exact check of the candidate chunks. Rules are first split by
  how wide their addresses are (both wide, source wide, destination wide,
  neither: the partitioning of EffiCuts and of rte_acl's tries), each
  group in file order and padded to whole chunks, so that a chunk's
  address bits stay selective. A chunk is a candidate when each field has
  a rule of the chunk that matches it; its 64 rules are then compared
  field by field in one vectorised pass (structure of arrays), and the
  lowest match is the chunk's first. A candidate whose first rule comes
  after the best match so far is skipped, and with it the rest of its
  group (a group's chunks run in file order). Memory is intervals x
  rules / 64 for the summaries and 30 bytes per rule for the check; an
  address's interval is found through a table of its /16 and a binary
  search among the boundaries inside that /16.
"""
import re
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from numba import njit

from pynf.compiler.intrinsics import cttz64, in_ranges64, masked_eq64
from pynf.compiler.jit import hot
from pynf.errors import ConfigError, format_ipv4, parse_ipv4, read_bytes, read_lines


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


FIELDS = ("src", "src_len", "dst", "dst_len", "sport_lo", "sport_hi", "dport_lo", "dport_hi",
          "proto", "proto_mask", "allow", "line")


def prefix_ranges(v, n):
    """First and last address of prefixes v/n (arrays)."""
    n = np.asarray(n, dtype=np.int64)
    mask = ~((np.int64(1) << (32 - n)) - 1) & 0xFFFFFFFF
    lo = np.asarray(v, dtype=np.int64) & mask
    return lo, lo | (~mask & 0xFFFFFFFF)


class RuleSet:
    """Rules in file order, one int64 column per Rule field.

    What the parser returns and the classifier builds from: 100,000 Rule
    objects take seconds to make, columns do not. rs[k] is the k-th Rule.
    """

    def __init__(self, **cols):
        for f in FIELDS:
            setattr(self, f, np.ascontiguousarray(cols[f], dtype=np.int64))

    @classmethod
    def of(cls, rules):
        rules = list(rules)
        return cls(**{f: np.array([int(getattr(r, f)) for r in rules], dtype=np.int64) for f in FIELDS})

    def __len__(self):
        return len(self.src)

    def __getitem__(self, k):
        r = {f: int(getattr(self, f)[k]) for f in FIELDS}
        r["allow"] = bool(r["allow"])
        return Rule(**r)

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __eq__(self, other):
        return isinstance(other, RuleSet) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in FIELDS)

    __hash__ = None

    def ranges(self, which):
        return prefix_ranges(*((self.src, self.src_len) if which == "src" else (self.dst, self.dst_len)))


_NUM = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")


def _num(tok, lo, hi, what, path, no):
    if not _NUM.match(tok):
        raise ConfigError(path, no, f"bad {what} {tok!r}")
    v = int(tok, 16) if tok.startswith("0x") else int(tok)
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


# ---- reading a file of rules in bulk ----
# 100,000 rules through parse_rule take seconds. parse_rules reads the
# common spelling of a rule (the one ClassBench and bench.acl_rules write)
# in one compiled pass over the file's bytes; a line it does not take, for
# any reason, goes through parse_rule, which reads the rarer spellings and
# words every error. So both paths accept the same lines.

_SP, _TAB, _NL, _HASH = 32, 9, 10, 35


@njit(cache=True)
def _digits(buf, i, end, most):
    """Decimal number of 1..most ASCII digits at i: (value, next), or (-1, i)."""
    v = 0
    j = i
    while j < end and j - i < most and 48 <= buf[j] <= 57:
        v = v * 10 + (np.int64(buf[j]) - 48)
        j += 1
    if j == i or (j < end and 48 <= buf[j] <= 57):
        return -1, i
    return v, j


@njit(cache=True)
def _hex(buf, i, end, most):
    """'0x' and 1..most hex digits at i: (value, next), or (-1, i)."""
    if i + 2 > end or buf[i] != 48 or buf[i + 1] != 120:
        return -1, i
    v = 0
    j = i + 2
    while j < end and j - i - 2 < most:
        c = np.int64(buf[j])
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= (c | 32) <= 102:
            d = (c | 32) - 87
        else:
            break
        v = v * 16 + d
        j += 1
    if j == i + 2:
        return -1, i
    return v, j


@njit(cache=True)
def _blanks(buf, i, end):
    j = i
    while j < end and (buf[j] == _SP or buf[j] == _TAB):
        j += 1
    return j


@njit(cache=True)
def _prefix_at(buf, i, end):
    """a.b.c.d/len at i: (address, len, next), or len -1."""
    v = 0
    for k in range(4):
        o, i = _digits(buf, i, end, 3)
        if o < 0 or o > 255:
            return 0, -1, i
        v = v * 256 + o
        sep = 46 if k < 3 else 47            # '.' then '/'
        if i >= end or buf[i] != sep:
            return 0, -1, i
        i += 1
    n, i = _digits(buf, i, end, 2)
    if n < 0 or n > 32:
        return 0, -1, i
    return v, n, i


@njit(cache=True)
def _range_at(buf, i, end):
    """lo : hi at i: (lo, hi, next), or lo -1."""
    lo, i = _digits(buf, i, end, 5)
    if lo < 0:
        return -1, 0, i
    i = _blanks(buf, i, end)
    if i >= end or buf[i] != 58:             # ':'
        return -1, 0, i
    hi, i = _digits(buf, _blanks(buf, i + 1, end), end, 5)
    if hi < 0 or hi > 65535 or lo > hi:
        return -1, 0, i
    return lo, hi, i


@njit(cache=True)
def _rule_at(buf, i, end, out, k):
    """Parse one rule in the common spelling into out[:, k]; False if not."""
    if buf[i] != 64:                         # '@'
        return False
    i += 1
    for f in range(2):
        v, n, i = _prefix_at(buf, i, end)
        j = _blanks(buf, i, end)
        if n < 0 or j == i:
            return False
        out[2 * f, k] = v
        out[2 * f + 1, k] = n
        i = j
    for f in range(2):
        lo, hi, i = _range_at(buf, i, end)
        j = _blanks(buf, i, end)
        if lo < 0 or j == i:
            return False
        out[4 + 2 * f, k] = lo
        out[5 + 2 * f, k] = hi
        i = j
    pv, i = _hex(buf, i, end, 2)
    if pv < 0 or i >= end or buf[i] != 47:
        return False
    pm, i = _hex(buf, i + 1, end, 2)
    if pm < 0:
        return False
    out[8, k] = pv
    out[9, k] = pm
    out[10, k] = 0
    j = _blanks(buf, i, end)
    if j < end and j > i and buf[j] == 48:   # a ClassBench flags field
        _, i = _hex(buf, j, end, 8)
        if i == j or i >= end or buf[i] != 47:
            return False
        j0 = i + 1
        _, i = _hex(buf, j0, end, 8)
        if i == j0:
            return False
        j = _blanks(buf, i, end)
    if j < end and j > i:
        w = end - j
        c0 = buf[j] | 32
        if w == 5 and c0 == 97 and (buf[j + 1] | 32) == 108 and (buf[j + 2] | 32) == 108 \
                and (buf[j + 3] | 32) == 111 and (buf[j + 4] | 32) == 119:       # allow
            out[10, k] = 1
            i = end
        elif w == 4 and c0 == 100 and (buf[j + 1] | 32) == 101 and (buf[j + 2] | 32) == 110 \
                and (buf[j + 3] | 32) == 121:                                     # deny
            i = end
    return i == end


@njit(cache=True)
def _scan(buf, out, line, span, ok):
    """The meaningful lines of buf (comments and blanks dropped): for the
    k-th, line[k] its number, span[:, k] its bounds and ok[k] whether
    _rule_at read it into out[:, k]. Returns their count."""
    n = len(buf)
    pos = 0
    no = 0
    k = 0
    while pos < n:
        end = pos
        while end < n and buf[end] != _NL:
            end += 1
        no += 1
        e = pos
        while e < end and buf[e] != _HASH:
            e += 1
        a = _blanks(buf, pos, e)
        b = e
        while b > a and (buf[b - 1] == _SP or buf[b - 1] == _TAB):
            b -= 1
        if a < b:
            line[k] = no
            span[0, k] = a
            span[1, k] = b
            ok[k] = _rule_at(buf, a, b, out, k)
            k += 1
        pos = end + 1
    return k


# bytes after which Python's splitlines() and strip() would read lines
# differently from _scan: such a file goes line by line through parse_rule
_ODD = re.compile(rb"[^\x20-\x7e\t\n]")


def parse_rules(path):
    """The rules of a file as a RuleSet; a bad line is a ConfigError naming it."""
    raw = read_bytes(path)
    if _ODD.search(raw):
        return RuleSet.of([parse_rule(text, path, no) for no, text in read_lines(path, raw)])
    buf = np.frombuffer(raw, dtype=np.uint8)
    most = raw.count(b"\n") + 1
    out = np.zeros((11, most), dtype=np.int64)
    line = np.zeros(most, dtype=np.int64)
    span = np.zeros((2, most), dtype=np.int64)
    ok = np.zeros(most, dtype=np.bool_)
    n = _scan(buf, out, line, span, ok)
    for k in np.nonzero(~ok[:n])[0]:
        r = parse_rule(raw[span[0, k]:span[1, k]].decode(), path, int(line[k]))   # raises if bad
        out[:, k] = [int(getattr(r, f)) for f in FIELDS[:11]]
    cols = dict(zip(FIELDS[:11], out[:, :n]))
    return RuleSet(line=line[:n], **cols)


# ---- building the classifier (cold) ----

BITVECTOR_MAX = 4096     # rules; above it the chunked classifier (see the module's docstring)
CHUNK = 64               # rules per chunk: one bit of a summary word, one mask of the check
KIND_BITVECTOR, KIND_CHUNKED = range(2)

# All tables in a few flat arrays (so that a kernel keeps their pointers in
# registers): class or interval tables in `tab`, bitmaps in `bm`, offsets
# in `hdr`, the action of rule r in allow[r]. The chunked kind adds the
# interval boundaries of the addresses (`pts`), the chunks' rules as
# structure of arrays (`rip`: src value, src mask, dst value, dst mask; `rpt`: sport
# lo, hi, dport lo, hi; `rpr`: proto & mask, mask; 64 of each per chunk)
# and each chunk slot's rule number in file order (`order`).
Classifier = namedtuple("Classifier", ["tab", "bm", "hdr", "allow", "pts", "rip", "rpt", "rpr", "order"])
(H_SRC1, H_SRC2, H_SRC3, H_DST1, H_DST2, H_DST3, H_SPORT, H_DPORT, H_PROTO,
 H_SRC_BM, H_DST_BM, H_SPORT_BM, H_DPORT_BM, H_PROTO_BM, H_WORDS, H_RULES,
 H_KIND, H_SRC_PTS, H_DST_PTS, H_CHUNKS, H_FIRST, H_WORD_FIRST, H_GROUPS) = range(23)
GROUPS = 4              # chunked kind: rules grouped by how wide their addresses are
# In the chunked kind, H_SRC1/H_SRC2 (H_DST1/H_DST2) are the offsets in
# `tab` of the first and last interval of each /16, H_*_PTS the offsets in
# `pts`, H_WORDS the summary words per row, and bits stand for chunks;
# `order` holds, after the slots, each chunk's first rule (at H_FIRST) and
# each summary word's first rule (at H_WORD_FIRST), so that a lookup skips
# what cannot beat the best match so far without touching it. hdr[H_GROUPS
# + g] is group g's first chunk (hdr[H_GROUPS + GROUPS]: the chunk count).


def _classes(lo, hi, nrules, words, top):
    """Elementary intervals over [0, top] and their class ids and bitmaps."""
    points = _points(lo, hi, top)
    bm = np.zeros((len(points), max(words, 1)), dtype=np.uint64)
    a = np.searchsorted(points, lo)
    b = np.searchsorted(points, hi, side="right")
    for r in range(nrules):
        bm[a[r]:b[r], r >> 6] |= np.uint64(1 << (r & 63))
    uniq, inv = np.unique(bm, axis=0, return_inverse=True)
    return points, inv.reshape(-1).astype(np.int32), uniq


def _points(lo, hi, top):
    """Sorted starts of the elementary intervals that [lo, hi] ranges cut [0, top] into."""
    return np.unique(np.concatenate(([0], lo, hi[hi < top] + 1))).astype(np.int64)


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


def _proto_hits(proto, mask):
    """hits[v, r]: protocol v matches protocol field r (proto[r]/mask[r])."""
    v = np.arange(256, dtype=np.int64)[:, None]
    return (v & mask) == (proto & mask)


def _bitvector(rs):
    n = len(rs)
    words = max(1, (n + 63) // 64)
    tabs, bms = [], []
    for f in ("src", "dst"):
        lo, hi = rs.ranges(f)
        pts, cls, bm = _classes(lo, hi, n, words, 0xFFFFFFFF)
        tabs += list(_dir_16_8_8(pts, cls))
        bms.append(bm)
    for f in ("sport", "dport"):
        pts, cls, bm = _classes(getattr(rs, f + "_lo"), getattr(rs, f + "_hi"), n, words, 0xFFFF)
        tabs.append(cls[_interval(pts, np.arange(1 << 16))].astype(np.int32))
        bms.append(bm)
    pm = np.zeros((256, words), dtype=np.uint64)
    hits = _proto_hits(rs.proto, rs.proto_mask)
    for r in range(n):
        pm[hits[:, r], r >> 6] |= np.uint64(1 << (r & 63))
    uniq, inv = np.unique(pm, axis=0, return_inverse=True)
    tabs.append(inv.reshape(-1).astype(np.int32))
    bms.append(uniq)
    hdr = np.zeros(H_GROUPS + GROUPS + 1, dtype=np.int64)
    hdr[:9] = np.cumsum([0] + [len(t) for t in tabs[:-1]])
    bm_sizes = [b.size for b in bms]
    hdr[H_SRC_BM:H_PROTO_BM + 1] = np.cumsum([0] + bm_sizes[:-1])
    hdr[H_WORDS] = words
    hdr[H_RULES] = n
    hdr[H_KIND] = KIND_BITVECTOR
    none = np.zeros(0, dtype=np.uint32)
    return Classifier(np.concatenate(tabs).astype(np.int32),
                      np.concatenate([b.reshape(-1) for b in bms]).view(np.int64).copy(),
                      hdr, _allow(rs), none, none, none.astype(np.uint16), none.astype(np.uint8),
                      none.astype(np.int32))


def _allow(rs):
    allow = np.ones(len(rs) + 1, dtype=np.int8)
    allow[:-1] = rs.allow != 0
    return allow


@hot
def _cover(a, b, out, lo, hi):
    """Summary bitmaps out[rows, words]: bit c of row i set when a rule of
    chunk c covers interval i (rule k of chunk c covers a[c*64+k] <= i <
    b[c*64+k]). lo and hi: room for 64."""
    nch = len(a) // 64
    for c in range(nch):
        # the chunk's ranges, sorted by start, merged, then marked
        n = 0
        for k in range(c * 64, c * 64 + 64):
            if a[k] < b[k]:
                j = n
                while j > 0 and lo[j - 1] > a[k]:
                    lo[j] = lo[j - 1]
                    hi[j] = hi[j - 1]
                    j -= 1
                lo[j] = a[k]
                hi[j] = b[k]
                n += 1
        w = c >> 6
        bit = np.uint64(1) << np.uint64(c & 63)
        done = 0
        for j in range(n):
            for i in range(max(lo[j], done), hi[j]):
                out[i, w] |= bit
            done = max(done, hi[j])


def _chunked(rs):
    n = len(rs)
    slo, shi = rs.ranges("src")
    dlo, dhi = rs.ranges("dst")
    # groups, widest first: both addresses wide, source wide, destination wide, neither
    group = np.where(rs.src_len < 8, 0, 2) + np.where(rs.dst_len < 8, 0, 1)
    counts = np.bincount(group, minlength=GROUPS)
    padded = (counts + CHUNK - 1) // CHUNK * CHUNK
    start = np.concatenate(([0], np.cumsum(padded)[:-1]))
    npad = int(padded.sum())
    nch = npad // CHUNK
    by_group = np.argsort(group, kind="stable")
    slot = start[group[by_group]] + (np.arange(n) - np.concatenate(([0], np.cumsum(counts)[:-1]))[group[by_group]])
    order = np.full(npad, n, dtype=np.int32)
    order[slot] = by_group

    def place(col, pad):
        out = np.full(npad, pad, dtype=np.int64)
        out[slot] = col[by_group]
        return out.reshape(nch, CHUNK)

    # never-matching padding: low above high, a value outside its mask
    rip = np.stack([place(slo, 1), place(slo ^ shi ^ 0xFFFFFFFF, 0),
                    place(dlo, 1), place(dlo ^ dhi ^ 0xFFFFFFFF, 0)], axis=1)
    rpt = np.stack([place(rs.sport_lo, 1), place(rs.sport_hi, 0),
                    place(rs.dport_lo, 1), place(rs.dport_hi, 0)], axis=1)
    rpr = np.stack([place(rs.proto & rs.proto_mask, 0), place(rs.proto_mask, 0)], axis=1)
    words = (nch + 63) // 64

    def summary(lo, hi, top):
        pts = _points(lo, hi, top)
        a = np.zeros(npad, dtype=np.int64)
        b = np.zeros(npad, dtype=np.int64)
        a[slot] = np.searchsorted(pts, lo[by_group])
        b[slot] = np.searchsorted(pts, hi[by_group], side="right")
        out = np.zeros((len(pts), words), dtype=np.uint64)
        _cover(a, b, out, np.empty(64, dtype=np.int64), np.empty(64, dtype=np.int64))
        return pts, out

    tabs, bms, ptss = [], [], []
    for lo, hi in ((slo, shi), (dlo, dhi)):
        pts, bm = summary(lo, hi, 0xFFFFFFFF)
        starts = np.arange(1 << 16, dtype=np.int64) << 16
        tabs += [_interval(pts, starts), _interval(pts, starts + 0xFFFF)]
        ptss.append(pts)
        bms.append(bm)
    for f in ("sport", "dport"):
        pts, bm = summary(getattr(rs, f + "_lo"), getattr(rs, f + "_hi"), 0xFFFF)
        tabs.append(_interval(pts, np.arange(1 << 16)))
        bms.append(bm)
    # protocol rows are the values themselves; rules share few (value, mask) pairs
    pairs, pair = np.unique(np.stack([rs.proto & rs.proto_mask, rs.proto_mask]), axis=1,
                            return_inverse=True)
    has = np.zeros((pairs.shape[1], words * 64), dtype=np.bool_)
    has[pair.reshape(-1)[by_group], slot // CHUNK] = True
    hits = _proto_hits(pairs[0], pairs[1])                          # (256, pairs)
    pbm = np.packbits((hits.astype(np.uint8) @ has.astype(np.uint8)) > 0, axis=1,
                      bitorder="little").view("<u8")
    bms.append(pbm)
    hdr = np.zeros(H_GROUPS + GROUPS + 1, dtype=np.int64)
    toff = np.cumsum([0] + [len(t) for t in tabs])
    hdr[[H_SRC1, H_SRC2, H_DST1, H_DST2, H_SPORT, H_DPORT]] = toff[:6]
    hdr[[H_SRC_PTS, H_DST_PTS]] = [0, len(ptss[0])]
    hdr[H_SRC_BM:H_PROTO_BM + 1] = np.cumsum([0] + [b.size for b in bms[:-1]])
    hdr[H_WORDS] = words
    hdr[H_RULES] = n
    hdr[H_KIND] = KIND_CHUNKED
    hdr[H_CHUNKS] = nch
    hdr[H_GROUPS:H_GROUPS + GROUPS + 1] = np.concatenate((start, [npad])) // CHUNK
    first = order[::CHUNK]
    word_first = np.minimum.reduceat(first, np.arange(0, nch, 64))
    hdr[H_FIRST] = npad
    hdr[H_WORD_FIRST] = npad + nch
    order = np.concatenate((order, first, word_first)).astype(np.int32)
    return Classifier(np.concatenate(tabs).astype(np.int32),
                      np.concatenate([b.reshape(-1) for b in bms]).view(np.int64),
                      hdr, _allow(rs), np.concatenate(ptss).astype(np.uint32),
                      rip.astype(np.uint32).reshape(-1), rpt.astype(np.uint16).reshape(-1),
                      rpr.astype(np.uint8).reshape(-1), order)


def build(rules, kind=None):
    """Compile rules (a RuleSet or Rules) into a Classifier (tuple of arrays).
    kind: KIND_BITVECTOR or KIND_CHUNKED; by default chosen by the count."""
    rs = rules if isinstance(rules, RuleSet) else RuleSet.of(rules)
    if kind is None:
        kind = KIND_BITVECTOR if len(rs) <= BITVECTOR_MAX else KIND_CHUNKED
    return _bitvector(rs) if kind == KIND_BITVECTOR else _chunked(rs)


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
def _in_cell(tab, lo_at, hi_at, pts, p_at, x):
    """Interval of address x: its /16's first and last, then a binary search."""
    i = np.int64(tab[np.uint64(lo_at + (x >> 16))])
    j = np.int64(tab[np.uint64(hi_at + (x >> 16))])
    while i < j:
        m = (i + j + 1) >> 1
        if np.int64(pts[np.uint64(p_at + m)]) <= x:
            i = m
        else:
            j = m - 1
    return i


@hot(inline="always")
def _chunk_matches(c, k, src, dst, sport, dport, proto):
    """Bit i set when rule i of chunk k matches (64 rules at once)."""
    b = np.uint64(k * 256)
    return (masked_eq64(c.rip, b, src) & masked_eq64(c.rip, b + np.uint64(128), dst)
            & in_ranges64(c.rpt, b, sport) & in_ranges64(c.rpt, b + np.uint64(128), dport)
            & masked_eq64(c.rpr, np.uint64(k * 128), proto))


@hot(inline="always")
def _group_end(h, ch):
    """First chunk after the group that chunk ch belongs to."""
    return h[H_GROUPS + 1 + (ch >= h[H_GROUPS + 1]) + (ch >= h[H_GROUPS + 2]) + (ch >= h[H_GROUPS + 3])]


@hot(inline="always")
def _bits_from(n):
    """A word with bits n..63 set (0 <= n < 64)."""
    return ~((np.uint64(1) << np.uint64(n)) - np.uint64(1))


@hot
def _first_chunked(c, src, dst, sport, dport, proto):
    tab, bm, h = c.tab, c.bm, c.hdr
    w = h[H_WORDS]
    s = np.int64(src)
    d = np.int64(dst)
    rs = _in_cell(tab, h[H_SRC1], h[H_SRC2], c.pts, h[H_SRC_PTS], s) * w + h[H_SRC_BM]
    rd = _in_cell(tab, h[H_DST1], h[H_DST2], c.pts, h[H_DST_PTS], d) * w + h[H_DST_BM]
    r1 = np.int64(tab[np.uint64(h[H_SPORT] + np.int64(sport))]) * w + h[H_SPORT_BM]
    r2 = np.int64(tab[np.uint64(h[H_DPORT] + np.int64(dport))]) * w + h[H_DPORT_BM]
    rp = np.int64(proto) * w + h[H_PROTO_BM]
    best = h[H_RULES]
    src32, dst32 = np.uint32(src), np.uint32(dst)
    sp16, dp16, pr8 = np.uint16(sport), np.uint16(dport), np.uint8(proto)
    order = c.order
    first, word_first = np.uint64(h[H_FIRST]), np.uint64(h[H_WORD_FIRST])
    nch = h[H_CHUNKS]
    done = 0            # chunks below this one are settled
    k = 0
    while k < w:
        if order[word_first + np.uint64(k)] >= best:
            # and so is the rest of the group this word ends in
            done = max(done, _group_end(h, min(k * 64 + 63, nch - 1)))
            k = max(k + 1, done >> 6)
            continue
        x = np.uint64(bm[np.uint64(rs + k)] & bm[np.uint64(rd + k)] & bm[np.uint64(r1 + k)]
                      & bm[np.uint64(r2 + k)] & bm[np.uint64(rp + k)])
        if done > k * 64:
            x &= _bits_from(done - k * 64)
        while x != 0:
            ch = k * 64 + cttz64(x)
            x &= x - np.uint64(1)
            if order[first + np.uint64(ch)] < best:
                m = _chunk_matches(c, ch, src32, dst32, sp16, dp16, pr8)
                if m == 0:
                    continue
                best = min(best, np.int64(order[np.uint64(ch * 64 + cttz64(m))]))
            # A group's chunks run in file order: nothing later in this
            # chunk's group can beat the best now. Skip to the next group.
            done = _group_end(h, ch)
            if done >= (k + 1) * 64:
                k = (done >> 6) - 1
                break
            x &= _bits_from(done - k * 64)
        k += 1
    return best


@hot(inline="always")
def first_match(c, src, dst, sport, dport, proto):
    """Index of the first rule matching the 5-tuple, or the rule count."""
    tab, bm, h = c.tab, c.bm, c.hdr
    if h[H_KIND] == KIND_CHUNKED:
        return _first_chunked(c, src, dst, sport, dport, proto)
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
