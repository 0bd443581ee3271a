"""RFC 792 ICMP echo facts (RFC 1122 s3.2.2.6: every host MUST answer echo requests)."""

HEADER_BYTES = 8
TYPE, CODE, CHECKSUM = 0, 1, 2
TYPE_ECHO_REPLY = 0
TYPE_ECHO_REQUEST = 8
