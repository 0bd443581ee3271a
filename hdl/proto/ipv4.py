"""RFC 791 IPv4 header facts, and the receive checks of RFC 1122 s3.2.1.

Offsets are from the start of the IPv4 header.
"""

MIN_HEADER_BYTES = 20
MAX_HEADER_BYTES = 60
VERSION_IHL, TOS, TOTAL_LENGTH, IDENT, FLAGS_FRAGMENT, TTL, PROTOCOL, CHECKSUM = (
    0, 1, 2, 4, 6, 8, 9, 10,
)
SRC, DST = 12, 16
FLAG_DF = 0x4000
FLAG_MF = 0x2000
FRAGMENT_OFFSET_MASK = 0x1FFF
PROTO_ICMP = 1
PROTO_TCP = 6
DEFAULT_TTL = 64  # RFC 1700 / RFC 1122 s3.2.1.7 recommended default
# The ECN field, the low two bits of the TOS byte (RFC 3168 s5).
NOT_ECT, ECT_1, ECT_0, CE = 0, 1, 2, 3
LIMITED_BROADCAST = 0xFFFF_FFFF
