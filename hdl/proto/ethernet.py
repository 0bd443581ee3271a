"""IEEE 802.3 clause 3 / Ethernet II framing facts.

The frame on the engine's MAC streams starts at the destination address and ends with the
last payload byte: no preamble, no FCS, no padding added on transmit.
"""

HEADER_BYTES = 14
DST, SRC, ETHERTYPE = 0, 6, 12  # byte offsets
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
BROADCAST = 0xFFFF_FFFF_FFFF
