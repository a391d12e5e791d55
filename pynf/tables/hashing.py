"""Flow hashing shared by tables, the LB and replica steering.

All arithmetic is on non-negative values below 2**64 masked to 32 bits, so
the same code gives the same hash compiled (int64 wrap-around) and under
NUMBA_DISABLE_JIT (Python ints): only the low 32 bits of each product are
kept, and those do not depend on overflow.
"""
from pynf.compiler.jit import hot

M32 = 0xFFFFFFFF


@hot(inline="always")
def fmix32(h):
    """MurmurHash3's 32-bit finalizer: full avalanche in five operations."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & M32
    h = h ^ (h >> 16)
    return h


@hot(inline="always")
def hash5(src_ip, dst_ip, sport, dport, proto):
    """32-bit hash of an IPv4 5-tuple."""
    h = (int(src_ip) * 0x9E3779B1) ^ (int(dst_ip) * 0x85EBCA77) \
        ^ (((int(sport) << 16) | int(dport)) * 0xC2B2AE3D) ^ (int(proto) * 0x27D4EB2F)
    return fmix32(h & M32)


@hot(inline="always")
def hash32(x):
    """32-bit hash of one 32-bit key (an IPv4 address)."""
    return fmix32((int(x) * 0x9E3779B1) & M32)


@hot
def hash32_many(xs, out):
    for i in range(len(xs)):
        out[i] = hash32(xs[i])


@hot(inline="always")
def key5(src_ip, dst_ip, sport, dport, proto):
    """Pack a 5-tuple into the two key words of a pynf.tables.hashtable.

    Both words stay below 2**56, so they are exact as int64 and as Python ints.
    """
    k0 = (int(src_ip) << 24) | (int(sport) << 8) | int(proto)
    k1 = (int(dst_ip) << 16) | int(dport)
    return k0, k1
