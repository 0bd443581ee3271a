"""A small FIFO in flip-flops for wide records (a block RAM would be mostly width)."""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterFifo"]


class RegisterFifo(wiring.Component):
    """``depth`` entries of ``shape`` held in registers; input ready when not full.

    Used between the RX parser and the handlers, so the parser works on the next frame
    while a handler is still busy with the previous one.

    Ports
    -----
    i : In(stream), o : Out(stream)
    level : Out
        Entries held.
    """

    def __init__(self, shape, depth: int):
        assert depth >= 1
        self._shape = shape
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        entries = Array(Signal(self._shape, name=f"entry{k}") for k in range(depth))
        head = Signal(range(depth))
        tail = Signal(range(depth))

        def advance(pointer):
            return Mux(pointer == depth - 1, 0, pointer + 1)

        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            self.i.ready.eq(self.level != depth),
            self.o.valid.eq(self.level != 0),
            self.o.p.eq(entries[head]),
        ]
        with m.If(push):
            m.d.sync += [entries[tail].eq(self.i.p), tail.eq(advance(tail))]
        with m.If(pop):
            m.d.sync += head.eq(advance(head))
        with m.If(push & ~pop):
            m.d.sync += self.level.eq(self.level + 1)
        with m.Elif(pop & ~push):
            m.d.sync += self.level.eq(self.level - 1)
        return m
