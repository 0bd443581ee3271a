"""The connection-id allocator of the TCP engine.

Ids never used since reset come from a counter, released ids from a FIFO, so that an id
is given out again only after every other free one (a late message for an old
connection is less likely to meet a new one; :mod:`hdl.host_if` adds the rule that an id
is the host's until ``RELEASED``).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["ConnIdAllocator"]


class ConnIdAllocator(wiring.Component):
    """Free connection ids, ``connections`` of them.

    Ports
    -----
    available : Out(1)
        An id can be taken; ``next_id`` is the one.
    take : In(1)
        Take ``next_id`` this cycle (only while ``available``).
    release, release_id : In
        Give ``release_id`` back this cycle.
    """

    def __init__(self, connections: int):
        self._n = connections
        bits = max(1, (connections - 1).bit_length())
        super().__init__({
            "available": Out(1),
            "next_id": Out(bits),
            "take": In(1),
            "release": In(1),
            "release_id": In(bits),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._n
        m.submodules.free = free = SyncFIFOBuffered(width=len(self.next_id), depth=n)
        fresh = Signal(range(n + 1))  # ids below this have been given out
        m.d.comb += [
            self.available.eq(free.r_rdy | (fresh < n)),
            self.next_id.eq(Mux(free.r_rdy, free.r_data, fresh)),
            free.w_en.eq(self.release),
            free.w_data.eq(self.release_id),
        ]
        with m.If(self.take):
            with m.If(free.r_rdy):
                m.d.comb += free.r_en.eq(1)
            with m.Else():
                m.d.sync += fresh.eq(fresh + 1)
        return m
