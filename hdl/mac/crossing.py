"""Clock-domain crossings between the PHY clock and the core clock, one per direction.

Both are ``amaranth.lib.fifo`` asynchronous queues of whole beats (Gray-coded pointers,
two synchroniser stages each way; TX's with an output register, ``AsyncFIFOBuffered``).
RX: the wire cannot be held back, so a frame that meets a full queue is cut and marked
(or dropped whole).  TX: the wire cannot pause mid-frame
either, so a frame is released to the MAC only once all of it is in the queue: a second,
small AsyncFIFO carries one token per complete frame (the frame-count FIFO).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_layout, beat_signature
from .gearbox import rx_beat_layout

__all__ = ["RxCrossing", "TxCrossing", "frame_beats"]


def frame_beats(max_frame_bytes: int, data_bytes: int) -> int:
    """Beats of a largest frame of ``max_frame_bytes`` bytes."""
    return -(-max_frame_bytes // data_bytes)


def default_depth(max_frame_bytes: int, data_bytes: int) -> int:
    """Room for two largest frames, as a power of two (AsyncFIFO depths are)."""
    return 1 << (2 * frame_beats(max_frame_bytes, data_bytes) - 1).bit_length()


class RxCrossing(wiring.Component):
    """Received beats from the PHY domain into the core domain.

    Overflow (IEEE 802.3 s4.2.9 leaves frame loss to the receiver; here the queue is
    full because the core did not take beats): when a beat finds the queue full,

    - if earlier beats of its frame are already queued, the rest of the frame is dropped
      and a one-byte terminating beat (``last`` = 1, ``error`` = 1) is queued as soon as
      there is room, so the core sees the frame end marked bad;
    - otherwise the whole frame is dropped (nothing of it reaches the core);
    - frames that arrive while a terminating beat still waits are dropped whole.

    ``overflow`` pulses once for each frame cut or dropped.

    Ports
    -----
    i : In(stream, always ready), ``phy_domain``
        :func:`~toe.hdl.mac.gearbox.rx_beat_layout` beats from :class:`RxGearbox`.
    o : Out(beat_signature(W)), ``core_domain``
        Frame beats for the engine.
    error : Out(1), ``core_domain``
        With ``o.valid`` and ``o.p.last``: the frame is bad (0 on other beats).
    overflow : Out(1), ``phy_domain``
        One-cycle pulse per frame cut or dropped because the queue was full.
    """

    def __init__(self, data_bytes: int, *, depth: int, phy_domain="eth", core_domain="sync"):
        self._data_bytes = data_bytes
        self._depth = depth
        self._phy_domain = phy_domain
        self._core_domain = core_domain
        super().__init__({
            "i": In(stream.Signature(rx_beat_layout(data_bytes), always_ready=True)),
            "o": Out(beat_signature(data_bytes)),
            "error": Out(1),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._data_bytes
        layout = rx_beat_layout(w)
        phy = m.d[self._phy_domain]

        m.submodules.queue = queue = fifo.AsyncFIFO(
            width=layout.size, depth=self._depth,
            w_domain=self._phy_domain, r_domain=self._core_domain)

        # -- write side (PHY clock) --
        in_frame = Signal()  # beats of the current frame are in the queue
        dropping = Signal()  # the rest of the current frame is being dropped
        terminator_due = Signal()  # a cut frame still needs its marked last beat

        terminator = layout.const({"data": 0, "keep": 1, "last": 1, "error": 1})
        accept = self.i.valid & queue.w_rdy & ~dropping & ~terminator_due

        phy += self.overflow.eq(0)
        with m.If(accept):
            m.d.comb += [queue.w_en.eq(1), queue.w_data.eq(self.i.p)]
            phy += in_frame.eq(~self.i.p.last)
        with m.Elif(self.i.valid):
            # The beat is lost: cut or drop its frame.
            with m.If(~dropping):
                phy += self.overflow.eq(1)
            phy += dropping.eq(~self.i.p.last)
            with m.If(in_frame):
                phy += [terminator_due.eq(1), in_frame.eq(0)]
        with m.Elif(terminator_due & queue.w_rdy):
            m.d.comb += [queue.w_en.eq(1), queue.w_data.eq(terminator.as_value())]
            phy += terminator_due.eq(0)

        # -- read side (core clock) --
        beat = data.View(layout, queue.r_data)
        m.d.comb += [
            self.o.valid.eq(queue.r_rdy),
            self.o.p.data.eq(beat.data),
            self.o.p.keep.eq(beat.keep),
            self.o.p.last.eq(beat.last),
            self.error.eq(beat.last & beat.error),
            queue.r_en.eq(self.o.ready),
        ]
        return m


class TxCrossing(wiring.Component):
    """Frame beats from the core domain into the PHY domain, a frame at a time.

    The data queue holds beats; the frame queue gets one token with each frame's last
    beat.  The PHY side starts a frame (raises ``o.valid``) only after taking a token, so
    every beat of the frame is already in the data queue.  A frame longer than
    ``max_frame_bytes`` is cut there (its beat at that size is marked ``last``, the rest
    of it dropped), so a frame always fits the queue and the two sides cannot wait for
    each other.

    Ports
    -----
    i : In(beat_signature(W)), ``core_domain``
        Frames from the engine (without FCS).
    o : Out(beat_signature(W)), ``phy_domain``
        The same beats, each frame without gaps once started (to :class:`TxGearbox`).
    """

    def __init__(self, data_bytes: int, *, max_frame_bytes: int, depth: int, frames: int = 16,
                 phy_domain="eth", core_domain="sync"):
        self._data_bytes = data_bytes
        self._max_beats = frame_beats(max_frame_bytes, data_bytes)
        if depth < self._max_beats:
            raise ValueError("the TX queue must hold a largest frame")
        self._depth = depth
        self._frames = frames
        self._phy_domain = phy_domain
        self._core_domain = core_domain
        super().__init__({
            "i": In(beat_signature(data_bytes)),
            "o": Out(beat_signature(data_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._data_bytes
        layout = beat_layout(w)
        core = m.d[self._core_domain]
        phy = m.d[self._phy_domain]

        # Buffered: the beat the gearbox reads comes from a register, not straight from
        # the block RAM, whose clock-to-output delay (4.3 ns on the ECP5), followed by
        # the gearbox's last-lane choice and the read pointer's increment back into the
        # RAM's address, made the PHY domain's critical path (docs/mac.md, "Timing").
        m.submodules.queue = queue = fifo.AsyncFIFOBuffered(
            width=layout.size, depth=self._depth,
            w_domain=self._core_domain, r_domain=self._phy_domain)
        m.submodules.frames = frames = fifo.AsyncFIFO(
            width=1, depth=self._frames,
            w_domain=self._core_domain, r_domain=self._phy_domain)

        # -- write side (core clock) --
        beat_index = Signal(range(self._max_beats))
        dropping = Signal()  # the rest of a cut frame
        cut = beat_index == self._max_beats - 1
        ends_frame = self.i.p.last | cut

        with m.If(dropping):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & self.i.p.last):
                core += dropping.eq(0)
        with m.Else():
            m.d.comb += [
                self.i.ready.eq(queue.w_rdy & (frames.w_rdy | ~ends_frame)),
                queue.w_data.eq(self.i.p),
                queue.w_data[layout["last"].offset].eq(ends_frame),
                queue.w_en.eq(self.i.valid & self.i.ready),
                frames.w_en.eq(self.i.valid & self.i.ready & ends_frame),
            ]
            with m.If(self.i.valid & self.i.ready):
                core += beat_index.eq(beat_index + 1)
                with m.If(ends_frame):
                    core += [beat_index.eq(0), dropping.eq(~self.i.p.last)]

        # -- read side (PHY clock) --
        sending = Signal()
        beat = data.View(layout, queue.r_data)
        with m.If(~sending):
            m.d.comb += frames.r_en.eq(1)
            with m.If(frames.r_rdy):
                phy += sending.eq(1)
        with m.Else():
            m.d.comb += [
                self.o.valid.eq(queue.r_rdy),
                self.o.p.eq(beat),
                queue.r_en.eq(self.o.ready),
            ]
            with m.If(self.o.valid & self.o.ready & beat.last):
                phy += sending.eq(0)
        return m
