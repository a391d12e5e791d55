"""ClassBench ACL rules: a Rule, a RuleSet (the rules as columns), reading
one rule (parse_rule) and a file of them (parse_rules, in one compiled pass
over the file's bytes). pynf.tables.classifier builds the matcher from a
RuleSet.

Rules (docs/design.md, the format DPDK's l3fwd reads):

    @<src>/<len> <dst>/<len> <sport_lo> : <sport_hi> <dport_lo> : <dport_hi> <proto>/<mask> [allow|deny]

A raw ClassBench flags field (0x0000/0x0200) after the protocol is
accepted and ignored.
"""
import re
from dataclasses import dataclass

import numpy as np
from numba import njit

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
