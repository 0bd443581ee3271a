"""TCP segment transmitter: RFC 9293 s3.1 segments, with their options, and payload from a
connection's TX ring."""

from functools import reduce
from operator import or_

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checksum import fold, ones_sum_words
from ..config import ToeConfig
from ..proto import ethernet, ipv4, tcp
from ..stream import be, be_bytes, beat_signature, keep_for
from ..tx.headers import ethernet_header, header_sum, ipv4_header, tcp_header
from .tcb import segment_layout

__all__ = ["TcpTransmitter", "MAX_HEADER_BYTES"]

IP_AT = ethernet.HEADER_BYTES
TCP_AT = IP_AT + ipv4.MIN_HEADER_BYTES
HEADER_BYTES = TCP_AT + tcp.MIN_HEADER_BYTES  # 54: no options
OPTION_WORDS = tcp.MAX_OPTION_BYTES // 4  # 10
MAX_HEADER_BYTES = HEADER_BYTES + tcp.MAX_OPTION_BYTES  # 94: 40 bytes of options


def option_candidates(req):
    """The option words a request can carry, as ``(bytes, present, position)``, and the
    number of option words it sends (0..10).

    ``bytes``: the word's 4 bytes, first on the wire first; ``present``: the word is
    sent; ``position(syn, ts, ws)``: its option word index (0..9) for the request bits
    ``syn_options``, ``ts_on`` and ``wscale_on``, or ``None`` where it is never present.
    The order is that of :func:`hdl.proto.tcp.option_bytes`.
    """
    syn, ts, count = req.syn_options, req.ts_on, req.sack_count
    fit = Mux(ts, 3, tcp.MAX_SACK_BLOCKS)  # SACK blocks beside the timestamps or not
    blocks = Mux(count > fit, fit, count)[:3]  # SACK blocks sent
    sack_len = Cat(Const(2, 3), blocks, Const(0, 2))  # 2 + 8n
    nop = tcp.OPT_NOP
    words = [
        (be_bytes(Cat(req.mss, Const(4, 8), Const(tcp.OPT_MSS, 8)), 4), syn,
         lambda s, t, w: 0 if s else None),
    ]
    ts_words = ([nop, nop, tcp.OPT_TIMESTAMPS, 10], be_bytes(req.ts_val, 4),
                be_bytes(req.ts_ecr, 4))
    for j, word in enumerate(ts_words):
        words.append((word, ts, lambda s, t, w, j=j: s + j if t else None))
    words += [
        ([nop, tcp.OPT_WSCALE, 3, Cat(req.wscale, Const(0, 4))], syn & req.wscale_on,
         lambda s, t, w: 1 + 3 * t if s and w else None),
        ([nop, nop, tcp.OPT_SACK_PERMITTED, 2], syn & req.sack_permitted,
         lambda s, t, w: 1 + 3 * t + w if s else None),
        ([nop, nop, tcp.OPT_SACK, sack_len], ~syn & (count != 0),
         lambda s, t, w: None if s else 3 * t),
    ]
    for k in range(tcp.MAX_SACK_BLOCKS):
        present = ~syn & (count > k) & (~ts if k == tcp.MAX_SACK_BLOCKS - 1 else 1)
        for h, edge in enumerate((req.sack[k].left, req.sack[k].right)):
            words.append((be_bytes(edge, 4), present, lambda s, t, w, k=k, h=h:
                          None if s or k >= tcp.sack_blocks_that_fit(t)
                          else 3 * t + 1 + 2 * k + h))
    count_words = Mux(syn, 1 + Mux(ts, 3, 0) + req.wscale_on + req.sack_permitted,
                      Mux(ts, 3, 0) + Mux(count != 0, 1 + 2 * blocks, 0))[:4]
    return words, count_words


def place_options(req):
    """The 10 option words of the header (40 bytes, zero past the last option) and the
    number of words in use: each output word is an AND-OR choice among the few candidate
    words that can land there (3, 5, 4, 3, 4, 3, 2, 2, 2, 1 for words 0..9), selected by
    their presence and ``syn_options``, ``ts_on`` and ``wscale_on`` (the only bits the
    positions depend on)."""
    candidates, count_words = option_candidates(req)
    code = Cat(req.wscale_on, req.ts_on, req.syn_options)  # matched as "syn ts ws"
    combos = [(s, t, w) for s in (0, 1) for t in (0, 1) for w in (0, 1)]
    out = []
    for i in range(OPTION_WORDS):
        choices = []
        for word, present, position in candidates:
            hits = [f"{s}{t}{w}" for s, t, w in combos if position(s, t, w) == i]
            if hits:
                select = (present & code.matches(*hits)).replicate(32)
                choices.append(be([Const(b, 8) if isinstance(b, int) else b
                                   for b in word]) & select)
        out += be_bytes(reduce(or_, choices), 4)
    for _, _, position in candidates:
        assert all(position(*c) is None or 0 <= position(*c) < OPTION_WORDS
                   for c in combos)
    return out, count_words


class TcpTransmitter(wiring.Component):
    """Builds an Ethernet/IPv4/TCP frame for a segment request and sends it as beats.

    The frame is an Ethernet II header (``eth_dst``, ``mac_addr``, type IPv4), an IPv4
    header (RFC 791: version 4, IHL 5, TOS with the ECN field ``ecn`` (RFC 3168 s5)
    and the DSCP ``dscp``, TTL ``ttl``, the total length, an identification that
    counts frames, DF set, TTL 64, protocol 6, the header checksum), a TCP header
    (RFC 9293 s3.1: ports, sequence and acknowledgment numbers, data offset 5 + option
    words, flags, window, checksum, urgent pointer 0), the options, and ``payload_len``
    bytes of the connection's TX ring.  No Ethernet padding is added: the MAC pads.

    Options (:func:`hdl.proto.tcp.option_bytes` is the byte-exact reference) are whole
    4-byte words, NOP-padded so each starts word-aligned, at most 40 bytes:

    - ``syn_options`` (SYN, SYN-ACK): MSS ``mss`` (kind 2, length 4; RFC 9293 s3.2
      MUST-14, SHLD-5), then as asked timestamps (``ts_on``: NOP NOP 8 10 TSval TSecr,
      RFC 7323 s3), window scale (``wscale_on``: NOP 3 3 ``wscale``, RFC 7323 s2) and
      SACK-permitted (``sack_permitted``: NOP NOP 4 2, RFC 2018 s2);
    - other segments: timestamps if ``ts_on`` (RFC 7323 s3.2: in every segment once
      negotiated), then if ``sack_count`` != 0 the SACK option (NOP NOP 5 2+8n, RFC 2018
      s3) with the first n = min(``sack_count``, 3 with timestamps else 4) blocks.

    Each option word of the header is chosen among the few candidate words that can
    land there; the positions depend only on ``syn_options``, ``ts_on`` and
    ``wscale_on`` (:func:`place_options`).  Absent words are zero, so the header sum
    covers all 10 option words.  The header is ``H = 54 + 4 * words`` bytes (54..94).

    The TCP checksum (RFC 9293 s3.1, RFC 1071) covers the pseudo-header, the header and
    the payload, and goes out before the payload, so the ring is read twice:

    1. Pass 1 reads the payload ``W`` bytes a cycle (``ceil(L / W)`` reads) and adds it
       as big-endian 16-bit words from payload byte 0 (the TCP header has an even
       length), in a pipeline: masked bytes, adder tree, accumulator.  Meanwhile the
       header is built in registers and summed in two steps: the fixed header with the
       pseudo-header (16 words), the option words (20) and the IPv4 header (10) in
       parallel adder trees, then the two TCP sums.  A zero-length payload skips the
       pass.
    2. Pass 2 emits the frame one beat a cycle.  Beat ``k`` is read from ring address
       ``payload start - H + k * W``, so each payload byte of the beat arrives in its
       own lane; lanes at frame positions below ``H`` take the header registers
       instead (``hdr[]``, shifted down ``W`` bytes a beat).  The read data waits in the
       ring's read register while the output register is stalled (``rd_data`` holds
       while ``rd_en`` is low), so backpressure costs no bandwidth.

    With ``o.ready`` high, the first beat leaves ``ceil(L / W) + 9`` cycles after the
    request is taken (pass 1's reads, its 3-stage pipeline into the accumulator, the
    final sum, two fold stages, the checksum write, the read and the output register),
    or 8 for ``L = 0`` (the two header-sum steps, then the same); measured by
    tests/test_tcp_transmitter_unit.py for every width and option combination.  Then
    ``ceil((H + L) / W)`` beats follow back to back; the next request is taken while the
    last beat is offered.

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
        option_words = Signal(4)  # 0..10
        tcp_len = Signal(16)  # TCP header + payload, for the pseudo-header
        frame_len = Signal(16)
        ident = Signal(16)

        # The frame header (first byte on the wire first) and its sums.
        hdr = [Signal(8, name=f"hdr{i}") for i in range(header_slots)]
        ip_sum = Signal(20)  # 10 words
        base_sum = Signal(20)  # 10 fixed TCP header words + 6 pseudo-header words
        opt_sum = Signal(21)  # 20 option words
        tcp_sum = Signal(22)
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
                    options, words = place_options(req)
                    option_len = Cat(Const(0, 2), words)  # bytes
                    length = (req.payload_len + (tcp.MIN_HEADER_BYTES + option_len))[:16]
                    ip_len = (req.payload_len + (TCP_AT - IP_AT + tcp.MIN_HEADER_BYTES
                                                 + option_len))[:16]
                    frame = (
                        ethernet_header(req.eth_dst, self.mac_addr, ethernet.ETHERTYPE_IPV4)
                        + ipv4_header(src=self.ip_addr, dst=req.ip_dst,
                                      protocol=ipv4.PROTO_TCP, total_length=ip_len,
                                      ident=ident, tos=Cat(req.ecn, req.dscp),
                                      ttl=req.ttl,
                                      with_checksum=False)
                        + tcp_header(src=self.ip_addr, dst=req.ip_dst, sport=req.sport,
                                     dport=req.dport, seq=req.seq, ack=req.ack,
                                     flags=req.flags, window=req.window,
                                     options=options, with_checksum=False)
                    )
                    assert len(frame) == MAX_HEADER_BYTES
                    frame[TCP_AT + tcp.DATA_OFFSET] = Cat(Const(0, 4), (words + 5)[:4])
                    for i, byte in enumerate(frame):
                        m.d.sync += hdr[i].eq(byte)
                    m.d.sync += [
                        conn.eq(req.conn),
                        pos.eq(req.payload_pos[:offset_bits]),
                        option_words.eq(words),
                        tcp_len.eq(length),
                        ident.eq(ident + 1),
                        p1_offset.eq(req.payload_pos[:offset_bits]),
                        p1_left.eq(req.payload_len),
                        p1_odd.eq(0),
                        p1_acc.eq(0),
                    ]
                    m.next = "SUM"
            with m.State("SUM"):
                # Header sums, unfolded (RFC 1071), in three parallel trees; the
                # pseudo-header reuses the address bytes of the IPv4 header.
                addresses = hdr[IP_AT + ipv4.SRC : IP_AT + ipv4.DST + 4]
                pseudo = [be(addresses[i : i + 2]) for i in range(0, 8, 2)]
                header_len = HEADER_BYTES + Cat(Const(0, 2), option_words)
                m.d.sync += [
                    ip_sum.eq(header_sum(hdr[IP_AT:TCP_AT])),
                    base_sum.eq(header_sum(hdr[TCP_AT:HEADER_BYTES],
                                           pseudo + [Const(ipv4.PROTO_TCP, 16), tcp_len])),
                    opt_sum.eq(header_sum(hdr[HEADER_BYTES:MAX_HEADER_BYTES])),
                    frame_len.eq(tcp_len + TCP_AT),
                    p2_offset.eq(pos - header_len),
                ]
                m.next = "SUM2"
            with m.State("SUM2"):
                # Bit i of the header mask: frame byte i is a header byte (i < H).
                header_mask = Cat(
                    Const((1 << HEADER_BYTES) - 1, HEADER_BYTES),
                    *[(option_words > j).replicate(4) for j in range(OPTION_WORDS)])
                m.d.sync += [
                    tcp_sum.eq(base_sum + opt_sum),
                    p2_reads.eq((frame_len + (w - 1))[lane_bits:]),
                    p2_left.eq(frame_len),
                    p2_header.eq(header_mask),
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
                m.next = "SEND"
            with m.State("SEND"):
                # A read is issued when its data will have room: rd_data is free or goes
                # to the output register this cycle.
                m.d.comb += p2_issue.eq((p2_reads != 0) & (~rd_valid | load))
                with m.If(load & p2_last):
                    m.next = "IDLE"
        return m
