"""ICMP echo responder: RFC 792, RFC 1122 s3.2.2.6 (every host MUST answer echo)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checksum import ones_sum_words
from ..proto import icmp, ipv4
from ..rx.meta import rx_meta_layout
from ..stream import be_bytes, beat_signature, keep_for

__all__ = ["IcmpEcho"]


class IcmpEcho(wiring.Component):
    """Turns an echo request held in the RX frame buffer into the echo reply.

    The request is read back word by word and rewritten on the fly: MAC and IP addresses
    swapped, TTL set to 64, ICMP type 0, both checksums updated incrementally (RFC 1624
    eqn. 3).  The data is echoed exactly (RFC 1122 s3.2.2.6), IP options are returned as
    received, and Ethernet padding is not sent.  ``meta`` is taken when the last beat is
    sent, so the frame buffer is released only once it has been read.

    Ports
    -----
    meta : In(stream)
        The request's :func:`rx_meta_layout`.
    rd_addr, rd_en : Out, rd_data : In
        The frame buffer read port.
    mac_addr, ip_addr : In
    o : Out(stream)
        The reply frame.
    """

    def __init__(self, data_bytes: int, buffer_ptr_bits: int, max_frame_bytes: int,
                 ttl: int = ipv4.DEFAULT_TTL):
        self._w = data_bytes
        self._ttl = ttl
        self._max_beats = -(-max_frame_bytes // data_bytes)
        super().__init__({
            "meta": In(stream.Signature(rx_meta_layout(buffer_ptr_bits))),
            "rd_addr": Out(buffer_ptr_bits),
            "rd_en": Out(1),
            "rd_data": In(8 * data_bytes),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "o": Out(beat_signature(data_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._w
        req = self.meta.p

        ip_csum = Signal(16)
        icmp_csum = Signal(16)
        icmp_update = Signal(16)
        old_ttl_word = req.ip_ttl << 8 | ipv4.PROTO_ICMP
        new_ttl_word = self._ttl << 8 | ipv4.PROTO_ICMP
        m.d.comb += [
            ip_csum.eq(~ones_sum_words([~req.ip_csum, ~old_ttl_word[:16], new_ttl_word])),
            icmp_update.eq(~ones_sum_words([~req.icmp_csum, ~(icmp.TYPE_ECHO_REQUEST << 8)
                                            & 0xFFFF, icmp.TYPE_ECHO_REPLY << 8])),
            # Eqn. 3 gives 0x0000 whenever the rest of the reply sums to zero.  If the
            # reply is all zero bytes (identifier, sequence and data zero) only 0xFFFF
            # verifies; otherwise both do.  (The IPv4 header is never all zero.)
            icmp_csum.eq(Mux(icmp_update == 0, 0xFFFF, icmp_update)),
        ]

        fixed = {}  # frame offset -> byte of the reply
        for offset, byte in enumerate(
            be_bytes(req.eth_src, 6) + be_bytes(self.mac_addr, 6)
        ):
            fixed[offset] = byte
        fixed[14 + ipv4.TTL] = self._ttl
        for i, byte in enumerate(be_bytes(ip_csum, 2)):
            fixed[14 + ipv4.CHECKSUM + i] = byte
        for i, byte in enumerate(be_bytes(self.ip_addr, 4) + be_bytes(req.ip_src, 4)):
            fixed[14 + ipv4.SRC + i] = byte
        icmp_at = Signal(8)
        m.d.comb += icmp_at.eq(14 + (req.ip_ihl << 2))
        csum_bytes = be_bytes(icmp_csum, 2)

        addr = Signal.like(self.rd_addr)
        index = Signal(range(self._max_beats + 1))
        remaining = Signal(16)
        last = remaining <= w

        for lane in range(w):
            offset = Signal(range((self._max_beats + 1) * w), name=f"offset{lane}")
            m.d.comb += offset.eq(index * w + lane)
            out = self.o.p.data[8 * lane : 8 * lane + 8]
            m.d.comb += out.eq(self.rd_data[8 * lane : 8 * lane + 8])
            for position, byte in fixed.items():
                if position % w == lane:
                    with m.If(index == position // w):
                        m.d.comb += out.eq(byte)
            with m.If(offset == icmp_at + icmp.TYPE):
                m.d.comb += out.eq(icmp.TYPE_ECHO_REPLY)
            with m.If(offset == icmp_at + icmp.CHECKSUM):
                m.d.comb += out.eq(csum_bytes[0])
            with m.If(offset == icmp_at + icmp.CHECKSUM + 1):
                m.d.comb += out.eq(csum_bytes[1])
        m.d.comb += [
            self.o.p.last.eq(last),
            self.o.p.keep.eq(keep_for(remaining, w) if w > 1 else 1),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.meta.valid):
                    m.d.comb += [self.rd_addr.eq(req.buf_start), self.rd_en.eq(1)]
                    m.d.sync += [
                        addr.eq(req.buf_start + 1),
                        index.eq(0),
                        remaining.eq(14 + req.ip_len),
                    ]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    with m.If(last):
                        m.d.comb += self.meta.ready.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += [self.rd_addr.eq(addr), self.rd_en.eq(1)]
                        m.d.sync += [
                            addr.eq(addr + 1),
                            index.eq(index + 1),
                            remaining.eq(remaining - w),
                        ]
        return m
