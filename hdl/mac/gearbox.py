"""Width gearboxes between the MAC's one byte per cycle and the engine's W-byte beats.

Both run in the PHY's clock domain (written in ``sync``, renamed by the composer), so the
byte side keeps the wire's pace and only whole beats cross into the core clock.  Beats
follow hdl/stream.py: byte 0 of a frame in lane 0, ``keep`` contiguous from lane 0, only
the last beat of a frame partial, never an empty beat.
"""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_signature
from .mac_rx import rx_byte_layout
from .mac_tx import tx_byte_layout

__all__ = ["RxGearbox", "TxGearbox", "rx_beat_layout"]


def rx_beat_layout(data_bytes: int) -> data.StructLayout:
    """A received beat: ``data``, ``keep``, ``last`` as in hdl/stream.py, plus ``error``
    (with ``last``: the frame is bad)."""
    return data.StructLayout({
        "data": 8 * data_bytes, "keep": data_bytes, "last": 1, "error": 1,
    })


class RxGearbox(wiring.Component):
    """Received bytes in, W-byte beats out (8 -> 8*W bits).

    Bytes fill the lanes of a beat from lane 0; the beat goes out (registered, one cycle
    after its last byte) when all W lanes are filled or with the frame's last byte.
    Neither side can be held back: the wire does not pause.

    Ports
    -----
    i : In(stream, always ready)
        :func:`~toe.hdl.mac.mac_rx.rx_byte_layout` bytes from :class:`MacRx`.
    o : Out(stream, always ready)
        :func:`rx_beat_layout` beats; ``error`` is only set on a last beat.
    """

    def __init__(self, data_bytes: int):
        if not 1 <= data_bytes <= 64:
            raise ValueError("data_bytes must be 1..64")
        self._data_bytes = data_bytes
        super().__init__({
            "i": In(stream.Signature(rx_byte_layout(), always_ready=True)),
            "o": Out(stream.Signature(rx_beat_layout(data_bytes), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._data_bytes
        lane = Signal(range(w))

        m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid):
            # The output register is the beat being filled: it is only read while
            # o.valid is high, the cycle after its last lane was written.
            m.d.sync += self.o.p.data.word_select(lane, 8).eq(self.i.p.data)
            with m.If(lane == 0):
                m.d.sync += self.o.p.keep.eq(1)
            with m.Else():
                m.d.sync += self.o.p.keep.eq(self.o.p.keep | (Const(1, w) << lane))
            full = (lane == w - 1) | self.i.p.last
            with m.If(full):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.p.last.eq(self.i.p.last),
                    self.o.p.error.eq(self.i.p.last & self.i.p.error),
                    lane.eq(0),
                ]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        return m


class TxGearbox(wiring.Component):
    """W-byte beats in, bytes out (8*W -> 8 bits), one byte per cycle while ``o.ready``.

    Lane 0 first; a beat is taken (``i.ready``) with its last kept byte.  The path is
    combinational, so a beat stream without gaps gives a byte stream without gaps at
    any width, W = 1 included.

    Ports
    -----
    i : In(beat_signature(W))
        Frame beats (from :class:`~toe.hdl.mac.crossing.TxCrossing`).
    o : Out(stream)
        :func:`~toe.hdl.mac.mac_tx.tx_byte_layout` bytes to :class:`MacTx`.
    """

    def __init__(self, data_bytes: int):
        if not 1 <= data_bytes <= 64:
            raise ValueError("data_bytes must be 1..64")
        self._data_bytes = data_bytes
        super().__init__({
            "i": In(beat_signature(data_bytes)),
            "o": Out(stream.Signature(tx_byte_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._data_bytes
        lane = Signal(range(w))

        if w == 1:
            last_lane = 1
        else:
            keep_next = (self.i.p.keep >> (lane + 1))[0]
            last_lane = (lane == w - 1) | ~keep_next

        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.o.p.data.eq(self.i.p.data.word_select(lane, 8)),
            self.o.p.last.eq(self.i.p.last & last_lane),
            self.i.ready.eq(self.o.ready & last_lane),
        ]
        with m.If(self.o.valid & self.o.ready):
            with m.If(last_lane):
                m.d.sync += lane.eq(0)
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        return m
