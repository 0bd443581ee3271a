"""RFC 792 ICMP facts: echo (RFC 1122 s3.2.2.6: every host MUST answer echo requests)
and the error messages TCP acts on (RFC 1122 s4.2.3.9, RFC 9293 s3.9.2.2, RFC 5927).

Offsets are from the start of the ICMP header.
"""

HEADER_BYTES = 8
TYPE, CODE, CHECKSUM = 0, 1, 2
TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_SOURCE_QUENCH = 4  # deprecated (RFC 6633): silently discarded (MUST-55)
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11
TYPE_PARAMETER_PROBLEM = 12
#: The error messages that quote a datagram and reach TCP.
ERROR_TYPES = (TYPE_DEST_UNREACHABLE, TYPE_TIME_EXCEEDED, TYPE_PARAMETER_PROBLEM)
# Destination-unreachable codes.
CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAG_NEEDED = 4  # with the next-hop MTU (RFC 1191 s4)
#: Hard errors (RFC 1122 s4.2.3.9: codes 2-4; code 4 is path MTU discovery's, RFC 1191).
HARD_CODES = (CODE_PROTOCOL_UNREACHABLE, CODE_PORT_UNREACHABLE)
NEXT_HOP_MTU = 6  # 16 bits, in a fragmentation-needed message
#: The quoted datagram: its IPv4 header, then at least 8 bytes of its payload (RFC 792;
#: RFC 1812 s4.3.2.3 routers quote more): the TCP ports and sequence number.
QUOTE_AT = HEADER_BYTES
QUOTED_TCP_AT = QUOTE_AT + 20  # the engine sends no IP options: the quoted IHL is 5
ERROR_MIN_BYTES = QUOTED_TCP_AT + 8
