"""`pynf ctl lb ...`: lb's input file and control verbs (pynf.nf.declare)."""
import dataclasses

from pynf.errors import UsageError, format_ipv4, is_decimal
from pynf.nf import Change, File, Verb
from pynf.nfs.lb.config import CTL_EXTRA, _addr, parse_backends
from pynf.nfs.lb.state import (
    _now,
    add_backend,
    add_service,
    del_service,
    drain_backend,
    flow_count,
    flow_rows,
    flush_flows,
    format_flow,
    remove_backend,
    services,
)
from pynf.tables import flowtable as ct
from pynf.tables import hashtable as table


def _shadow(st):
    """A copy of a replica's control state with an empty flow table: a
    change is tried on it first, so one that fails changes nothing."""
    tab, info = ct.make(8, CTL_EXTRA)
    ctl = st.ctl.copy()
    ct.adopt(ctl, info)
    return st._replace(flows=tab, ctl=ctl, counters=st.counters.copy(),
                       maglev=st.maglev.copy(), svcs=table.Table(st.svcs.slots.copy(), st.svcs.info.copy()),
                       svc_addr=st.svc_addr.copy(), be=st.be.copy())


def _prepared(nfctl, change, text, config=None):
    """A Change that runs change(st) in every replica, after a dry run on a
    shadow of one (a change that fails there changes nothing)."""
    try:
        change(_shadow(nfctl.states()[0]))
    except ValueError as e:
        raise UsageError(f"lb: {e}") from None
    return Change(text, each=change, config=config)


def _addrs(words_, what):
    out = []
    for t in words_:
        a = _addr(t)
        if a is None:
            raise UsageError(f"lb: bad {what} {t!r} (want a.b.c.d:port)")
        out.append(a)
    return out


def _service_arg(text):
    """None for '*' (paper mode, or the only service), else (vip, vport)."""
    return None if text == "*" else _addrs([text], "service")[0]


def verb_service_add(nfctl, args):
    (vip, vport), bes = _addrs(args[:1], "service")[0], _addrs(args[1:], "backend")
    return _prepared(nfctl, lambda st: add_service(st, vip, vport, bes),
                     f"lb: service {args[0]} with {len(bes)} backends\n")


def verb_service_del(nfctl, args):
    svc = _addrs(args, "service")[0]
    return _prepared(nfctl, lambda st: del_service(st, svc), f"lb: service {args[0]} removed\n")


def _backend_verb(fn, done):
    def run(nfctl, args):
        svc, be = _service_arg(args[0]), _addrs(args[1:], "backend")[0]
        return _prepared(nfctl, lambda st: fn(st, be, svc), f"lb: backend {args[1]} {done} {args[0]}\n")
    return run


def verb_services(nfctl, args):
    lines = []
    for vip, vport, bes in services(nfctl.states()[0]):
        lines.append("(paper mode)" if not vip and not vport else f"{format_ipv4(vip)}:{vport}")
        lines += [f"  {format_ipv4(ip)}:{port} {flag}" for ip, port, flag in bes]
    return "".join(ln + "\n" for ln in lines)


def verb_flows(nfctl, args):
    limit = 100
    if args:
        if len(args) != 2 or args[0] != "--limit" or not is_decimal(args[1]):
            raise UsageError("usage: lb flows [--limit N]")
        limit = int(args[1])
    rows = []
    nfctl.read(lambda st: rows.append((st, flow_rows(st, limit - sum(len(r) for _, r in rows)))))
    lines = []
    for st, rs in rows:
        now = _now(st)
        lines += [format_flow(st, r, now) for r in rs]
    total = sum(flow_count(st) for st in nfctl.states())
    return "".join(ln + "\n" for ln in lines[:limit]) + f"({min(limit, len(lines))} of {total} entries)\n"


def verb_flush(nfctl, args):
    svc = _addrs(args, "service")[0] if args else None
    return _prepared(nfctl, lambda st: flush_flows(st, svc), "lb: flows flushed\n")


def verb_load(nfctl, args):
    """`lb load FILE`: make the services and backends the file's: services
    and backends it no longer lists go (with their flows), new ones come,
    and flows to what stays keep their backends."""
    path = args[0]
    backends, svcs = parse_backends(path)
    cfg = nfctl.config
    if bool(svcs) != bool(cfg.services):
        raise UsageError(f"{path}: a {'services' if svcs else 'paper-mode'} file, but lb runs "
                         f"{'services' if cfg.services else 'the paper'} mode (fixed at start)")
    want = {(v, p): list(b) for v, p, b in svcs} if svcs else {None: list(backends)}

    def change(st):
        have = {(None if not svcs else (vip, vport)): bes for vip, vport, bes in services(st)}
        for key in have:
            if key not in want:
                del_service(st, key)
        for key, bes in want.items():
            if key not in have:
                add_service(st, key[0], key[1], bes)
                continue
            for ip, port, _ in have[key]:
                if (ip, port) not in bes:
                    remove_backend(st, (ip, port), key)
            active = {(ip, port) for ip, port, flag in have[key] if flag == "active"}
            for be in bes:
                if be not in active:        # new, or draining: (re)activated
                    add_backend(st, be, key)

    new = dataclasses.replace(cfg, backends=backends or cfg.backends, services=svcs)
    return _prepared(nfctl, change, f"lb: loaded {len(svcs) or len(backends)} "
                                    f"{'services' if svcs else 'backends'} from {path}\n", config=new)


FILES = [File("--backends", "services and backends for lb: VIP:PORT BACKEND:PORT... lines "
                            "(or BACKEND[:PORT] lines: paper mode)", reload="lb load")]
VERBS = [Verb("lb service add", "VIP:PORT BACKEND:PORT...", "a service and its backends", verb_service_add),
         Verb("lb service del", "VIP:PORT", "remove a service and its flows", verb_service_del),
         Verb("lb backend add", "VIP:PORT BACKEND:PORT", "add (or reactivate) a backend ('*': paper mode)",
              _backend_verb(add_backend, "added to")),
         Verb("lb backend del", "VIP:PORT BACKEND:PORT", "remove a backend and its flows",
              _backend_verb(remove_backend, "removed from")),
         Verb("lb backend drain", "VIP:PORT BACKEND:PORT", "no new flows to a backend; its flows stay",
              _backend_verb(drain_backend, "draining in")),
         Verb("lb services", "", "the services and their backends", verb_services),
         Verb("lb flows", "[--limit N]", "the flow table (100 entries unless --limit)", verb_flows),
         Verb("lb flush", "[VIP:PORT]", "forget every flow (of one service)", verb_flush),
         Verb("lb load", "FILE", "make services and backends the file's; flows that stay keep theirs",
              verb_load)]
