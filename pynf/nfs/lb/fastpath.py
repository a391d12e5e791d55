"""lb's fast path: the per-burst kernel and its helpers."""

import numpy as np

from pynf.compiler.intrinsics import ld8, ld16, rdtsc
from pynf.compiler.jit import hot
from pynf.nf import drop
from pynf.nf.blocks import take_in
from pynf.nfs.lb.config import (
    BE_IP,
    BE_PORT,
    BE_SHIFT,
    C_CLOSED,
    C_EXPIRED,
    C_FRAGS,
    C_NEW,
    C_REVERSE_STATELESS,
    CLOCK,
    FILTER,
    FILTER_MASK,
    FRAG_KEY,
    K0,
    K1,
    K_BACKEND,
    K_SERVICE,
    K_VIP,
    LB_FRAG,
    LB_FULL,
    LB_NO_BACKEND,
    LB_NON_L4,
    LB_RATE,
    LB_SYN_FULL,
    MODE_SERVICES,
    O_HZ,
    O_M,
    O_MODE,
    O_NON_L4,
    O_ON_FULL,
    O_RATE,
    O_REV,
    O_TOKENS,
    REV,
    S_FIN,
    S_FRAG,
    S_SYN,
    S_TCP,
    S_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    H,
)
from pynf.tables import flowtable as ct
from pynf.tables import hashtable as table
from pynf.tables.hashing import hash5, hash32, key5


@hot(inline="always")
def _in_filter(ctl, ip):
    x = hash32(ip) & FILTER_MASK
    return (ctl[FILTER + (x >> 6)] >> (x & 63)) & 1 != 0


@hot(inline="always")
def _lookup(svcs, k0, k1, h):
    s = table.find(svcs, k0, k1, h)
    return -1 if s < 0 else table.value(svcs, s)


@hot(inline="always")
def _service(svcs, vip, vport):
    """Service index of VIP:PORT, or -1."""
    return _lookup(svcs, (int(vip) << 16) | int(vport), K_SERVICE, hash5(vip, 0, 0, vport, 0))


@hot(inline="always")
def _is_vip(svcs, ip):
    return _lookup(svcs, int(ip), K_VIP, hash32(ip)) >= 0


@hot(inline="always")
def _backend_service(svcs, ip, port):
    """Service of backend ip:port (AMBIGUOUS when it serves several), or -1."""
    return _lookup(svcs, (int(ip) << 16) | int(port), K_BACKEND, hash5(0, ip, port, 0, 0))


@hot(inline="always")
def entry_hash(k0, k1):
    """The bucket hash of a flow-table key: hash5 of the 5-tuple key5 packed
    (a fragment key's: of (src, dst, IP id, 0, proto), as _slow hashes it)."""
    return hash5(k0 >> 24, (k1 >> 16) & 0xFFFFFFFF, (k0 >> 8) & 0xFFFF, k1 & 0xFFFF, k0 & 0xFF)


claim = ct.claimer(entry_hash)


@hot(inline="always")
def _put(tab, ctl, k0, k1, h, v, meta, now, counters, evict):
    """Insert or update an entry as `evict` allows (pynf.tables.flowtable);
    its entry, or -1 when there was no room."""
    e, _ = claim(tab, ctl, h, k0, k1, now, counters, evict)
    if e >= 0:
        tab[e + 2] = v
        tab[e + 3] = meta
    return e


@hot(inline="always")
def _rate_ok(ctl, now):
    """max_new_per_s: a token bucket of a second's worth of new flows, in
    ctl[O_TOKENS] and ctl[O_FILLED] (pynf.nf.blocks.take_in, on the TSC)."""
    rate = ctl[O_RATE]
    return rate <= 0 or take_in(ctl, O_TOKENS, rate, rate, now, ctl[O_HZ])


@hot(inline="always")
def _mark(tab, ctl, src, dst, sport, dport, proto, state, only):
    """Set a 5-tuple's entry to `state` (the other direction saw a FIN or
    RST, or finished the handshake); with only >= 0, only if it is in
    state `only`."""
    k0, k1 = key5(src, dst, sport, dport, proto)
    e = ct.find(tab, ct.base(ctl, hash5(src, dst, sport, dport, proto)), k0, k1)
    if e >= 0 and (only < 0 or (tab[e + 3] & ct.STATE_MASK) == only):
        tab[e + 3] = (tab[e + 3] & ~ct.STATE_MASK) | state


@hot(inline="always")
def _other(tab, ctl, v, src, dst, sport, dport, state, only):
    """_mark the other direction's entry of a services-mode connection."""
    if v & REV:         # a reply: the client's entry
        _mark(tab, ctl, dst, (v >> 16) & 0xFFFFFFFF, dport, v & 0xFFFF, 6, state, only)
    else:               # from the client: the reply's entry
        _mark(tab, ctl, (v >> 16) & 0xFFFFFFFF, src, v & 0xFFFF, sport, 6, state, only)


@hot
def _tcp_event(st, e, flags, v, src, dst, sport, dport):
    """New state of live TCP entry e on a packet with SYN, FIN or RST, or on
    any packet of a half-open entry: a FIN or RST closes it and (services
    mode) its other direction's entry; a SYN without ACK reopens a closing
    entry (the 5-tuple is reused: half-open again); an ACK without SYN on a
    half-open entry completes the handshake, both directions."""
    tab = st.flows
    state = tab[e + 3] & ct.STATE_MASK
    services = st.ctl[O_MODE] == MODE_SERVICES
    if flags & (TCP_FIN | TCP_RST):
        if state != S_FIN:
            st.counters[C_CLOSED] += 1
            if services:
                _other(tab, st.ctl, v, src, dst, sport, dport, S_FIN, -1)
        return S_FIN
    syn_ack = flags & (TCP_SYN | TCP_ACK)
    if syn_ack == TCP_SYN:
        return S_SYN if state == S_FIN else state
    if state == S_SYN and syn_ack == TCP_ACK:
        if services:
            _other(tab, st.ctl, v, src, dst, sport, dport, S_TCP, S_SYN)
        return S_TCP
    return state


PASS = -1                       # _slow's answer for a packet to leave untouched; drop k: -2 - k


@hot
def _slow(st, src, dst, sp, dp, proto, fr, ident, flags, now):
    """Everything but a live flow's non-fragment packet: a new or dead flow,
    a fragment, a reply without an entry. Returns the entry value to apply,
    PASS, or -2 - k to drop the packet under reason k."""
    tab = st.flows
    ctl = st.ctl
    cnt = st.counters
    stamp = now << ct.STATE_BITS
    services = ctl[O_MODE] == MODE_SERVICES
    if fr == 2:                     # no ports: (src, dst, proto, IP id)
        k0, k1 = key5(src, dst, ident, 0, proto)
        k1 |= FRAG_KEY
        h = hash5(src, dst, ident, 0, proto)
    else:
        k0, k1 = key5(src, dst, sp, dp, proto)
        h = hash5(src, dst, sp, dp, proto)
    b = ct.base(ctl, h)
    e = ct.find(tab, b, k0, k1)
    v = -1
    if e >= 0 and not ct.expired(tab[e + 3], now, ctl):
        v = tab[e + 2]              # a live fragment entry or first fragment's flow
        tab[e + 3] = stamp | (tab[e + 3] & ct.STATE_MASK)
    # (a dead entry of this key stays e: a new flow of the key takes it)
    if v < 0:
        if fr == 2:                 # a later fragment whose first was not seen
            return -2 - LB_FRAG if _is_vip(st.svcs, dst) else PASS
        svc = 0
        if services:
            svc = _service(st.svcs, dst, dp)
        if svc < 0:
            if ctl[O_REV] == 0:     # a reply whose entry is in another replica?
                r = _backend_service(st.svcs, src, sp)
                if r >= 0:
                    v = st.svc_addr[r] | REV
                    cnt[C_REVERSE_STATELESS] += 1
            if v < 0:
                return PASS             # not ours: untouched
        else:
            k = np.int64(st.maglev[svc, h % ctl[O_M]])
            if k < 0:
                return -2 - LB_NO_BACKEND
            bip = st.be[k, BE_IP]
            bport = st.be[k, BE_PORT]
            v = (bip << 16) | bport | (k << BE_SHIFT)
            if not _rate_ok(ctl, now):
                return -2 - LB_RATE
            state = S_UDP if proto == 17 else (S_FIN if flags & (TCP_FIN | TCP_RST) else (
                S_SYN if (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN else S_TCP))
            # a half-open connection never pushes out an entry that is not
            evict = ct.EVICT_NONE if ctl[O_ON_FULL] != 0 else (ct.EVICT_WEAK if state == S_SYN else ct.EVICT_ANY)
            if e >= 0:
                cnt[C_EXPIRED] += 1     # the 5-tuple's own dead entry, taken over
            else:
                e, _ = claim(tab, ctl, h, k0, k1, now, cnt, evict)
            if e >= 0:
                tab[e + 2] = v
                tab[e + 3] = stamp | state
                if services:            # the reply's entry: backend -> client
                    rk0, rk1 = key5(bip, src, bport, sp, proto)
                    r = _put(tab, ctl, rk0, rk1, hash5(bip, src, bport, sp, proto),
                             st.svc_addr[svc] | REV | (k << BE_SHIFT), stamp | state, now, cnt, evict)
                    if r < 0:           # no room for the reply's: the connection is not taken
                        b = ct.base(ctl, h)         # (the claim may have moved the forward entry)
                        e = ct.find(tab, b, k0, k1)
                        if e >= 0:
                            ct.remove(tab, ctl, b, e)
                        return -2 - (LB_SYN_FULL if state == S_SYN else LB_FULL)
                cnt[C_NEW] += 1
            elif ctl[O_ON_FULL] == 1:
                return -2 - LB_FULL
            elif ctl[O_ON_FULL] == 0:
                return -2 - LB_SYN_FULL     # a SYN, and its bucket holds established entries only
            # else on_full=hash: the backend, without an entry
    if fr != 0:
        cnt[C_FRAGS] += 1
        if fr == 1:                     # the datagram's later fragments follow this one
            fk0, fk1 = key5(src, dst, ident, 0, proto)
            _put(tab, ctl, fk0, fk1 | FRAG_KEY, hash5(src, dst, ident, 0, proto), v,
                 stamp | S_FRAG, now, cnt, ct.EVICT_ANY)
    return v


NOT_L4, FRAGMENT = -1, -2       # scratch h of a packet with no flow key
EVENT = -16                     # scratch h = EVENT - entry: a SYN, FIN or RST on a live entry



def lb(pkts, live, n, st):
    tab = st.flows
    ctl = st.ctl
    sc = st.scratch
    mem = pkts.mem
    services = ctl[O_MODE] == MODE_SERVICES
    now = ctl[CLOCK]                    # once per burst; >= 0: set by a test
    if now < 0:
        now = np.int64(rdtsc())
    stamp = now << ct.STATE_BITS
    # Pass 1: key and hash of every TCP/UDP non-fragment, and start loading
    # its bucket, so that the table misses of the whole burst overlap.
    for j in range(n):
        i = live[j]
        proto = pkts.proto[i]
        fr = pkts.frag[i]
        if (proto != 6 and proto != 17) or fr != 0:
            sc[H + j] = FRAGMENT if (services and fr != 0 and (proto == 6 or proto == 17)) else NOT_L4
            continue
        # NB: all int64: Numba's int() of an unsigned value is uint64, and
        # uint64 | int64 is a float64, which rounds 56-bit keys
        src = np.int64(pkts.src_ip[i])
        dst = np.int64(pkts.dst_ip[i])
        sp = np.int64(pkts.sport[i])
        dp = np.int64(pkts.dport[i])
        k0, k1 = key5(src, dst, sp, dp, np.int64(proto))
        h = hash5(src, dst, sp, dp, np.int64(proto))
        sc[K0 + j] = k0
        sc[K1 + j] = k1
        # TCP flags ride in h's upper bits: read whatever the protocol and
        # masked (a select, not a branch: a TCP/UDP mix would make a branch a
        # coin toss). The byte lies inside the buffer (at most 91 bytes in),
        # and for TCP inside the frame: the parser checked 20 bytes of TCP.
        sc[H + j] = h | ((ld8(mem, pkts.off[i] + pkts.l4[i] + 13) * (proto == 6)) << 32)
        ct.prefetch_bucket(tab, ctl, h)
    # Pass 2: a live flow's packet is handled here; anything else in _slow.
    events = 0
    for j in range(n):
        i = live[j]
        h = sc[H + j]
        if h == NOT_L4:
            if ctl[O_NON_L4] == 1 and (not services or _is_vip(st.svcs, np.int64(pkts.dst_ip[i]))):
                pkts.port[i] = drop(LB_NON_L4)
            continue
        flags = 0
        if h >= 0:                      # TCP/UDP, not a fragment
            flags = h >> 32
            h &= 0xFFFFFFFF
            e = ct.find(tab, ct.base(ctl, h), sc[K0 + j], sc[K1 + j])
            if e >= 0:
                meta = tab[e + 3]
                state = meta & ct.STATE_MASK
                if now - (meta >> ct.STATE_BITS) <= ctl[ct.I_TMO + state]:
                    tab[e + 3] = stamp | state
                    v = tab[e + 2]
                    # (half-open and closing entries: any packet, so that a SYN and
                    # the ACK after it in one burst both count, in order)
                    if flags & (TCP_FIN | TCP_SYN | TCP_RST) or state == S_SYN or state == S_FIN:
                        sc[H + j] = EVENT - e   # its state changes after this loop
                        events += 1
                    if v & REV:
                        pkts.src_ip[i] = (v >> 16) & 0xFFFFFFFF
                        pkts.sport[i] = v & 0xFFFF
                    else:
                        pkts.dst_ip[i] = (v >> 16) & 0xFFFFFFFF
                        pkts.dport[i] = v & 0xFFFF
                    continue
        # not a live flow's packet: a new or dead flow, a fragment, a reply
        # without an entry, or not ours
        fr = pkts.frag[i]
        if services and fr == 0:
            if not (_in_filter(ctl, np.int64(pkts.dst_ip[i]))
                    or (ctl[O_REV] == 0 and _in_filter(ctl, np.int64(pkts.src_ip[i])))):
                continue                # not to a VIP, not from a backend: untouched
        ident = 0
        if fr != 0:
            ident = ld16(mem, pkts.off[i] + pkts.l3[i] + 4)
        v = _slow(st, np.int64(pkts.src_ip[i]), np.int64(pkts.dst_ip[i]),
                  np.int64(pkts.sport[i]), np.int64(pkts.dport[i]), np.int64(pkts.proto[i]),
                  np.int64(fr), ident, flags, now)
        if v < 0:
            if v != PASS:
                pkts.port[i] = drop(-2 - v)
            continue
        if v & REV:
            pkts.src_ip[i] = (v >> 16) & 0xFFFFFFFF
            if fr != 2:                 # a later fragment has no ports
                pkts.sport[i] = v & 0xFFFF
        else:
            pkts.dst_ip[i] = (v >> 16) & 0xFFFFFFFF
            if fr != 2:
                pkts.dport[i] = v & 0xFFFF
    # Pass 3 (rare): state changes by TCP flags, out of the loop above so
    # that its hot path holds no call. The fields used are those the
    # rewrite left alone (the client's side); an entry moved since (the
    # table grew) is found again by its key, and one taken by a new flow
    # (a full bucket) is skipped.
    if events:
        for j in range(n):
            h = sc[H + j]
            if h > EVENT:
                continue
            e = EVENT - h
            k0 = sc[K0 + j]
            k1 = sc[K1 + j]
            if tab[e] != k0 or tab[e + 1] != (k1 | ct.USED):
                e = ct.find(tab, ct.base(ctl, entry_hash(k0, k1)), k0, k1)
                if e < 0:
                    continue
            i = live[j]
            flags = ld8(mem, pkts.off[i] + pkts.l4[i] + 13)
            state = _tcp_event(st, e, flags, tab[e + 2], np.int64(pkts.src_ip[i]), np.int64(pkts.dst_ip[i]),
                               np.int64(pkts.sport[i]), np.int64(pkts.dport[i]))
            tab[e + 3] = (tab[e + 3] & ~ct.STATE_MASK) | state
