"""Frame arbiter: several frame sources merged fairly onto the one MAC TX stream."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_signature

__all__ = ["FrameArbiter"]


class FrameArbiter(wiring.Component):
    """Round-robin between ``n`` beat streams, one whole frame at a time.

    After a frame from source ``i`` ends, sources ``i+1, i+2, ...`` are looked at first,
    so no source can starve another.  A grant starts when a source's first beat is offered
    and lasts until its beat with ``last`` is taken.

    Ports
    -----
    i{k} : In(stream), for k in range(n)
    o : Out(stream)
    sent : Out(n)
        One-hot strobe: a frame from that source has been sent (for the counters).
    """

    def __init__(self, data_bytes: int, n: int):
        self._n = n
        members = {f"i{k}": In(beat_signature(data_bytes)) for k in range(n)}
        members["o"] = Out(beat_signature(data_bytes))
        members["sent"] = Out(n)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        inputs = [getattr(self, f"i{k}") for k in range(n)]
        grant = Signal(range(n))
        busy = Signal()
        last_grant = Signal(range(n), init=n - 1)

        # Pick the first requesting source after the previous grant.
        pick = Signal(range(n))
        any_valid = Signal()
        for offset in reversed(range(1, n + 1)):
            k_expr = [(k + offset) % n for k in range(n)]
            for k in range(n):
                with m.If((last_grant == k) & inputs[k_expr[k]].valid):
                    m.d.comb += [pick.eq(k_expr[k]), any_valid.eq(1)]

        current = Signal(range(n))
        with m.If(busy):
            m.d.comb += current.eq(grant)
        with m.Else():
            m.d.comb += current.eq(pick)
        active = busy | any_valid

        for k, src in enumerate(inputs):
            with m.If(active & (current == k)):
                m.d.comb += [
                    self.o.valid.eq(src.valid),
                    self.o.p.eq(src.p),
                    src.ready.eq(self.o.ready),
                ]
        # Once a beat is offered the grant holds, so the output never changes under a
        # stalled sink (AXI4-Stream: payload stable until the transfer).
        with m.If(self.o.valid):
            with m.If(self.o.ready & self.o.p.last):
                m.d.sync += [busy.eq(0), last_grant.eq(current)]
                for k in range(n):
                    with m.If(current == k):
                        m.d.comb += self.sent[k].eq(1)
            with m.Else():
                m.d.sync += [busy.eq(1), grant.eq(current)]
        return m
