"""The RX front end: capture, checksums, frame buffer and parser composed (layer file)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from ..stream import beat_signature
from .capture import FrameCapture
from .checksum import RxChecksum
from .frame_buffer import FrameBuffer
from .meta import rx_meta_layout
from .parser import CAPTURE_BYTES, RxParser

__all__ = ["RxFrontend", "buffer_geometry"]


def buffer_geometry(config: ToeConfig) -> tuple[int, int, int]:
    """(depth in words, words of a largest frame, beats counted per frame)."""
    w = config.data_bytes
    max_words = -(-config.max_frame_bytes // w)
    depth = 1 << ((config.rx_buffer_bytes // w).bit_length() - 1)
    depth = max(depth, 1 << (2 * max_words - 1).bit_length())
    return depth, max_words, max_words + 1


class RxFrontend(wiring.Component):
    """MAC RX stream in, one parsed record per frame out, frames kept in a buffer.

    The stream is never held back mid-frame: only the last beat of a frame waits while
    the parser is still busy with the one before (a few cycles; IP and TCP options add
    a cycle per 4 bytes and per option).

    Ports
    -----
    i : In(stream)
        MAC RX beats.
    mac_error : In
        The MAC's bad-frame mark (``EthernetMac.rx_error``), meaningful with the last beat
        of a frame (``i.valid & i.p.last``): 1 drops the frame as ``MAC_ERROR``.
    meta : Out(stream)
        :func:`rx_meta_layout` records.
    rd_addr, rd_en : In, rd_data : Out; release, release_ptr : In
        The frame buffer's read and release side.
    mac_addr, ip_addr, netmask : In
    """

    def __init__(self, config: ToeConfig):
        self._config = config
        depth, max_words, max_beats = buffer_geometry(config)
        self._geometry = depth, max_words, max_beats
        self.ptr_bits = depth.bit_length()
        super().__init__({
            "i": In(beat_signature(config.data_bytes)),
            "mac_error": In(1),
            "meta": Out(stream.Signature(rx_meta_layout(self.ptr_bits))),
            "rd_addr": In(self.ptr_bits),
            "rd_en": In(1),
            "rd_data": Out(config.data_bits),
            "release": In(1),
            "release_ptr": In(self.ptr_bits),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "netmask": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        w = cfg.data_bytes
        depth, max_words, max_beats = self._geometry

        m.submodules.capture = capture = FrameCapture(w, CAPTURE_BYTES, max_beats)
        m.submodules.checksum = checksum = RxChecksum(w, max_beats)
        m.submodules.buffer = buffer = FrameBuffer(w, depth, max_words, max_beats)
        m.submodules.parser = parser = RxParser(cfg.max_frame_bytes, self.ptr_bits)

        accept = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.i.p.last | parser.ready_for_frame)
        for observer in (capture, checksum, buffer):
            m.d.comb += [observer.beat.eq(self.i.p), observer.accept.eq(accept)]
        m.d.comb += [
            capture.mac_error.eq(self.mac_error),
            checksum.beat_index.eq(capture.beat_index),
            checksum.ihl.eq(capture.live_ihl),
            checksum.ip_len.eq(capture.live_ip_len),
            buffer.beat_index.eq(capture.beat_index),

            parser.frame_bytes.eq(capture.frame_bytes),
            parser.frame_len.eq(capture.frame_len),
            parser.frame_done.eq(capture.done),
            parser.mac_error.eq(capture.frame_mac_error),
            parser.ip_sum.eq(checksum.ip_sum),
            parser.l4_sum.eq(checksum.l4_sum),
            parser.sum_done.eq(checksum.done),
            parser.buf_start.eq(buffer.start),
            parser.buf_end.eq(buffer.end),
            parser.buf_kept.eq(buffer.kept),
            parser.mac_addr.eq(self.mac_addr),
            parser.ip_addr.eq(self.ip_addr),
            parser.netmask.eq(self.netmask),

            buffer.rd_addr.eq(self.rd_addr),
            buffer.rd_en.eq(self.rd_en),
            self.rd_data.eq(buffer.rd_data),
            buffer.release.eq(self.release),
            buffer.release_ptr.eq(self.release_ptr),
        ]
        wiring.connect(m, wiring.flipped(self.meta), parser.meta)
        return m
