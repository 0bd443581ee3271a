"""What the RX front end tells the rest of the engine about each received frame.

One :data:`RxMeta` leaves the parser per frame.  ``verdict`` says which handler gets it;
a dropped frame carries the :class:`DropReason` that the counters record.

An ICMP error about one of the engine's segments (``Verdict.ICMP_ERROR``) goes to the
TCP engine like a segment: its ``ip_src``, ``tcp_sport``, ``tcp_dport`` and ``tcp_seq``
are those of the quoted segment seen from the peer's side (the quoted destination
address and port, our port, the quoted sequence number), so that the socket-pair lookup
finds the connection that sent it (RFC 9293 MUST-54); ``tcp_flags`` and
``tcp_payload_len`` are 0, and ``icmp_type``, ``icmp_code``, ``icmp_mtu`` (the next-hop
MTU of a fragmentation-needed message, RFC 1191 s4) say what happened.
"""

from amaranth.lib import data, enum

__all__ = ["Verdict", "DropReason", "TcpOptions", "rx_meta_layout"]


class Verdict(enum.IntEnum, shape=3):
    DROP = 0
    ARP = 1
    ICMP_ECHO = 2
    TCP = 3
    ICMP_ERROR = 4  # destination unreachable, time exceeded, parameter problem: to TCP


class DropReason(enum.IntEnum, shape=5):
    """Why a frame was dropped.  Every reason has a counter (see hdl/csr.py)."""

    NONE = 0
    RUNT = 1  # shorter than an Ethernet header
    OVERSIZE = 2  # longer than 14 + MTU
    BUFFER_FULL = 3  # no room in the RX frame buffer when the frame started
    MAC_DST = 4  # destination MAC neither ours nor broadcast
    ETHERTYPE = 5  # neither IPv4 nor ARP
    ARP_MALFORMED = 6  # short, or not Ethernet/IPv4, or unknown operation
    IP_TRUNCATED = 7  # frame shorter than the IPv4 header
    IP_VERSION = 8
    IP_IHL = 9  # IHL < 5
    IP_CHECKSUM = 10
    IP_LENGTH = 11  # total length < header or > frame (RFC 1122 s3.2.1.x)
    IP_FRAGMENT = 12  # MF set or fragment offset non-zero: reassembly not supported
    IP_DST = 13  # not our address nor a broadcast address
    IP_SRC = 14  # broadcast, multicast, 0.0.0.0 or 127/8 source (RFC 1122 s3.2.1.3)
    IP_PROTO = 15  # neither ICMP nor TCP
    ICMP_MALFORMED = 16  # shorter than the ICMP header (an error: than 36 bytes)
    ICMP_CHECKSUM = 17
    ICMP_IGNORED = 18  # neither an echo request nor an error TCP acts on (source quench,
    #                    MUST-55, among them), or sent to a broadcast address
    TCP_MALFORMED = 19  # shorter than the fixed TCP header
    TCP_OFFSET = 20  # data offset < 5 or past the end of the segment
    TCP_CHECKSUM = 21
    TCP_OPTION = 22  # illegal option length (RFC 9293 MUST-7)
    TCP_BROADCAST = 23  # segment to a broadcast address (MUST-57; multicast is IP_DST)
    TCP_RST_CLOSED = 24  # RST for a closed port: never answered (RFC 9293 s3.10.7.1)
    TCP_NO_LISTENER = 25  # answered with RST (counted as a drop of the segment)
    # The MAC marked the frame bad on its last beat: FCS mismatch (IEEE 802.3 s3.2.9),
    # RX_ER, runt, too long or RX overflow (hdl/mac, ``EthernetMac.rx_error``).  Checked
    # before every other reason; numbered last so the other reasons keep their values.
    MAC_ERROR = 26
    # An ICMP error whose quoted datagram is not one this engine can have sent: not
    # IPv4 with a 20-byte header, not TCP, not from our address, or a later fragment.
    ICMP_QUOTE = 27


TcpOptions = data.StructLayout({
    "mss_valid": 1,
    "mss": 16,
    "wscale_valid": 1,
    "wscale": 4,
    "sack_permitted": 1,
    "ts_valid": 1,
    "ts_val": 32,
    "ts_ecr": 32,
    "sack_count": 3,
    "sack": data.ArrayLayout(data.StructLayout({"left": 32, "right": 32}), 4),
})


def rx_meta_layout(buffer_ptr_bits: int) -> data.StructLayout:
    """Layout of one parsed frame; ``buffer_ptr_bits`` sizes the frame buffer pointers."""
    return data.StructLayout({
        "verdict": Verdict,
        "reason": DropReason,
        "buf_start": buffer_ptr_bits,  # first word of the frame in the RX frame buffer
        "buf_end": buffer_ptr_bits,  # one past its last word: released after handling
        "frame_len": 16,
        "eth_src": 48,
        "ip_src": 32,
        "ip_dst": 32,
        "ip_ihl": 4,
        "ip_len": 16,
        "ip_ttl": 8,
        "ip_ecn": 2,  # the ECN field (RFC 3168 s5)
        "ip_csum": 16,
        "icmp_csum": 16,
        "icmp_type": 8,
        "icmp_code": 8,
        "icmp_mtu": 16,
        "arp_oper": 16,
        "arp_sha": 48,
        "arp_spa": 32,
        "arp_tpa": 32,
        "tcp_sport": 16,
        "tcp_dport": 16,
        "tcp_seq": 32,
        "tcp_ack": 32,
        "tcp_doff": 4,
        "tcp_flags": 8,
        "tcp_window": 16,
        "tcp_urgent": 16,
        "tcp_payload_len": 16,
        "tcp_options": TcpOptions,
    })
