"""Header builders for transmit: Ethernet II, IPv4 (RFC 791) and TCP (RFC 9293 s3.1).

Each returns the header as a list of byte-wide values, first byte on the wire first,
with its checksum computed by an adder tree (RFC 1071).  Callers register the result.
"""

from amaranth.hdl import Cat, Const, Value

from ..checksum import ones_sum, ones_sum_words
from ..proto import ipv4
from ..stream import be_bytes

__all__ = ["ethernet_header", "header_sum", "ipv4_header", "tcp_header", "tcp_pseudo_sum"]


def ethernet_header(dst, src, ethertype: int) -> list:
    return be_bytes(dst, 6) + be_bytes(src, 6) + be_bytes(Const(ethertype, 16), 2)


def ipv4_header(*, src, dst, protocol: int, total_length, ident, ttl=ipv4.DEFAULT_TTL,
                tos=0, dont_fragment: bool = True, with_checksum: bool = True) -> list:
    """A 20-byte IPv4 header without options.

    With ``with_checksum=False`` the checksum field is zero, for a caller that computes
    it in a later pipeline stage (see :func:`header_sum`).
    """
    head = (
        [Const(0x45, 8), Const(tos, 8) if isinstance(tos, int) else tos]
        + be_bytes(total_length, 2)
        + be_bytes(ident, 2)
        + be_bytes(Const(ipv4.FLAG_DF if dont_fragment else 0, 16), 2)
        + [Const(ttl, 8) if isinstance(ttl, int) else ttl, Const(protocol, 8)]
    )
    addresses = be_bytes(src, 4) + be_bytes(dst, 4)
    if not with_checksum:
        return head + [Const(0, 8)] * 2 + addresses
    checksum = ~ones_sum(head + [Const(0, 8)] * 2 + addresses)
    return head + be_bytes(checksum[:16], 2) + addresses


def tcp_pseudo_sum(src, dst, protocol: int, length):
    """Sum of the pseudo-header (RFC 9293 s3.1): addresses, protocol, TCP length."""
    return ones_sum_words([src[16:], src[:16], dst[16:], dst[:16], protocol, length])


def tcp_header(*, src, dst, sport, dport, seq, ack, flags, window, urgent=0,
               options: list = (), payload_len=0, payload_sum=0,
               with_checksum: bool = True) -> list:
    """A TCP header with ``options`` (a multiple of 4 bytes) and its checksum.

    ``payload_sum`` is the one's complement sum of the payload that will follow, so the
    checksum covers the whole segment; 0 for a bare segment.  With
    ``with_checksum=False`` the checksum field is zero (see :func:`header_sum`).
    """
    options = list(options)
    assert len(options) % 4 == 0
    header_len = 20 + len(options)
    head = (
        be_bytes(sport, 2) + be_bytes(dport, 2) + be_bytes(seq, 4) + be_bytes(ack, 4)
        + [Const((header_len // 4) << 4, 8), Cat(flags)[:8]]
        + be_bytes(window, 2)
    )
    tail = be_bytes(urgent, 2) + options
    if not with_checksum:
        return head + [Const(0, 8)] * 2 + tail
    pseudo = tcp_pseudo_sum(src, dst, ipv4.PROTO_TCP, Const(header_len, 16) + payload_len)
    total = ones_sum_words([ones_sum(head + tail), pseudo, payload_sum])
    checksum = ~total
    return head + be_bytes(checksum[:16], 2) + tail


def header_sum(byte_list, extra_words=()) -> Value:
    """Unfolded one's complement sum of a header's bytes plus ``extra_words`` (e.g. the
    pseudo-header): register it, then ``~fold(sum)`` is the checksum (RFC 1071)."""
    words = [Cat(byte_list[i + 1], byte_list[i]) for i in range(0, len(byte_list), 2)]
    return ones_sum_words(words + list(extra_words), folded=False)
