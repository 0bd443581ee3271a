"""RST for segments that reach no connection: RFC 9293 s3.10.7.1 (state CLOSED)."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checksum import fold
from ..proto import ethernet, ipv4, tcp
from ..rx.meta import rx_meta_layout
from ..stream import be, beat_signature
from ..tx.headers import ethernet_header, header_sum, ipv4_header, tcp_header
from ..tx.serializer import FrameSerializer

__all__ = ["TcpReset", "RST_FRAME_BYTES"]

RST_FRAME_BYTES = ethernet.HEADER_BYTES + ipv4.MIN_HEADER_BYTES + tcp.MIN_HEADER_BYTES
IP_AT = ethernet.HEADER_BYTES
TCP_AT = IP_AT + ipv4.MIN_HEADER_BYTES


class TcpReset(wiring.Component):
    """Answers a segment for a closed port with a reset, by the RFC 9293 rule.

    "If the state is CLOSED ... An incoming segment containing a RST is discarded.  An
    incoming segment not containing a RST causes a RST to be sent in response.  If the
    ACK bit is off, sequence number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
    <CTL=RST,ACK>.  If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>."  SEG.LEN counts SYN
    and FIN.  The reset goes back to the sender's MAC; its IPv4 header has DF set,
    TTL 64 and a running identification.

    Ports
    -----
    meta : In(stream)
        The segment's :func:`rx_meta_layout` (a valid TCP segment).
    mac_addr, ip_addr : In
    o : Out(stream)
    ignored : Out
        Strobe: the segment carried RST and was discarded.
    """

    def __init__(self, data_bytes: int, buffer_ptr_bits: int, ttl: int = ipv4.DEFAULT_TTL,
                 dscp: int = 0):
        self._w = data_bytes
        self._ttl, self._tos = ttl, dscp << 2
        super().__init__({
            "meta": In(stream.Signature(rx_meta_layout(buffer_ptr_bits))),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "o": Out(beat_signature(data_bytes)),
            "ignored": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.serializer = ser = FrameSerializer(self._w, RST_FRAME_BYTES)
        wiring.connect(m, wiring.flipped(self.o), ser.o)

        seg = self.meta.p
        eth_dst = Signal(48)
        ip_dst = Signal(32)
        sport = Signal(16)
        dport = Signal(16)
        seq = Signal(32)
        ack = Signal(32)
        flags = Signal(8)
        ident = Signal(16)
        out = [ser.frame.p.bytes[i] for i in range(RST_FRAME_BYTES)]
        ip_sum = Signal(32)
        tcp_sum = Signal(32)

        seg_len = (seg.tcp_payload_len + (seg.tcp_flags & tcp.SYN != 0)
                   + (seg.tcp_flags & tcp.FIN != 0))
        has_ack = (seg.tcp_flags & tcp.ACK_FLAG) != 0
        has_rst = (seg.tcp_flags & tcp.RST) != 0

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.meta.ready.eq(1)
                with m.If(self.meta.valid):
                    with m.If(has_rst):
                        m.d.comb += self.ignored.eq(1)
                    with m.Else():
                        m.d.sync += [
                            eth_dst.eq(seg.eth_src), ip_dst.eq(seg.ip_src),
                            sport.eq(seg.tcp_dport), dport.eq(seg.tcp_sport),
                        ]
                        with m.If(has_ack):
                            m.d.sync += [seq.eq(seg.tcp_ack), ack.eq(0), flags.eq(tcp.RST)]
                        with m.Else():
                            m.d.sync += [
                                seq.eq(0),
                                ack.eq(seg.tcp_seq + seg_len),
                                flags.eq(tcp.RST | tcp.ACK_FLAG),
                            ]
                        m.next = "BUILD"
            with m.State("BUILD"):
                # Three stages keep the adder trees off the header's critical path:
                # header bytes, then the unfolded sums, then the folded checksums.
                frame = (
                    ethernet_header(eth_dst, self.mac_addr, ethernet.ETHERTYPE_IPV4)
                    + ipv4_header(src=self.ip_addr, dst=ip_dst, protocol=ipv4.PROTO_TCP,
                                  total_length=Const(40, 16), ident=ident,
                                  ttl=self._ttl, tos=self._tos, with_checksum=False)
                    + tcp_header(src=self.ip_addr, dst=ip_dst, sport=sport, dport=dport,
                                 seq=seq, ack=ack, flags=flags, window=Const(0, 16),
                                 with_checksum=False)
                )
                assert len(frame) == RST_FRAME_BYTES
                for i, byte in enumerate(frame):
                    m.d.sync += out[i].eq(byte)
                m.d.sync += [ser.frame.p.length.eq(RST_FRAME_BYTES), ident.eq(ident + 1)]
                m.next = "SUM"
            with m.State("SUM"):
                addresses = out[IP_AT + ipv4.SRC : IP_AT + ipv4.DST + 4]
                pseudo = [be(addresses[i : i + 2]) for i in range(0, 8, 2)]
                m.d.sync += [
                    ip_sum.eq(header_sum(out[IP_AT:TCP_AT])),
                    tcp_sum.eq(header_sum(out[TCP_AT:], pseudo + [
                        Const(ipv4.PROTO_TCP, 16), Const(tcp.MIN_HEADER_BYTES, 16)])),
                ]
                m.next = "FOLD"
            with m.State("FOLD"):
                for offset, total in ((IP_AT + ipv4.CHECKSUM, ip_sum),
                                      (TCP_AT + tcp.CHECKSUM, tcp_sum)):
                    checksum = ~fold(total)
                    m.d.sync += [out[offset].eq(checksum[8:16]), out[offset + 1].eq(checksum[:8])]
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += ser.frame.valid.eq(1)
                with m.If(ser.frame.ready):
                    m.next = "IDLE"
        return m
