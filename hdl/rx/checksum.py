"""Streaming RX checksums: the IPv4 header and the L4 (ICMP/TCP) region of each frame."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checksum import fold
from ..stream import beat_layout

__all__ = ["RxChecksum"]


class RxChecksum(wiring.Component):
    """One's complement sums over the IPv4 header and over the IPv4 payload, at full width.

    The beat is registered once, so the IHL and total length it needs (``ihl``,
    ``ip_len``, from :class:`FrameCapture`) are already known for every byte they govern,
    whatever the width; a second stage masks and steers the bytes, a third adds them.
    Bytes at even frame offsets are the high half of a 16-bit word (the IPv4 header
    starts at offset 14).  Ethernet padding past the IPv4 total length is
    excluded (RFC 1122 s3.3.2: the link layer may pad).

    Ports
    -----
    beat, accept, beat_index, ihl, ip_len : In
        The observed stream and the fields known after the current beat.
    ip_sum : Out
        Folded sum of the IPv4 header; 0xFFFF when its checksum is right (RFC 1071).
    l4_sum : Out
        Unfolded sum of the L4 region; add the pseudo-header and fold to verify.
    done : Out
        High for one cycle when both sums cover a whole frame (three cycles after its last
        beat was accepted); they stay valid during that cycle only.
    """

    def __init__(self, data_bytes: int, max_beats: int):
        self._w = data_bytes
        self._max_beats = max_beats
        super().__init__({
            "beat": In(beat_layout(data_bytes)),
            "accept": In(1),
            "beat_index": In(range(max_beats + 1)),
            "ihl": In(4),
            "ip_len": In(16),
            "ip_sum": Out(16),
            "l4_sum": Out(32),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._w

        # Stage 1: the beat, with the region bounds it needs (from the capture).
        d_valid = Signal()
        d_beat = Signal.like(self.beat)
        d_index = Signal.like(self.beat_index)
        l4_start = Signal(8)
        ip_end = Signal(17)
        m.d.sync += [
            d_valid.eq(self.accept),
            d_beat.eq(self.beat),
            d_index.eq(self.beat_index),
            l4_start.eq(14 + (self.ihl << 2)),
            ip_end.eq(14 + self.ip_len),
        ]

        # Stage 2: each lane's byte masked to its region and steered to the high or low
        # half of a 16-bit word by the parity of its frame offset.
        e_valid = Signal()
        e_first = Signal()
        e_last = Signal()
        m.d.sync += [
            e_valid.eq(d_valid), e_first.eq(d_index == 0), e_last.eq(d_beat.last),
        ]
        ip_hi, ip_lo, l4_hi, l4_lo = [], [], [], []
        for lane in range(w):
            offset = Signal(range(self._max_beats * w + w + 1), name=f"offset{lane}")
            m.d.comb += offset.eq(d_index * w + lane)
            byte = d_beat.data[8 * lane : 8 * lane + 8]
            present = d_beat.keep[lane]
            in_ip = present & (offset >= 14) & (offset < l4_start)
            in_l4 = present & (offset >= l4_start) & (offset < ip_end)
            odd = Const(lane % 2) if w % 2 == 0 else offset[0]
            for region, inside, hi, lo in (("ip", in_ip, ip_hi, ip_lo),
                                           ("l4", in_l4, l4_hi, l4_lo)):
                masked = inside.replicate(8) & byte
                if w % 2 == 0:
                    reg = Signal(8, name=f"{region}_byte{lane}")
                    m.d.sync += reg.eq(masked)
                    (lo if lane % 2 else hi).append(reg)
                else:
                    reg_hi = Signal(8, name=f"{region}_hi{lane}")
                    reg_lo = Signal(8, name=f"{region}_lo{lane}")
                    m.d.sync += [
                        reg_hi.eq(masked & (~odd).replicate(8)),
                        reg_lo.eq(masked & odd.replicate(8)),
                    ]
                    hi.append(reg_hi)
                    lo.append(reg_lo)

        # Stage 3: the beat's sum into the frame's accumulators.
        def beat_sum(hi, lo):
            return (sum(hi) << 8) + sum(lo) if lo else sum(hi) << 8

        ip_acc = Signal(32)
        l4_acc = Signal(32)
        with m.If(e_valid):
            with m.If(e_first):
                m.d.sync += [ip_acc.eq(beat_sum(ip_hi, ip_lo)), l4_acc.eq(beat_sum(l4_hi, l4_lo))]
            with m.Else():
                m.d.sync += [
                    ip_acc.eq(ip_acc + beat_sum(ip_hi, ip_lo)),
                    l4_acc.eq(l4_acc + beat_sum(l4_hi, l4_lo)),
                ]
        m.d.sync += self.done.eq(e_valid & e_last)
        m.d.comb += [self.ip_sum.eq(fold(ip_acc)), self.l4_sum.eq(l4_acc)]
        return m
