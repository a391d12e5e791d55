"""The flow cache's part of a generated stage (pynf.compiler.stage calls
`stage_parts`, its one entry point; pynf.flowcache has the design).

Consecutive cacheable NFs form a segment. The stage looks every packet up
once (`lookup`); each segment checks its hits (a resend or a guard's
refusal sends a hit through the NFs after all), runs its NFs on the
misses, records what they did, and applies the recorded effect to the
hits; `commit` writes the burst's misses into the table. Both the cached
calls and the plain ones are generated: --flow-cache auto looks past the
cache (pynf.flowcache.adapt) by taking the plain branch.
"""
import textwrap
from collections import namedtuple

from pynf.flowcache.layout import Layout
from pynf.nf import SLOWPATH

# What a stage takes from here: lines to import, the lookup before its NFs,
# the NFs' calls (cached or plain), the commit after, and the words per entry.
StageParts = namedtuple("StageParts", "imports lookup calls commit vw")

_FC_LOOKUP = '''\
    cached = fc.meta[FC_ON] != 0
    ep = 0
    if cached:
        ep = _fc.epoch(fc, {versions})
        _fc.lookup(fc, b, live, m, ep, {mark})
'''
_FC_SEGMENT = '''\
    # flow cache: segment {s}, NFs {a}..{e}: check the hits, mark the misses
    for x in range(m):
        i = live[x]
        r = fc.slot[i]
        if r >= 0:
            o = r * FC_VW
{hit}        if fc.slot[i] < 0 and fc.ins[i] >= 0:
{miss}'''
_FC_CALL = '''\
    tk = t
    mm = _fc.misses(fc, live, m)
{call}
{record}
    for x in range(m):                  # the others: NF {j}'s recorded effect
        i = live[x]
        r = fc.slot[i]
        if r >= 0:
            o = r * FC_VW
{apply}
{count}'''
_FC_ONE = '''\
    # flow cache: NF {j}, a segment of its own ({s}): the packets it serves
    # take NF {j}'s recorded effect, the others are listed for NF {j} itself
    tk = t
    mm = 0
    for x in range(m):
        i = live[x]
        r = fc.slot[i]
        if r >= 0:
            o = r * FC_VW
{hit}
{miss}        fc.sub[mm] = i
        mm += 1
{call}
{record}
{count}'''



def _indent(lines, n):
    return "".join(" " * n + x + "\n" for x in lines)


def _unpack(c, shift, mask):
    v = f"fc.vals[o + {c}]"
    return f"(({v} >> {shift}) & {mask})" if shift else f"({v} & {mask})"


def _pack(c, parts, src):
    """The line recording word c of an entry from the packet (src: field -> expression)."""
    return f"fc.rec[i, {c}] = " + " | ".join(
        f"((int({src(f)}) & {mask}) << {shift})" if shift else f"(int({src(f)}) & {mask})"
        for f, shift, mask in parts)


def _field(f):
    return f"b.{f}[i]"


def _fc_parts(seg, layout, j):
    """(the lines applying NF j's recorded effect to a hit whose entry is
    at o, the loop recording what NF j did to the packets it ran on)."""
    pt = layout.pt[j]
    last = layout.segments[seg][1] == j
    parts = dict((f, (pt[0], sh, mk)) for f, sh, mk in pt[1]) if pt else {}
    apply = [f"rp{j}(st{j}, {_unpack(*parts['tag'])})"] if "tag" in parts else []
    apply += ["v = fc.vals[o]", f"if (v >> 8) & 255 == {j + 1}:", "    b.port[i] = -1 - (v & 255)"]
    if last:
        apply += ["else:", f"    b.port[i] = {_unpack(*parts['port'])}"]
        apply += [f"    b.{f}[i] = {_unpack(c, sh, mk)}" for c, ws in layout.writes[seg] for f, sh, mk in ws]
    src = {"tag": "b.tag[i]", "port": "p"}
    record = ["for x in range(mm):" + f"                 # what NF {j} did, for the packets it ran on",
              "    i = fc.sub[x]",
              "    if fc.ins[i] >= 0:",
              "        p = b.port[i]",
              f"        if p >= {SLOWPATH} or p < -256:",
              "            fc.ins[i] = -1",
              "        elif p < 0:",
              f"            fc.rec[i, 0] |= {j + 1} << 8 | (-1 - p)"]
    if "tag" in parts:
        record += ["            " + _pack(pt[0], [x for x in pt[1] if x[0] == "tag"], src.get)]
    if pt or last:
        record += ["        else:"]
        if pt:
            record += ["            " + _pack(pt[0], pt[1], src.get)]
        if last:
            record += ["            " + _pack(c, ws, _field) for c, ws in layout.writes[seg]]
    return apply, record


def _fc_checks(seg, layout, specs, bit):
    """(the lines checking a hit entering segment seg: resend or refuse it,
    else fall through; the lines marking a miss (records its guards), or
    refusing it) for a segment with something to check."""
    a, e = layout.segments[seg]
    guards = " and ".join(f"g{j}(b, i, st{j})" for j in range(a, e + 1) if specs[j].cache.guard is not None)
    stale = " or ".join([f"(fc.vals[o] & {bit}) == 0"] + [
        f"b.{f}[i] != {_unpack(c, sh, mk)}" for c, ws in layout.guards[seg] for f, sh, mk in ws])
    hit = [f"if {stale}:", f"    _fc.resend(fc, i, {bit - (1 << 16)})"]
    if guards:
        hit += [f"elif not ({guards}):", "    _fc.refuse(fc, i)"]
    mark = [f"fc.rec[i, 0] |= {bit}"] + [_pack(c, ws, _field) for c, ws in layout.guards[seg]]
    miss = ([f"if not ({guards}):", "    _fc.refuse(fc, i)", "else:"] + ["    " + x for x in mark]) \
        if guards else mark
    return hit, miss


def _fc_one(spec, seg, layout, specs, j, plain, invoke, count, **kw):
    """A cacheable NF alone in its segment: check, apply and list in one pass."""
    apply, record = _fc_parts(seg, layout, j)
    if plain:                       # nothing to check: every hit takes the effect
        hit = apply + ["continue"]
        miss = []
    else:
        hit, mark = _fc_checks(seg, layout, specs, 1 << (16 + seg))
        hit += ["else:"] + ["    " + x for x in apply] + ["    continue"]
        miss = ["if fc.ins[i] >= 0:"] + ["    " + x for x in mark]
    call = invoke(spec, j, "fc.sub", "mm")
    return _FC_ONE.format(j=j, s=seg, hit=_indent(hit, 12).rstrip("\n"), miss=_indent(miss, 8),
                          call=call, record=_indent(record, 4).rstrip("\n"), count=count(j, cached=True, **kw))


def _fc_call(spec, seg, layout, j, invoke, count, **kw):
    """A cacheable NF in a segment of several: run on the misses, record,
    apply to the hits (at this NF, so that a drop counts under it)."""
    apply, record = _fc_parts(seg, layout, j)
    call = invoke(spec, j, "fc.sub", "mm")
    return _FC_CALL.format(j=j, call=call, record=_indent(record, 4).rstrip("\n"),
                           apply=_indent(apply, 12).rstrip("\n"), count=count(j, cached=True, **kw))


def _fc_segment(seg, layout, specs):
    """Check and mark the packets entering segment seg (of several NFs)."""
    a, e = layout.segments[seg]
    hit, miss = _fc_checks(seg, layout, specs, 1 << (16 + seg))
    return _FC_SEGMENT.format(s=seg, a=a, e=e, hit=_indent(hit, 12), miss=_indent(miss, 12))



def stage_parts(specs, writes, cached, kws, plain, invoke, count, call):
    """The flow cache's parts of a stage of NFs `specs`: writes, per NF, the
    fields it may write; cached, per NF, whether the cache stands in for it
    (no True: no cache, and the plain calls); kws, per NF, its counting
    arguments; plain, the stage's calls without a cache; invoke(spec, j,
    list, count) an NF's call over list[:count], count(j, cached, **kw) its
    counting, call(spec, **kw) both for the live packets (the stage
    compiler's)."""
    cached = list(cached) if cached is not None and any(cached) else [False] * len(specs)
    layout = Layout(cached, writes, [bool(c and s.cache.replay) for s, c in zip(specs, cached)])
    if not layout.segments:
        return StageParts("", "", plain, "", 0)
    # a first segment with nothing to check is marked recorded at the lookup
    plain0 = layout.segments[0][0] == 0 and not any(
        specs[j].cache.guard is not None for j in range(layout.segments[0][1] + 1))
    hooks = [f"{p}{j} = cache_hook({s.name!r}, {h!r})" for j, (s, c) in enumerate(zip(specs, cached))
             if c for h, p in (("guard", "g"), ("replay", "rp"), ("version", "v"))
             if getattr(s.cache, h) is not None]
    calls = []
    for j, (s, kw) in enumerate(zip(specs, kws)):
        seg = layout.segment_of(j)
        if seg < 0:
            calls.append(call(s, **kw))
            continue
        first, last = layout.segments[seg]
        if first == last:
            calls.append(_fc_one(s, seg, layout, specs, plain=seg == 0 and plain0, invoke=invoke, count=count,
                                 **kw))
            continue
        if j == first and not (seg == 0 and plain0):
            calls.append(_fc_segment(seg, layout, specs))
        calls.append(_fc_call(s, seg, layout, invoke=invoke, count=count, **kw))
    # the cached NFs, or (a cache looked past: pynf.flowcache.adapt) the plain ones
    calls = ("    if cached:\n" + textwrap.indent("".join(calls), "    ") + "    else:\n"
             + textwrap.indent(plain, "    "))
    versions = " + ".join(f"v{j}(st{j})" for j, (s, c) in enumerate(zip(specs, cached))
                          if c and s.cache.version is not None) or "0"
    lookup = _FC_LOOKUP.format(versions=versions, mark=(1 << 16) if plain0 else 0)
    commit = "    if cached:\n        _fc.commit(fc, ep)\n"
    imports = "\n".join(["from pynf.flowcache import table as _fc", "from pynf.flowcache.table import FC_ON",
                         "from pynf.nf import cache_hook"] + hooks)
    return StageParts(imports, lookup, calls, commit, layout.vw)
