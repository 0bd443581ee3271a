"""TCP segment transmitter: RFC 9293 s3.1 segments with payload from a connection's TX ring."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checksum import fold, ones_sum_words
from ..config import ToeConfig
from ..proto import ethernet, ipv4, tcp
from ..stream import be, be_bytes, beat_signature, keep_for
from ..tx.headers import ethernet_header, header_sum, ipv4_header, tcp_header
from .tcb import segment_layout

__all__ = ["TcpTransmitter", "MSS_OPTION_BYTES"]

MSS_OPTION_BYTES = 4  # kind 2, length 4, 16-bit MSS (RFC 9293 s3.2)
IP_AT = ethernet.HEADER_BYTES
TCP_AT = IP_AT + ipv4.MIN_HEADER_BYTES
HEADER_BYTES = TCP_AT + tcp.MIN_HEADER_BYTES  # 54: no options
MAX_HEADER_BYTES = HEADER_BYTES + MSS_OPTION_BYTES  # 58: with the MSS option


class TcpTransmitter(wiring.Component):
    """Builds an Ethernet/IPv4/TCP frame for a segment request and sends it as beats.

    The frame is an Ethernet II header (``eth_dst``, ``mac_addr``, type IPv4), an IPv4
    header (RFC 791: version 4, IHL 5, TOS 0, the total length, an identification that
    counts frames, DF set, TTL 64, protocol 6, the header checksum), a TCP header
    (RFC 9293 s3.1: ports, sequence and acknowledgment numbers, data offset, flags,
    window, checksum, urgent pointer 0) and ``payload_len`` bytes of the connection's TX
    ring.  With ``mss_option`` the header carries the MSS option (kind 2, length 4,
    ``mss``; data offset 6) for SYN and SYN-ACK: RFC 9293 s3.7.1 MUST-14 (send the MSS
    option), SHLD-5 (in every SYN when the MSS is not the MUST-15 default of 536).  No
    Ethernet padding is added: the MAC pads.

    The TCP checksum (RFC 9293 s3.1, RFC 1071) covers the pseudo-header, the header and
    the payload, and goes out before the payload, so the ring is read twice:

    1. Pass 1 reads the payload ``W`` bytes a cycle (``ceil(L / W)`` reads) and adds it
       as big-endian 16-bit words from payload byte 0 (the TCP header has an even
       length), in a pipeline: masked bytes, adder tree, accumulator.  Meanwhile the
       header is built in registers and summed.  A zero-length payload skips the pass.
    2. Pass 2 emits the frame one beat a cycle.  Beat ``k`` is read from ring address
       ``payload start - H + k * W`` (``H`` = 54 or 58, the header length), so each
       payload byte of the beat arrives in its own lane; lanes at frame positions below
       ``H`` take the header registers instead.  The read data waits in the ring's read
       register while the output register is stalled (``rd_data`` holds while ``rd_en``
       is low), so backpressure costs no bandwidth.

With ``o.ready`` high, the first beat leaves ``ceil(L / W) + 9`` cycles after the request
is taken (7 for ``L = 0``: pass 1, its 3-stage pipeline, the sum, two fold stages and
the read latency), then ``ceil((H + L) / W)`` beats follow back to back; the next
request is taken while the last beat is offered.

    The request is latched and taken when the transmitter is idle.  Payload byte ``j``
    lives at ring address ``conn * tx_ring_bytes + (payload_pos + j) % tx_ring_bytes``.

    Ports
    -----
    segment : In(stream)
        A :func:`segment_layout` request.
    mac_addr, ip_addr : In
        Our addresses: the frame's source.
    rd_addr, rd_en : Out; rd_data : In
        The TX ring's read port (:class:`hdl.tcp.lane_ring.LaneRing`, one cycle latency).
    o : Out(stream)
        The frame as beats (data, keep, last).
    sent : Out
        Strobe: the last beat of a frame was transferred.
    """

    def __init__(self, config: ToeConfig):
        w = config.data_bytes
        if w & (w - 1):
            raise ValueError(f"data_bytes must be a power of two, not {w}")
        if config.tx_ring_bytes < w:
            raise ValueError("tx_ring_bytes must be at least data_bytes")
        self._config = config
        self._w = w
        self.ring_addr_bits = (config.connections * config.tx_ring_bytes - 1).bit_length()
        super().__init__({
            "segment": In(stream.Signature(segment_layout(config))),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "rd_addr": Out(self.ring_addr_bits),
            "rd_en": Out(1),
            "rd_data": In(8 * w),
            "o": Out(beat_signature(w)),
            "sent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        w = self._w
        lane_bits = (w - 1).bit_length()
        offset_bits = (cfg.tx_ring_bytes - 1).bit_length()
        header_slots = -(-MAX_HEADER_BYTES // w) * w  # header register, whole beats
        req = self.segment.p

        def lane(value, i):
            return value[8 * i : 8 * i + 8]

        # The request's fields that outlive the header build.
        conn = Signal(cfg.conn_bits)
        pos = Signal(offset_bits)  # ring offset of payload byte 0
        payload_len = Signal(16)
        has_option = Signal()
        tcp_len = Signal(16)  # TCP header + payload, for the pseudo-header
        ident = Signal(16)

        # The frame header (first byte on the wire first) and its sums.
        hdr = [Signal(8, name=f"hdr{i}") for i in range(header_slots)]
        ip_sum = Signal(20)  # 10 words
        tcp_sum = Signal(21)  # 12 header words (with the option) + 6 pseudo-header words
        total = Signal(33)
        total_folded = Signal(18)

        # Pass 1: read position, bytes still to read and the summing pipeline.
        p1_offset = Signal(offset_bits)
        p1_left = Signal(16)
        p1_odd = Signal()  # W = 1: the byte read is at an odd payload offset
        p1_mask = Signal(w)  # lanes of rd_data that are payload of pass 1
        p1_mask_odd = Signal()
        p1_words = [Signal(16, name=f"p1_word{i}") for i in range(max(1, w // 2))]
        p1_beat_sum = Signal(16 + max(0, lane_bits - 1))
        p1_acc = Signal(32)
        p1_valid = Signal(3)  # rd_data, p1_words, p1_beat_sum hold a pass-1 read

        # Pass 2: read position, reads to issue, bytes still to emit.
        p2_offset = Signal(offset_bits)
        p2_reads = Signal(16)
        p2_left = Signal(16)
        p2_header = Signal(header_slots)  # bit i: hdr[i] is a header byte of the beat
        rd_valid = Signal()  # rd_data holds a pass-2 beat not yet in the output register

        # Pass 1 reader: runs whenever bytes are left, from the cycle after the request.
        p1_issue = Signal()
        m.d.comb += p1_issue.eq(p1_left != 0)
        p1_last = p1_left[lane_bits:] == 0  # fewer than W bytes left (or exactly 0)
        with m.If(p1_issue):
            m.d.sync += [
                p1_offset.eq(p1_offset + w),
                p1_left.eq(Mux(p1_last, 0, p1_left - w)),
                p1_odd.eq(~p1_odd),
                p1_mask.eq(Mux(p1_last, keep_for(p1_left[:lane_bits], w), (1 << w) - 1)
                           if w > 1 else 1),
                p1_mask_odd.eq(p1_odd),
            ]
        with m.Else():
            m.d.sync += p1_mask.eq(0)
        m.d.sync += p1_valid.eq(Cat(p1_issue, p1_valid[:2]))
        # Masked bytes as big-endian words; payload byte j pairs with j ^ 1.
        data_bytes = [lane(self.rd_data, i) & p1_mask[i].replicate(8) for i in range(w)]
        if w == 1:
            m.d.sync += p1_words[0].eq(
                Mux(p1_mask_odd, Cat(data_bytes[0], Const(0, 8)), Cat(Const(0, 8), data_bytes[0])))
        else:
            for i, word in enumerate(p1_words):
                m.d.sync += word.eq(be(data_bytes[2 * i : 2 * i + 2]))
        m.d.sync += [
            p1_beat_sum.eq(ones_sum_words(p1_words, folded=False)),
            p1_acc.eq(p1_acc + p1_beat_sum),
        ]
        p1_done = (p1_left == 0) & (p1_valid == 0)

        # Output register and pass 2 handshake.
        load = Signal()  # rd_data goes to the output register this cycle
        p2_issue = Signal()
        m.d.comb += [
            load.eq(rd_valid & (~self.o.valid | self.o.ready)),
            self.sent.eq(self.o.valid & self.o.ready & self.o.p.last),
            self.rd_en.eq(p1_issue | p2_issue),
            self.rd_addr.eq(Cat(Mux(p1_issue, p1_offset, p2_offset), conn)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(p2_issue):
            m.d.sync += [
                rd_valid.eq(1),
                p2_offset.eq(p2_offset + w),
                p2_reads.eq(p2_reads - 1),
            ]
        with m.Elif(load):
            m.d.sync += rd_valid.eq(0)
        p2_last = p2_left <= w
        with m.If(load):
            for i in range(w):
                m.d.sync += lane(self.o.p.data, i).eq(
                    Mux(p2_header[i], hdr[i], lane(self.rd_data, i)))
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.p.last.eq(p2_last),
                self.o.p.keep.eq(Mux(p2_last, keep_for(p2_left[:lane_bits], w), (1 << w) - 1)
                                 if w > 1 else 1),
                p2_left.eq(p2_left - w),
                p2_header.eq(p2_header >> w),
            ]
            # The next beat's header bytes move to the low lanes.
            for i in range(header_slots):
                m.d.sync += hdr[i].eq(hdr[i + w] if i + w < header_slots else 0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.segment.ready.eq(1)
                with m.If(self.segment.valid):
                    option = [Const(tcp.OPT_MSS, 8), Const(MSS_OPTION_BYTES, 8)]
                    option += be_bytes(req.mss, 2)
                    length = (Const(tcp.MIN_HEADER_BYTES, 16) + req.payload_len
                              + Mux(req.mss_option, MSS_OPTION_BYTES, 0))[:16]
                    frame = (
                        ethernet_header(req.eth_dst, self.mac_addr, ethernet.ETHERTYPE_IPV4)
                        + ipv4_header(src=self.ip_addr, dst=req.ip_dst,
                                      protocol=ipv4.PROTO_TCP,
                                      total_length=(length + ipv4.MIN_HEADER_BYTES)[:16],
                                      ident=ident, with_checksum=False)
                        + tcp_header(src=self.ip_addr, dst=req.ip_dst, sport=req.sport,
                                     dport=req.dport, seq=req.seq, ack=req.ack,
                                     flags=req.flags, window=req.window,
                                     options=option, with_checksum=False)
                    )
                    assert len(frame) == MAX_HEADER_BYTES
                    # Data offset 5 or 6 words; without the option its bytes are zero so
                    # the header sum leaves them out.
                    frame[TCP_AT + tcp.DATA_OFFSET] = Mux(req.mss_option, 0x60, 0x50)
                    for i in range(HEADER_BYTES, MAX_HEADER_BYTES):
                        frame[i] = Mux(req.mss_option, frame[i], 0)
                    for i, byte in enumerate(frame):
                        m.d.sync += hdr[i].eq(byte)
                    m.d.sync += [
                        conn.eq(req.conn),
                        pos.eq(req.payload_pos[:offset_bits]),
                        payload_len.eq(req.payload_len),
                        has_option.eq(req.mss_option),
                        tcp_len.eq(length),
                        ident.eq(ident + 1),
                        p1_offset.eq(req.payload_pos[:offset_bits]),
                        p1_left.eq(req.payload_len),
                        p1_odd.eq(0),
                        p1_acc.eq(0),
                    ]
                    m.next = "SUM"
            with m.State("SUM"):
                # Header sums, unfolded (RFC 1071); the pseudo-header reuses the address
                # bytes of the IPv4 header.
                addresses = hdr[IP_AT + ipv4.SRC : IP_AT + ipv4.DST + 4]
                pseudo = [be(addresses[i : i + 2]) for i in range(0, 8, 2)]
                m.d.sync += [
                    ip_sum.eq(header_sum(hdr[IP_AT:TCP_AT])),
                    tcp_sum.eq(header_sum(hdr[TCP_AT:MAX_HEADER_BYTES],
                                          pseudo + [Const(ipv4.PROTO_TCP, 16), tcp_len])),
                ]
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(p1_done):
                    m.d.sync += total.eq(tcp_sum + p1_acc)
                    m.next = "FOLD"
            with m.State("FOLD"):
                m.d.sync += total_folded.eq(total[:16] + total[16:])
                m.next = "CHECKSUM"
            with m.State("CHECKSUM"):
                for offset, value in ((IP_AT + ipv4.CHECKSUM, ~fold(ip_sum)),
                                      (TCP_AT + tcp.CHECKSUM, ~fold(total_folded))):
                    m.d.sync += [hdr[offset].eq(value[8:16]), hdr[offset + 1].eq(value[:8])]
                header_len = Mux(has_option, MAX_HEADER_BYTES, HEADER_BYTES)
                frame_len = (payload_len + header_len)[:16]
                m.d.sync += [
                    p2_offset.eq(pos - header_len),
                    p2_reads.eq((frame_len + (w - 1))[lane_bits:]),
                    p2_left.eq(frame_len),
                    p2_header.eq(Mux(has_option, (1 << MAX_HEADER_BYTES) - 1,
                                     (1 << HEADER_BYTES) - 1)),
                ]
                m.next = "SEND"
            with m.State("SEND"):
                # A read is issued when its data will have room: rd_data is free or goes
                # to the output register this cycle.
                m.d.comb += p2_issue.eq((p2_reads != 0) & (~rd_valid | load))
                with m.If(load & p2_last):
                    m.next = "IDLE"
        return m
