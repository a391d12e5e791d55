"""Drop reasons: every dropped packet is counted under exactly one.

The framework's own reasons have fixed codes below NF_BASE; each stage gives
the NFs it runs codes from NF_BASE up, in chain order (see pynf.compiler.stage).
"""

# Parse (pynf.packet.parse) and I/O reasons. Order fixes the codes: append only.
FRAMEWORK = (
    "runt",          # frame shorter than its Ethernet header
    "vlan_stack",    # more than one 802.1Q/802.1ad tag: unsupported
    "not_ipv4",      # EtherType is not IPv4 (ARP, IPv6, ...)
    "ip_truncated",  # IPv4 header beyond the end of the frame
    "ip_version",    # IP version field is not 4
    "ip_ihl",        # IHL below 5
    "ip_len",        # total length beyond the frame or below the header
    "l4_truncated",  # TCP header under 20 bytes or UDP under 8 in the payload
    "tcp_doff",      # TCP data offset below 5 or beyond the IPv4 payload
    "oversize",      # frame larger than a buffer's data room (or multi-segment)
    "bad_verdict",   # an NF wrote a drop code it did not declare
    "tx_full",       # the output port's queue had no room
    "ring_full",     # an inter-stage ring had no room (--ring-full drop)
    "no_slowpath",   # handed to the slow path where the I/O has none (--io mem)
    "slowpath_full", # the slow path's queue had no room
)
# Code 0 means "no drop" (the parser's success value), so codes start at 1.
CODES = {name: i + 1 for i, name in enumerate(FRAMEWORK)}
NAMES = {code: name for name, code in CODES.items()}
R_RUNT = CODES["runt"]
R_VLAN_STACK = CODES["vlan_stack"]
R_NOT_IPV4 = CODES["not_ipv4"]
R_IP_TRUNCATED = CODES["ip_truncated"]
R_IP_VERSION = CODES["ip_version"]
R_IP_IHL = CODES["ip_ihl"]
R_IP_LEN = CODES["ip_len"]
R_L4_TRUNCATED = CODES["l4_truncated"]
R_TCP_DOFF = CODES["tcp_doff"]
R_OVERSIZE = CODES["oversize"]
R_BAD_VERDICT = CODES["bad_verdict"]
R_TX_FULL = CODES["tx_full"]
R_RING_FULL = CODES["ring_full"]
R_NO_SLOWPATH = CODES["no_slowpath"]
R_SLOWPATH_FULL = CODES["slowpath_full"]

NF_BASE = 32        # first code handed to NF reasons
MAX_REASONS = 128   # size of a worker's drop counter array

# Punt codes: a packet on its way to the slow path carries, as its verdict,
# PUNT_BASE | owner << 8 | k: owner 0 is the framework (k = P_ARP: an ARP
# frame), owner j + 1 the chain's j-th NF, which asked with slowpath(k).
# Verdicts travel in 16 bits (the ring entry), so owners stop at 127.
PUNT_BASE = 0x8000
P_ARP = 0
MAX_PUNT_OWNER = 127


def punt_code(owner, k):
    return PUNT_BASE | (owner << 8) | k


def punt_owner(code):
    """(owner, k) of a punt code: owner 0 the framework, j + 1 NF j."""
    return (code >> 8) & 0x7F, code & 0xFF
