"""The RX frame buffer: frames wait here while their headers are parsed and handled."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_layout

__all__ = ["FrameBuffer"]


class FrameBuffer(wiring.Component):
    """A ring of ``depth`` words of one beat each; every frame starts on a fresh word.

    Frames are written speculatively as they arrive.  At the start of a frame the buffer
    checks that a largest frame (``max_words``) fits; if not, the frame is not stored
    (``kept`` is low for it) and the parser drops it as BUFFER_FULL.  Words past
    ``max_words`` are never written.  Handlers read a frame through ``rd_addr``/``rd_data``
    (one cycle of latency) and give its words back in order by writing the frame's end
    pointer to ``release_ptr`` with ``release`` high.

    Pointers have one bit more than the word address so that full and empty differ.

    Ports
    -----
    beat, accept, beat_index : In
        The observed MAC RX stream.
    start, end, kept : Out
        Where the last completed frame lies, valid from the cycle after its last beat.
    rd_addr, rd_en : In, rd_data : Out
        Read port for handlers: word pointer; ``rd_data`` shows that word from the next
        cycle on, and holds while ``rd_en`` is low.
    release, release_ptr : In
        Free every word before ``release_ptr``.
    """

    def __init__(self, data_bytes: int, depth: int, max_words: int, max_beats: int):
        assert depth & (depth - 1) == 0 and depth >= 2 * max_words
        self._w = data_bytes
        self._depth = depth
        self._max_words = max_words
        self.ptr_bits = depth.bit_length()  # log2(depth) + 1
        super().__init__({
            "beat": In(beat_layout(data_bytes)),
            "accept": In(1),
            "beat_index": In(range(max_beats + 1)),
            "start": Out(self.ptr_bits),
            "end": Out(self.ptr_bits),
            "kept": Out(1),
            "rd_addr": In(self.ptr_bits),
            "rd_en": In(1),
            "rd_data": Out(8 * data_bytes),
            "release": In(1),
            "release_ptr": In(self.ptr_bits),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        addr_bits = self.ptr_bits - 1

        m.submodules.mem = mem = memory.Memory(shape=8 * self._w, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        wr_ptr = Signal(self.ptr_bits)
        rd_ptr = Signal(self.ptr_bits)
        storing = Signal()

        used = Signal(self.ptr_bits)
        m.d.comb += used.eq(wr_ptr - rd_ptr)
        room = Signal()
        m.d.comb += room.eq(depth - used >= self._max_words)
        frame_stored = Signal()  # this frame has (or, at its first beat, gets) room
        store_now = Signal()
        m.d.comb += [
            frame_stored.eq(Mux(self.beat_index == 0, room, storing)),
            store_now.eq(frame_stored & (self.beat_index < self._max_words)),
        ]

        m.d.comb += [
            wr.addr.eq((wr_ptr + self.beat_index)[:addr_bits]),
            wr.data.eq(self.beat.data),
            wr.en.eq(self.accept & store_now),
            rd.addr.eq(self.rd_addr[:addr_bits]),
            rd.en.eq(self.rd_en),
            self.rd_data.eq(rd.data),
        ]

        with m.If(self.accept):
            with m.If(self.beat_index == 0):
                m.d.sync += storing.eq(room)
            with m.If(self.beat.last):
                words = Signal(range(self._max_words + 1))
                with m.If(self.beat_index < self._max_words):
                    m.d.comb += words.eq(self.beat_index + 1)
                with m.Else():
                    m.d.comb += words.eq(self._max_words)
                m.d.sync += [self.start.eq(wr_ptr), self.kept.eq(frame_stored)]
                with m.If(frame_stored):
                    m.d.sync += [wr_ptr.eq(wr_ptr + words), self.end.eq(wr_ptr + words)]
                with m.Else():
                    m.d.sync += self.end.eq(wr_ptr)

        with m.If(self.release):
            m.d.sync += rd_ptr.eq(self.release_ptr)
        return m
