"""dnsblock: drop DNS queries for names under blocked suffixes.

Settings:  suffixes   blocked names, comma-separated (default "example.invalid");
                      a name matches at label boundaries and in any letter case:
                      "ads.example" blocks "x.ADS.example", not "badads.example"
Drops:     blocked    a query (UDP to port 53) for a blocked name
Counters:  queries    DNS queries seen
Example:   pynf run --rtc acl,examples/dnsblock.py:dnsblock,l3fwd --traffic dns \\
               --set dnsblock.suffixes=ads.example,tracker.test
"""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from pynf.nf import DROP, nf
from pynf.nf.access import byte, iequal, payload

MAX_SUFFIXES = 16
MAX_LABELS = 128                    # a name has at most 127 labels (255 bytes)
QUERIES = 0


def wire(name):
    """A DNS name in wire form, lower case: b"\\x03ads\\x07example\\x00"."""
    out = b""
    for label in name.strip(".").lower().split("."):
        if not 1 <= len(label) <= 63:
            raise ValueError(f"suffixes: {name!r} has an empty or too long label")
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


@dataclass(frozen=True)
class Config:
    suffixes: str = "example.invalid"

    def validate(self):
        names = [s for s in self.suffixes.split(",") if s.strip()]
        if not 1 <= len(names) <= MAX_SUFFIXES:
            raise ValueError(f"suffixes: give 1..{MAX_SUFFIXES} names, comma-separated")
        for s in names:
            if not s.isascii() or len(wire(s)) > 255:
                raise ValueError(f"suffixes: {s!r} is not a DNS name")


State = namedtuple("State", "names lens counters")


def make_state(cfg):
    names = [wire(s) for s in cfg.suffixes.split(",") if s.strip()]
    pat = np.zeros((len(names), 256), dtype=np.uint8)
    for k, w in enumerate(names):
        pat[k, :len(w)] = np.frombuffer(w, dtype=np.uint8)
    return State(names=pat, lens=np.array([len(w) for w in names], dtype=np.int64),
                 counters=np.zeros(1, dtype=np.int64))


@nf("dnsblock", drops=("blocked",), counters=("queries",), config=Config, state=make_state,
    per_packet=True)
def dnsblock(pkts, i, st):
    if pkts.proto[i] != 17 or pkts.dport[i] != 53 or pkts.frag[i] != 0:
        return
    lo, hi = payload(pkts, i)
    if hi - lo < 12 + 5:                             # a header, a name, a type and a class
        return
    if byte(pkts, i, lo + 2, hi) & 0x80:             # a response
        return
    st.counters[QUERIES] += 1
    p = lo + 12                                      # the question's name
    for _ in range(MAX_LABELS):
        n = byte(pkts, i, p, hi)
        if n <= 0 or n > 63:                         # the end, past the data, or a pointer
            return
        for k in range(len(st.lens)):
            if iequal(pkts, i, p, hi, st.names[k], st.lens[k]):
                pkts.port[i] = DROP
                return
        p += n + 1
