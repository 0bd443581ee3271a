"""Header capture: the first bytes of every frame, at any stream width."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_layout

__all__ = ["FrameCapture"]


class FrameCapture(wiring.Component):
    """Captures the first ``capture_bytes`` bytes and the length of every frame.

    Byte ``p`` of a frame arrives in lane ``p % W`` of beat ``p // W``; each captured byte
    is a register loaded by a constant (beat, lane) match, so the cost does not grow with
    the width.  Bytes past the end of a short frame read as zero.

    Ports
    -----
    beat, accept : In
        The observed MAC RX stream: ``accept`` is high when ``beat`` is transferred.
    mac_error : In
        The MAC's bad-frame mark, read with the last beat of a frame (ignored on others).
    beat_index : Out
        Index of the next beat within its frame (saturates at ``max_beats``).
    live_ihl, live_ip_len : Out
        IPv4 IHL and total length as known once the current beat is taken: valid for
        every beat that holds a byte past them (used by the streaming checksum).
    done : Out
        High for one cycle after the last beat of a frame was accepted.
    frame_bytes, frame_len, frame_mac_error : Out
        Snapshot of the captured bytes, the frame length (bytes, saturating past
        ``max_beats * W``) and ``mac_error`` of its last beat, stable from ``done`` until
        the next frame ends.
    """

    def __init__(self, data_bytes: int, capture_bytes: int, max_beats: int):
        self._w = data_bytes
        self._n = capture_bytes
        self._max_beats = max_beats
        super().__init__({
            "beat": In(beat_layout(data_bytes)),
            "accept": In(1),
            "mac_error": In(1),
            "beat_index": Out(range(max_beats + 1)),
            "live_ihl": Out(4),
            "live_ip_len": Out(16),
            "done": Out(1),
            "frame_bytes": Out(data.ArrayLayout(8, capture_bytes)),
            "frame_len": Out(16),
            "frame_mac_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w, n = self._w, self._n

        live = [Signal(8, name=f"cap{p}") for p in range(n)]
        nxt = [Signal(8, name=f"cap{p}_next") for p in range(n)]
        for p in range(n):
            beat, lane = divmod(p, w)
            here = (self.beat_index == beat) & self.beat.keep[lane]
            with m.If(self.accept & here):
                m.d.comb += nxt[p].eq(self.beat.data[8 * lane : 8 * lane + 8])
            with m.Elif(self.accept & (self.beat_index == 0)):
                m.d.comb += nxt[p].eq(0)
            with m.Else():
                m.d.comb += nxt[p].eq(live[p])
            m.d.sync += live[p].eq(nxt[p])

        m.d.comb += [
            self.live_ihl.eq(nxt[14][:4]),
            self.live_ip_len.eq(nxt[16] << 8 | nxt[17]),
        ]

        lanes_used = sum(self.beat.keep[i] for i in range(w))
        m.d.sync += self.done.eq(0)
        with m.If(self.accept):
            with m.If(self.beat.last):
                m.d.sync += [
                    self.beat_index.eq(0),
                    self.done.eq(1),
                    self.frame_len.eq(self.beat_index * w + lanes_used),
                    self.frame_mac_error.eq(self.mac_error),
                ]
                for p in range(n):
                    m.d.sync += self.frame_bytes[p].eq(nxt[p])
            with m.Elif(self.beat_index != self._max_beats):
                m.d.sync += self.beat_index.eq(self.beat_index + 1)
        return m
