"""Drop reasons: every dropped packet is counted under exactly one.

The framework's own reasons have fixed codes below NF_BASE; each stage gives
the NFs it runs codes from NF_BASE up, in chain order (see pynf.stage).
"""

# Parse (pynf.packet) and I/O reasons. Order fixes the codes: append only.
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

NF_BASE = 32        # first code handed to NF reasons
MAX_REASONS = 128   # size of a worker's drop counter array
