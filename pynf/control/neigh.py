"""Neighbours: IPv4 -> MAC by ARP (RFC 826), shared with the fast path.

The table is three arrays that every replica reads and only the slow-path
thread writes (pynf.control.slowpath), so the fast path takes no lock:

    keys  uint32[N]   IPv4 address, 0 = never used
    vals  uint64[N]   MAC | VALID, 0 = not resolved (yet, or any more)
    hits  uint8[N]    set by the fast path when it uses an entry
    version int64[1]  grows on every change of vals (flow caches: pynf.flowcache)

`lookup` probes at most PROBE slots from hash32(ip). The writer stores
vals before keys (a reader that sees the key early finds vals 0: "not
resolved", and the packet goes to the slow path, never to a wrong MAC) and
never gives a slot to another address until it has been invalid for GRACE_S
seconds, long after any reader of the old entry has returned (workers come
back to Python every few milliseconds).

Life of an entry, after Linux's neighbour code in small: a packet whose
next hop has no valid entry is held (HOLD per next hop) and an ARP request
goes out (again every RETRY_S, PROBES times, then the held packets are
dropped: neigh_unresolved). A reply, or a request from the neighbour, makes
it valid. After REACHABLE_S an entry the fast path used is refreshed by a
unicast request (it stays valid meanwhile); one it did not use, or one that
does not answer the refresh, is invalidated. A table with no free slot in
reach counts neigh_full and drops the packet.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from pynf.compiler.jit import hot
from pynf.tables.hashing import hash32

VALID = np.uint64(1 << 63)
MAC_MASK = (1 << 48) - 1
PROBE = 8
HOLD = 8             # packets held per unresolved next hop
HOLD_TOTAL = 1024    # packets held in all
RETRY_S = 1.0
PROBES = 3
REACHABLE_S = 30.0
GRACE_S = 1.0

ETH_ARP = 0x0806
BROADCAST = 0xFFFFFFFFFFFF


@hot(inline="always")
def lookup(keys, vals, hits, ip):
    """MAC of neighbour ip, or -1 when it is not resolved (fast path)."""
    mask = len(keys) - 1
    s = hash32(ip) & mask
    for _ in range(PROBE):
        k = keys[s]
        if k == ip:
            v = vals[s]
            if v == 0:
                return -1
            if hits[s] == 0:
                hits[s] = 1
            return int(v & np.uint64(MAC_MASK))
        if k == 0:
            return -1
        s = (s + 1) & mask
    return -1


@dataclass
class Entry:
    ip: int
    slot: int
    port: int = -1
    mac: int = 0
    valid: bool = False
    since: float = 0.0          # when it became valid, or was last refreshed
    asked: float = 0.0          # last request sent
    tries: int = 0              # requests without an answer
    dead: float = 0.0           # when it was invalidated (slot reusable after GRACE_S)
    held: list = field(default_factory=list)


class NeighTable:
    def __init__(self, capacity=4096):
        n = 1
        while n < 2 * capacity:
            n <<= 1
        self.keys = np.zeros(n, dtype=np.uint32)
        self.vals = np.zeros(n, dtype=np.uint64)
        self.hits = np.zeros(n, dtype=np.uint8)
        # grows on every change of vals, so that flow caches holding MACs
        # learnt from it drop them (pynf.flowcache: l3fwd's version)
        self.version = np.zeros(1, dtype=np.int64)
        self.capacity = capacity
        self.entries = {}           # ip -> Entry (with a slot)
        self.stats = dict(resolved=0, requests=0, expired=0, full=0, held=0)

    # -- slots --

    def _slot(self, ip, now, at_capacity):
        """The slot of ip: its own, else a free one in reach, else (or, at
        capacity, first) a dead entry's past its grace time; -1 if none."""
        mask = len(self.keys) - 1
        s = int(hash32(ip)) & mask
        empty = dead = -1
        for _ in range(PROBE):
            k = int(self.keys[s])
            if k == ip:
                return s
            if k == 0:
                if empty < 0:
                    empty = s
            elif dead < 0:
                old = self.entries.get(k)
                if old is not None and not old.valid and not old.held and now - old.dead >= GRACE_S:
                    dead = s
            s = (s + 1) & mask
        if at_capacity or empty < 0:
            return dead
        return empty

    def entry(self, ip, now):
        """ip's entry, made if there is room; None when the table is full."""
        e = self.entries.get(ip)
        if e is not None:
            return e
        s = self._slot(ip, now, len(self.entries) >= self.capacity)
        k = int(self.keys[s]) if s >= 0 else 0
        reuse = k != 0 and k != ip         # a dead entry's slot, past its grace time
        if s < 0 or (not reuse and len(self.entries) >= self.capacity):
            self.stats["full"] += 1
            return None
        if reuse:
            del self.entries[k]
            self.vals[s] = 0
            self.version[0] += 1
        self.hits[s] = 0
        self.keys[s] = ip
        e = self.entries[ip] = Entry(ip, s)
        return e

    # -- state changes (slow-path thread only) --

    def learn(self, ip, mac, port, now, create=True):
        """A neighbour said who it is. Returns the entry (its held packets are
        the caller's to send), or None."""
        e = self.entries.get(ip) if not create else self.entry(ip, now)
        if e is None:
            return None
        if not e.valid or e.mac != mac:
            self.vals[e.slot] = np.uint64(mac) | VALID
            self.version[0] += 1
            self.stats["resolved"] += 1
        e.mac, e.port, e.valid, e.since, e.tries = mac, port, True, now, 0
        return e

    def invalidate(self, e, now):
        self.vals[e.slot] = 0
        self.version[0] += 1
        e.valid, e.dead, e.tries = False, now, 0
        self.stats["expired"] += 1

    def mac(self, ip):
        e = self.entries.get(ip)
        return e.mac if e is not None and e.valid else None

    def size(self):
        return sum(1 for e in self.entries.values() if e.valid)

    def snapshot(self):
        return [(e.ip, e.mac, e.port) for e in self.entries.values() if e.valid]


# -- ARP frames --

def arp_frame(op, src_mac, src_ip, dst_mac, dst_ip, eth_dst=None):
    """An Ethernet + ARP frame (60 bytes: padded to the minimum)."""
    eth_dst = dst_mac if eth_dst is None else eth_dst
    f = (eth_dst.to_bytes(6, "big") + src_mac.to_bytes(6, "big") + ETH_ARP.to_bytes(2, "big")
         + bytes((0, 1, 8, 0, 6, 4, 0, op)) + src_mac.to_bytes(6, "big") + src_ip.to_bytes(4, "big")
         + (dst_mac if op == 2 else 0).to_bytes(6, "big") + dst_ip.to_bytes(4, "big"))
    return f + bytes(60 - len(f))


def parse_arp(data):
    """(op, sender mac, sender ip, target ip) of an untagged Ethernet/IPv4
    ARP frame, or None."""
    if len(data) < 42 or bytes(data[12:14]) != b"\x08\x06":
        return None
    if bytes(data[14:20]) != bytes((0, 1, 8, 0, 6, 4)):
        return None
    op = int(data[20]) << 8 | int(data[21])
    sha = int.from_bytes(bytes(data[22:28]), "big")
    spa = int.from_bytes(bytes(data[28:32]), "big")
    tpa = int.from_bytes(bytes(data[38:42]), "big")
    return op, sha, spa, tpa


class Resolver:
    """ARP for the slow path: answers requests for the ports' addresses,
    learns from what it hears, holds packets for unresolved next hops and
    ages entries. `sp` is the SlowPath (send, originate, drop)."""

    def __init__(self, host, sp):
        self.host, self.sp, self.table = host, sp, host.neigh

    def on_arp(self, frame):
        now = time.monotonic()
        a = parse_arp(frame.data)
        if a is None:
            return self.sp.drop(frame, "arp_bad")
        op, sha, spa, tpa = a
        me = self.host.port(frame.in_port)
        if spa and sha and sha != BROADCAST and not (sha >> 40) & 1:
            # RFC 826: update an entry we have; add one when we are the target
            for_us = me is not None and me.ip and tpa == me.ip
            e = self.table.learn(spa, sha, frame.in_port, now, create=for_us)
            if e is not None:
                self._release(e)
        if op == 1 and me is not None and me.ip and tpa == me.ip and spa != tpa:
            reply = arp_frame(2, me.mac, me.ip, sha, spa)
            frame.data[:42] = np.frombuffer(reply[:42], dtype=np.uint8)
            return self.sp.send(frame, frame.in_port)
        return self.sp.drop(frame, "arp_consumed")

    def resolve(self, frame, port, nexthop):
        """Send frame (its eth_src and TTL already set) to nexthop on port
        once resolved; hold it meanwhile."""
        now = time.monotonic()
        mac = self.table.mac(nexthop)
        if mac is not None:
            return self._send_to(frame, port, mac)
        e = self.table.entry(nexthop, now)
        if e is None:
            return self.sp.drop(frame, "neigh_full")
        if len(e.held) >= HOLD or self.table.stats["held"] >= HOLD_TOTAL:
            return self.sp.drop(frame, "neigh_unresolved")
        e.held.append((frame.keep(), port))
        self.table.stats["held"] += 1
        e.port = port
        if now - e.asked >= RETRY_S:
            self._ask(e, now)

    def _send_to(self, frame, port, mac):
        frame.data[0:6] = np.frombuffer(mac.to_bytes(6, "big"), dtype=np.uint8)
        return self.sp.send(frame, port)

    def _release(self, e):
        held, e.held = e.held, []
        self.table.stats["held"] -= len(held)
        for frame, port in held:
            self._send_to(frame, port, e.mac)

    def _ask(self, e, now, unicast=False):
        me = self.host.port(e.port)
        if me is None:
            return
        dst = e.mac if unicast else BROADCAST
        self.sp.originate(arp_frame(1, me.mac, me.ip, 0, e.ip, eth_dst=dst), e.port)
        e.asked = now
        e.tries += 1
        self.table.stats["requests"] += 1

    def tick(self):
        """Retries, refreshes and expiry: called by the slow path every few ms."""
        now = time.monotonic()
        t = self.table
        for e in list(t.entries.values()):
            if e.valid:
                if now - e.since < REACHABLE_S:
                    continue
                if e.tries == 0:
                    if t.hits[e.slot]:          # used: refresh it
                        t.hits[e.slot] = 0
                        self._ask(e, now, unicast=True)
                    else:                       # unused: let it go
                        t.invalidate(e, now)
                elif now - e.asked >= RETRY_S:
                    if e.tries >= PROBES:
                        t.invalidate(e, now)
                    else:
                        self._ask(e, now, unicast=True)
            elif e.held and now - e.asked >= RETRY_S:
                if e.tries >= PROBES:
                    held, e.held = e.held, []
                    t.stats["held"] -= len(held)
                    for frame, _ in held:
                        self.sp.drop(frame, "neigh_unresolved")
                    e.tries, e.dead = 0, now
                else:
                    self._ask(e, now)

    def flush(self):
        """Drop every held packet (shutdown)."""
        for e in self.table.entries.values():
            held, e.held = e.held, []
            self.table.stats["held"] -= len(held)
            for frame, _ in held:
                self.sp.drop(frame, "neigh_unresolved")
