"""Accepted payload from the RX frame buffer into a connection's RX ring.

RFC 9293 s3.10.7.4 ("Seventh, process the segment text"): once a segment is acceptable,
its text goes to the receive buffer at the position its sequence number gives.  The RX
ring of each connection is that buffer: sequence number ``s`` of connection ``c`` lives
at byte ``c * rx_ring_bytes + s % rx_ring_bytes``.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from .tcb import copy_layout

__all__ = ["RxCopier"]


class RxCopier(wiring.Component):
    """Copies ``length`` bytes of a frame, from byte ``offset`` on, to ``ring_pos`` on.

    No realignment: frame word ``k`` (frame bytes ``k*W .. k*W+W-1``, lane ``i`` holding
    frame byte ``k*W+i``) is written whole to the ring position of frame byte ``k*W``,
    ``ring_pos - offset + k*W``, with the byte enables of the bytes inside
    ``[offset, offset + length)``.  The :class:`LaneRing` write port takes ``W`` bytes at
    any byte address, so each word costs one write.  Only the words that hold copied
    bytes are read: ``offset // W`` to ``(offset + length - 1) // W``.

    Timing: a request of ``n`` words reads one word per cycle from the cycle ``copy.valid``
    is seen and writes each word the cycle after it was read; ``copy.ready`` is high in
    the cycle of the last write, so the transfer of the request is the end of the copy
    (the engine may release the frame from then on).  ``n + 1`` cycles per request,
    ``W`` bytes per cycle in the steady state; a request with ``length`` 0 is taken in
    the cycle it appears, without any access.

    Ports
    -----
    copy : In(stream)
        :func:`copy_layout`: ``buf_start`` (frame buffer word pointer of the frame),
        ``offset``, ``length``, ``ring_pos`` (sequence number of frame byte ``offset``) and
        ``conn``.  The payload must stay stable until the transfer (stream rule).
    rd_addr, rd_en : Out; rd_data : In
        Frame buffer read port: word pointer (with wrap bit); ``rd_data`` shows the word
        one cycle after ``rd_en``.
    wr_addr, wr_data, wr_en : Out
        RX ring write port (:class:`LaneRing` of ``connections * rx_ring_bytes`` bytes,
        parts of ``rx_ring_bytes``): byte ``i`` of ``wr_data`` goes to ``wr_addr + i``
        where bit ``i`` of ``wr_en`` is set.
    """

    def __init__(self, config: ToeConfig, buffer_ptr_bits: int):
        w = config.data_bytes
        if w & (w - 1):
            raise ValueError(f"data_bytes must be a power of two, not {w}")
        self._config = config
        self._ptr_bits = buffer_ptr_bits
        super().__init__({
            "copy": In(stream.Signature(copy_layout(config, buffer_ptr_bits))),
            "rd_addr": Out(buffer_ptr_bits),
            "rd_en": Out(1),
            "rd_data": In(8 * w),
            "wr_addr": Out((config.connections * config.rx_ring_bytes - 1).bit_length()),
            "wr_data": Out(8 * w),
            "wr_en": Out(w),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        w = cfg.data_bytes
        lane_bits = (w - 1).bit_length()
        ring_bits = (cfg.rx_ring_bytes - 1).bit_length()
        req = self.copy.p

        end = Signal(17)  # frame byte after the last one copied
        first_word = Signal(17)
        last_word = Signal(17)
        base = Signal(32)  # ring position of frame byte 0
        m.d.comb += [
            end.eq(req.offset + req.length),
            first_word.eq(req.offset >> lane_bits),
            last_word.eq((end - 1)[:17] >> lane_bits),
            base.eq(req.ring_pos - req.offset),
        ]

        active = Signal()  # ``word`` was read last cycle: rd_data holds it
        word = Signal(17)  # frame word being written

        # Byte enables of ``word``: the first word starts at lane offset % W, the last
        # one ends at lane (end - 1) % W; the words between are whole.
        enables = Signal(w)
        if lane_bits:
            head = req.offset[:lane_bits]
            tail = (end - 1)[:lane_bits]
            m.d.comb += enables.eq(Cat(
                ((word != first_word) | (lane >= head)) & ((word != last_word) | (lane <= tail))
                for lane in range(w)))
        else:
            m.d.comb += enables.eq(1)

        ring_pos = Signal(32)
        m.d.comb += [
            ring_pos.eq(base + (word << lane_bits)),
            self.wr_addr.eq(Cat(ring_pos[:ring_bits], req.conn)),
            self.wr_data.eq(self.rd_data),
        ]

        with m.If(~active):
            with m.If(self.copy.valid):
                with m.If(req.length == 0):
                    m.d.comb += self.copy.ready.eq(1)
                with m.Else():
                    m.d.comb += [self.rd_en.eq(1), self.rd_addr.eq(req.buf_start + first_word)]
                    m.d.sync += [active.eq(1), word.eq(first_word)]
        with m.Else():
            m.d.comb += self.wr_en.eq(enables)
            with m.If(word != last_word):
                m.d.comb += [self.rd_en.eq(1), self.rd_addr.eq(req.buf_start + word + 1)]
                m.d.sync += word.eq(word + 1)
            with m.Else():
                m.d.comb += self.copy.ready.eq(1)
                m.d.sync += active.eq(0)
        return m
