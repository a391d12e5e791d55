"""5-tuple packet classification for ClassBench rule sets (the ACL).

The rules (pynf.tables.rules: Rule, RuleSet, parse_rule, parse_rules)
are ClassBench's; the first matching rule in file order wins; no match
allows.

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
from collections import namedtuple

import numpy as np

from pynf.compiler.intrinsics import cttz64, in_ranges64, masked_eq64
from pynf.compiler.jit import hot
from pynf.tables.rules import RuleSet

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
