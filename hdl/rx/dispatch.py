"""RX dispatch: each parsed frame to its handler, then its buffer words released."""

from amaranth.hdl import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .meta import DropReason, Verdict, rx_meta_layout

__all__ = ["RxDispatcher"]


class RxDispatcher(wiring.Component):
    """Routes :func:`rx_meta_layout` records by verdict, in order.

    A record is done when its handler takes it; a handler that reads the frame buffer
    (the ICMP echo) takes it only after the last read, so releasing the record's buffer
    words at that moment is always safe, and releases stay in frame order.

    Ports
    -----
    meta : In(stream)
    arp, icmp, tcp : Out(stream)
        ``icmp``: echo requests; ``tcp``: segments and the ICMP errors about them.
    release, release_ptr : Out
        To :class:`FrameBuffer`.
    dropped : Out, reason : Out
        Strobe and reason for a dropped frame.
    """

    def __init__(self, buffer_ptr_bits: int):
        layout = rx_meta_layout(buffer_ptr_bits)
        super().__init__({
            "meta": In(stream.Signature(layout)),
            "arp": Out(stream.Signature(layout)),
            "icmp": Out(stream.Signature(layout)),
            "tcp": Out(stream.Signature(layout)),
            "release": Out(1),
            "release_ptr": Out(buffer_ptr_bits),
            "dropped": Out(1),
            "reason": Out(DropReason),
        })

    def elaborate(self, platform):
        m = Module()
        verdict = self.meta.p.verdict
        for port, kinds in ((self.arp, (Verdict.ARP,)), (self.icmp, (Verdict.ICMP_ECHO,)),
                            (self.tcp, (Verdict.TCP, Verdict.ICMP_ERROR))):
            mine = Cat(verdict == kind for kind in kinds).any()
            m.d.comb += [port.p.eq(self.meta.p), port.valid.eq(self.meta.valid & mine)]
            with m.If(mine):
                m.d.comb += self.meta.ready.eq(port.ready)
        with m.If(verdict == Verdict.DROP):
            m.d.comb += [self.meta.ready.eq(1), self.dropped.eq(self.meta.valid)]
        m.d.comb += [
            self.reason.eq(self.meta.p.reason),
            self.release.eq(self.meta.valid & self.meta.ready),
            self.release_ptr.eq(self.meta.p.buf_end),
        ]
        return m
