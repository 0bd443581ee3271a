"""Received bytes from a connection's RX ring to the host's RX stream.

RFC 9293 s3.10.3 (RECEIVE): the data the user asked for is handed over from the receive
buffer; here the engine hands over at most the credit the host granted
(:mod:`hdl.host_if`), and the ring space is free again once the bytes have left.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from ..host_if import data_layout
from .tcb import delivered_layout, delivery_layout

__all__ = ["RxDelivery"]


class RxDelivery(wiring.Component):
    """Sends ``length`` bytes of a connection's RX ring, from sequence number ``pos`` on.

    The bytes leave as :func:`data_layout` beats of ``W`` bytes, lane 0 first; the final
    beat carries the rest (1..W bytes) and ``last``.  Beat ``j`` is one :class:`LaneRing`
    read of ``W`` bytes at the ring address of ``pos + j*W`` (any byte address, wrapping
    inside the connection's part).  After the last beat, one ``done`` message
    ``{conn, end = pos + length}`` (mod 2**32) reports the ring free up to ``end``; the
    next request is taken once it is transferred.

    Read latency without a skid buffer: ``o.p.data`` *is* the ring's ``rd_data``, which
    holds while ``rd_en`` is low, and the next read is issued only in a cycle where the
    output beat is empty or leaves (``~o.valid | o.ready``).  So ``o.valid`` is a register,
    one beat leaves per cycle while ``o.ready`` is high, and any ``o.ready`` pattern is
    safe.

    Timing: the request is taken and the first byte read in the cycle ``request.valid``
    is seen; with ``o.ready`` and ``done.ready`` high, a request of ``n`` beats takes
    ``n + 2`` cycles (``n`` beats, one ``done``, the first read of the next request).

    Ports
    -----
    request : In(stream)
        :func:`delivery_layout` ``{conn, pos, length}``, ``length`` >= 1.  Taken when the
        previous request's ``done`` has been transferred.
    rd_addr, rd_en : Out; rd_data : In
        RX ring read port (:class:`LaneRing` of ``connections * rx_ring_bytes`` bytes,
        parts of ``rx_ring_bytes``): ``rd_data`` byte ``i`` is ``ring[rd_addr + i]`` one
        cycle after ``rd_en``, and holds while ``rd_en`` is low.
    o : Out(stream)
        :func:`data_layout` beats to the host.
    done : Out(stream)
        :func:`delivered_layout` ``{conn, end}``, one per request.
    """

    def __init__(self, config: ToeConfig):
        w = config.data_bytes
        if w & (w - 1):
            raise ValueError(f"data_bytes must be a power of two, not {w}")
        self._config = config
        super().__init__({
            "request": In(stream.Signature(delivery_layout(config))),
            "rd_addr": Out((config.connections * config.rx_ring_bytes - 1).bit_length()),
            "rd_en": Out(1),
            "rd_data": In(8 * w),
            "o": Out(stream.Signature(data_layout(config))),
            "done": Out(stream.Signature(delivered_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        w = cfg.data_bytes
        ring_bits = (cfg.rx_ring_bytes - 1).bit_length()
        req = self.request.p

        conn = Signal(cfg.conn_bits)
        pos = Signal(32)  # sequence number of the next byte to read
        remaining = Signal(32)  # bytes not yet read
        end = Signal(32)
        out_valid = Signal()
        out_count = Signal(range(w + 1))
        out_last = Signal()
        idle = Signal()
        sending = Signal()

        # The read of this cycle: in IDLE the request's first beat, else the next beat.
        rd_conn = Signal(cfg.conn_bits)
        rd_pos = Signal(32)
        rd_rem = Signal(32)
        can_read = Signal()
        m.d.comb += [
            rd_conn.eq(Mux(idle, req.conn, conn)),
            rd_pos.eq(Mux(idle, req.pos, pos)),
            rd_rem.eq(Mux(idle, req.length, remaining)),
            can_read.eq(Mux(idle, self.request.valid, sending & (remaining != 0))),
            self.rd_en.eq(can_read & (~out_valid | self.o.ready)),
            self.rd_addr.eq(Cat(rd_pos[:ring_bits], rd_conn)),
        ]
        with m.If(self.rd_en):
            m.d.sync += [
                pos.eq(rd_pos + w),
                remaining.eq(Mux(rd_rem > w, rd_rem - w, 0)),
                out_valid.eq(1),
                out_count.eq(Mux(rd_rem > w, w, rd_rem)),
                out_last.eq(rd_rem <= w),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += out_valid.eq(0)

        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.p.conn.eq(conn),
            self.o.p.data.eq(self.rd_data),
            self.o.p.count.eq(out_count),
            self.o.p.last.eq(out_last),
            self.done.p.conn.eq(conn),
            self.done.p.end.eq(end),
        ]

        with m.FSM(name="delivery"):
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1), self.request.ready.eq(1)]
                with m.If(self.request.valid):
                    m.d.sync += [conn.eq(req.conn), end.eq(req.pos + req.length)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += sending.eq(1)
                with m.If(self.o.valid & self.o.ready & self.o.p.last):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.valid.eq(1)
                with m.If(self.done.ready):
                    m.next = "IDLE"
        return m
