"""What an NF's state is keyed by, and the hash pynf's dispatch steers by.

An NF says `@nf(..., key="src")` when its state is per source address (a
rate limit per client), "dst", a header field ("dport", "proto",
"in_port", "vlan"), "flow" (per 5-tuple: lb's connections) or "global"
(one state for all packets: the stage runs one replica). Without key= the
NF keeps no state that packets must meet (acl's rules, l3fwd's routes):
any replica will do.

A stage steers by its NFs' one key: packets with the same key always
reach the same replica of it (pynf.io.ring's dispatch, its indirection
table, scaling). A key that is a function of the 5-tuple serves "flow"
NFs as well (all of a flow's packets share their source address), so a
stage of a "flow" NF and a "src" NF steers by source; "src" with "dst"
cannot share a stage (pynf.runtime.runtime says so in one line).
"""
from pynf.compiler.jit import hot
from pynf.tables.hashing import hash5, hash32

K_FLOW, K_GLOBAL, K_SRC, K_DST, K_SPORT, K_DPORT, K_PROTO, K_IN_PORT, K_VLAN = range(9)
KEYS = {"flow": K_FLOW, "global": K_GLOBAL, "src": K_SRC, "src_ip": K_SRC, "dst": K_DST,
        "dst_ip": K_DST, "sport": K_SPORT, "dport": K_DPORT, "proto": K_PROTO, "in_port": K_IN_PORT,
        "vlan": K_VLAN}
_PER_FLOW = {K_SRC, K_DST, K_SPORT, K_DPORT, K_PROTO}       # functions of the 5-tuple


def stage_key(keys):
    """The key a stage steers by, from its NFs' keys (names or None):
    K_FLOW when none asks for another. ValueError names a conflict."""
    codes = {KEYS[k] for k in keys if k is not None}
    if len(codes) <= 1:
        return codes.pop() if codes else K_FLOW
    if codes - _PER_FLOW - {K_FLOW} or len(codes - {K_FLOW}) > 1:
        named = sorted({k for k in keys if k is not None})
        raise ValueError(f"keys {', '.join(named)} cannot share a stage")
    return (codes - {K_FLOW}).pop()


@hot(inline="always")
def key_hash(kind, b, i):
    """32-bit hash of packet i's key of kind `kind` (a K_* code)."""
    if kind == K_FLOW:
        return hash5(b.src_ip[i], b.dst_ip[i], b.sport[i], b.dport[i], b.proto[i])
    if kind == K_SRC:
        return hash32(b.src_ip[i])
    if kind == K_DST:
        return hash32(b.dst_ip[i])
    if kind == K_SPORT:
        return hash32(b.sport[i])
    if kind == K_DPORT:
        return hash32(b.dport[i])
    if kind == K_PROTO:
        return hash32(b.proto[i])
    if kind == K_IN_PORT:
        return hash32(b.in_port[i])
    if kind == K_VLAN:
        return hash32(b.vlan[i])
    return 0
