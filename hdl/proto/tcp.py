"""RFC 9293 s3.1 TCP header facts and the option kinds the engine understands.

Offsets are from the start of the TCP header.  Options: RFC 9293 s3.2 (EOL, NOP, MSS),
RFC 7323 (window scale, timestamps), RFC 2018 (SACK-permitted, SACK).
"""

MIN_HEADER_BYTES = 20
MAX_HEADER_BYTES = 60
MAX_OPTION_BYTES = 40
SPORT, DPORT, SEQ, ACK, DATA_OFFSET, FLAGS, WINDOW, CHECKSUM, URGENT = (
    0, 2, 4, 8, 12, 13, 14, 16, 18,
)

# Flag bits of the byte at offset 13.
FIN, SYN, RST, PSH, ACK_FLAG, URG, ECE, CWR = (1 << i for i in range(8))

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2  # length 4
OPT_WSCALE = 3  # length 3, RFC 7323 s2
OPT_SACK_PERMITTED = 4  # length 2, RFC 2018 s2
OPT_SACK = 5  # length 2 + 8*n, n = 1..4, RFC 2018 s3
OPT_TIMESTAMPS = 8  # length 10, RFC 7323 s3

MAX_WSCALE = 14  # RFC 7323 s2.3: larger shifts are used as 14
MAX_SACK_BLOCKS = 4
DEFAULT_MSS = 536  # RFC 9293 MUST-15
