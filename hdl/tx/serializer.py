"""Header-only frame serializer: a byte array in, stream beats out, at any width."""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_signature, keep_for

__all__ = ["FrameSerializer", "frame_layout"]


def frame_layout(max_bytes: int) -> data.StructLayout:
    return data.StructLayout({
        "bytes": data.ArrayLayout(8, max_bytes),
        "length": range(max_bytes + 1),
    })


class FrameSerializer(wiring.Component):
    """Sends a frame held entirely in registers (ARP, bare TCP segments) as beats.

    Lane ``i`` of beat ``k`` carries byte ``k * W + i``; the last beat keeps
    ``length - k * W`` lanes.  The input is taken when the last beat is sent.

    Ports
    -----
    frame : In(stream)
        ``bytes`` (first byte on the wire first) and ``length`` (1..max_bytes).
    o : Out(stream)
        The frame as beats (data, keep, last).
    """

    def __init__(self, data_bytes: int, max_bytes: int):
        self._w = data_bytes
        self._n = max_bytes
        super().__init__({
            "frame": In(stream.Signature(frame_layout(max_bytes))),
            "o": Out(beat_signature(data_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        w, n = self._w, self._n
        beats = -(-n // w)
        index = Signal(range(beats + 1))
        remaining = Signal(range(n + 1))
        m.d.comb += remaining.eq(self.frame.p.length - index * w)

        for lane in range(w):
            choices = [self.frame.p.bytes[k * w + lane] if k * w + lane < n else 0
                       for k in range(beats)]
            m.d.comb += self.o.p.data[8 * lane : 8 * lane + 8].eq(Array(choices)[index])
        last = remaining <= w
        m.d.comb += [
            self.o.valid.eq(self.frame.valid),
            self.o.p.last.eq(last),
            self.o.p.keep.eq(keep_for(remaining, w) if w > 1 else 1),
        ]
        with m.If(self.o.valid & self.o.ready):
            with m.If(last):
                m.d.sync += index.eq(0)
                m.d.comb += self.frame.ready.eq(1)
            with m.Else():
                m.d.sync += index.eq(index + 1)
        return m
