"""RFC 826 ARP for IPv4 over Ethernet; RFC 5227 announcements.

Offsets are from the start of the ARP packet (the Ethernet payload).
"""

PACKET_BYTES = 28
HTYPE, PTYPE, HLEN, PLEN, OPER = 0, 2, 4, 5, 6
SHA, SPA, THA, TPA = 8, 14, 18, 24
HTYPE_ETHERNET = 1
OPER_REQUEST = 1
OPER_REPLY = 2
