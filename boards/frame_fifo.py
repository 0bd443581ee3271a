"""Whole-frame plumbing between a MAC and its users: a store-and-forward filter that
drops bad frames, and a splitter that takes the host link's frames off a network port.

A MAC (:class:`toe.hdl.mac.mac.EthernetMac`) flags a bad frame (FCS mismatch, RX_ER,
runt, cut by overflow) only on its last beat, after the rest has been delivered.  The
engine's parser would take such a frame, so the board top puts a :class:`FrameFilter`
in front of each user: a frame leaves it only once it is whole and good.  Beats here
carry the flag in :func:`flagged_beat_layout` (a beat plus ``error``, meaningful on the
last beat), the MAC's ``rx`` and ``rx_error`` side by side.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from toe.hdl.stream import beat_layout, beat_signature

__all__ = ["EtherTypeSplitter", "FrameFilter", "flagged_beat_layout", "flagged_signature"]


def flagged_beat_layout(data_bytes: int) -> data.StructLayout:
    """A beat and the MAC's error flag (1 on the last beat of a bad frame)."""
    return data.StructLayout({"beat": beat_layout(data_bytes), "error": 1})


def flagged_signature(data_bytes: int) -> stream.Signature:
    return stream.Signature(flagged_beat_layout(data_bytes))


def _popcount(m, keep, data_bytes):
    """The number of set lanes of a contiguous ``keep`` mask."""
    count = Signal(range(data_bytes + 1))
    for n in range(1, data_bytes + 1):
        with m.If(keep == (1 << n) - 1):
            m.d.comb += count.eq(n)
    return count


class FrameFilter(wiring.Component):
    """Store-and-forward FIFO of whole frames: good frames out, bad frames dropped.

    A frame is written into a ring of ``depth_bytes`` and becomes readable when its last
    beat arrives without ``error``; with ``error``, or when it did not fit (the ring or
    the table of frame lengths was full), the write pointer goes back to the frame's
    start and the frame is counted.  Frames leave in order, each with its length.

    Ports
    -----
    i : In(flagged stream)
        Beats with the MAC's error flag.
    o : Out(beat stream)
        Good frames only.
    o_length : Out(16)
        The length in bytes of the frame being read on ``o`` (valid with ``o.valid``).
    dropped_bad, dropped_full : Out(1)
        One-cycle strobes: a frame dropped for its error flag, or for want of room.
    """

    def __init__(self, data_bytes: int, depth_bytes: int = 4096, frames: int = 16):
        self._w = data_bytes
        self._depth = max(16, depth_bytes // data_bytes)
        self._frames = frames
        super().__init__({
            "i": In(flagged_signature(data_bytes)),
            "o": Out(beat_signature(data_bytes)),
            "o_length": Out(16),
            "dropped_bad": Out(1),
            "dropped_full": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w, depth = self._w, self._depth
        m.submodules.ring = ring = Memory(shape=beat_layout(w), depth=depth, init=[])
        m.submodules.lengths = lengths = SyncFIFOBuffered(width=16, depth=self._frames)
        wr = ring.write_port()
        rd = ring.read_port(transparent_for=())
        bits = (depth - 1).bit_length() + 1
        start = Signal(bits)  # first beat of the frame being written
        head = Signal(bits)  # next beat to write
        tail = Signal(bits)  # next beat to read
        committed = Signal(bits)  # end of the last committed frame
        length = Signal(16)
        dropping = Signal()  # this frame did not fit: take and discard the rest

        # Write side.
        used = Signal(bits)
        m.d.comb += used.eq(head - tail)
        room = used < depth
        beat = self.i.p.beat
        count = _popcount(m, beat.keep, w)
        m.d.comb += [self.i.ready.eq(1), wr.addr.eq(head[: bits - 1]), wr.data.eq(beat)]
        with m.If(self.i.valid):
            fits = room & ~dropping
            with m.If(fits):
                m.d.comb += wr.en.eq(1)
            with m.If(beat.last):
                good = fits & ~self.i.p.error & lengths.w_rdy
                with m.If(good):
                    m.d.comb += [lengths.w_en.eq(1), lengths.w_data.eq(length + count)]
                    m.d.sync += [committed.eq(head + 1), start.eq(head + 1), head.eq(head + 1)]
                with m.Else():
                    m.d.sync += head.eq(start)
                    with m.If(fits & self.i.p.error):
                        m.d.comb += self.dropped_bad.eq(1)
                    with m.Else():
                        m.d.comb += self.dropped_full.eq(1)
                m.d.sync += [length.eq(0), dropping.eq(0)]
            with m.Else():
                m.d.sync += length.eq(length + count)
                with m.If(fits):
                    m.d.sync += head.eq(head + 1)
                with m.Else():
                    m.d.sync += dropping.eq(1)

        # Read side: the ring's read port holds its data while not enabled.
        out_valid = Signal()
        take = ~out_valid | self.o.ready
        # (A read port's ``en`` is 1 unless driven: hold the data by driving it to 0.)
        m.d.comb += [rd.en.eq(0), rd.addr.eq(tail[: bits - 1]), self.o.p.eq(rd.data),
                     self.o.valid.eq(out_valid), self.o_length.eq(lengths.r_data)]
        with m.If(take):
            with m.If(tail != committed):
                m.d.comb += rd.en.eq(1)
                m.d.sync += [tail.eq(tail + 1), out_valid.eq(1)]
            with m.Else():
                m.d.sync += out_valid.eq(0)
        with m.If(self.o.valid & self.o.ready & self.o.p.last):
            m.d.comb += lengths.r_en.eq(1)
        return m


class EtherTypeSplitter(wiring.Component):
    """Sends the frames of one EtherType to ``o_host``, every other frame to ``o_net``.

    The EtherType is bytes 12 and 13 of the frame (IEEE 802.3 clause 3.2.6), so the
    first ``ceil(14 / W)`` beats are held until it is known; then they and the rest of
    the frame go to one output, unchanged (beats, keep, last and the error flag).  A
    frame shorter than 14 bytes goes to ``o_net`` (the parser drops it as a runt).
    The input waits while the held beats are released: ``ceil(14 / W)`` cycles a frame.
    """

    def __init__(self, data_bytes: int, ethertype: int):
        self._w = data_bytes
        self._ethertype = ethertype
        super().__init__({
            "i": In(flagged_signature(data_bytes)),
            "o_net": Out(flagged_signature(data_bytes)),
            "o_host": Out(flagged_signature(data_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._w
        held_beats = -(-14 // w)
        held = [Signal(flagged_beat_layout(w), name=f"held{k}") for k in range(held_beats)]
        n_held = Signal(range(held_beats + 1))
        n_sent = Signal(range(held_beats + 1))
        to_host = Signal()
        # The EtherType's bytes, wherever they fall in the held beats.
        type_bytes = []
        for offset in (12, 13):
            beat, lane = divmod(offset, w)
            type_bytes.append(held[beat].beat.data[8 * lane : 8 * lane + 8])
        is_host = Signal()
        m.d.comb += is_host.eq((type_bytes[0] == (self._ethertype >> 8))
                               & (type_bytes[1] == (self._ethertype & 0xFF)))
        outputs = (self.o_net, self.o_host)
        out_ready = Signal()
        m.d.comb += out_ready.eq(Mux(to_host, self.o_host.ready, self.o_net.ready))
        out_valid = Signal()
        for k, out in enumerate(outputs):
            m.d.comb += out.valid.eq(out_valid & (to_host == k))

        with m.FSM():
            with m.State("HOLD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for k in range(held_beats):
                        with m.If(n_held == k):
                            m.d.sync += held[k].eq(self.i.p)
                    m.d.sync += [n_held.eq(n_held + 1), n_sent.eq(0)]
                    with m.If(self.i.p.beat.last & (n_held < held_beats - 1)):
                        m.d.sync += to_host.eq(0)
                        m.next = "RELEASE"
                    with m.Elif(n_held == held_beats - 1):
                        m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += to_host.eq(is_host)
                m.next = "RELEASE"
            with m.State("RELEASE"):
                current = Signal(flagged_beat_layout(w))
                for k in range(held_beats):
                    with m.If(n_sent == k):
                        m.d.comb += current.eq(held[k])
                for out in outputs:
                    m.d.comb += out.p.eq(current)
                m.d.comb += out_valid.eq(1)
                with m.If(out_ready):
                    m.d.sync += n_sent.eq(n_sent + 1)
                    with m.If(n_sent == n_held - 1):
                        m.d.sync += n_held.eq(0)
                        with m.If(current.beat.last):
                            m.next = "HOLD"
                        with m.Else():
                            m.next = "PASS"
            with m.State("PASS"):
                for out in outputs:
                    m.d.comb += out.p.eq(self.i.p)
                m.d.comb += [out_valid.eq(self.i.valid), self.i.ready.eq(out_ready)]
                with m.If(self.i.valid & out_ready & self.i.p.beat.last):
                    m.next = "HOLD"
        return m

