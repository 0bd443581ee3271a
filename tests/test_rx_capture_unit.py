"""Unit tests of the RX header capture and streaming checksums (FrameCapture + RxChecksum).

Both blocks are wired exactly as in hdl/rx/frontend.py (the checksum takes the beat index,
IHL and IPv4 total length from the capture) and fed random scapy frames: IPv4/ICMP and
IPv4/TCP, with and without IPv4 options (IHL 5..15), with Ethernet padding past the IPv4
total length, truncated frames, ARP frames, short random frames (1..40 bytes), idle cycles
between and within frames (with garbage on the bus while ``accept`` is low) and frames
back to back.  A plain-Python model gives the expected snapshot, frame length and sums."""

import random
from collections import deque

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth_helpers import fold16, run, split_beats
from scapy.layers.inet import ICMP, IP, TCP, IPOption_NOP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw, raw

from toe.hdl.checksum import internet_checksum, reference_sum
from toe.hdl.config import ToeConfig
from toe.hdl.rx.capture import FrameCapture
from toe.hdl.rx.checksum import RxChecksum
from toe.hdl.rx.frontend import buffer_geometry
from toe.hdl.rx.parser import CAPTURE_BYTES
from toe.hdl.stream import beat_layout

ETH = 14


class CaptureAndSums(Elaboratable):
    """FrameCapture and RxChecksum observing one stream, connected as in RxFrontend."""

    def __init__(self, width: int):
        _, _, max_beats = buffer_geometry(ToeConfig(data_bytes=width))
        self.capture = FrameCapture(width, CAPTURE_BYTES, max_beats)
        self.checksum = RxChecksum(width, max_beats)
        self.beat = Signal(beat_layout(width))
        self.accept = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.capture = capture = self.capture
        m.submodules.checksum = checksum = self.checksum
        for observer in (capture, checksum):
            m.d.comb += [observer.beat.eq(self.beat), observer.accept.eq(self.accept)]
        m.d.comb += [
            checksum.beat_index.eq(capture.beat_index),
            checksum.ihl.eq(capture.live_ihl),
            checksum.ip_len.eq(capture.live_ip_len),
        ]
        return m


# -- plain-Python model ----------------------------------------------------------------------


def expected_snapshot(frame: bytes) -> bytes:
    """The first CAPTURE_BYTES bytes of the frame, zero past its end."""
    return frame[:CAPTURE_BYTES] + bytes(max(0, CAPTURE_BYTES - len(frame)))


def expected_sums(frame: bytes) -> tuple[int, int]:
    """RFC 1071 sums over the IPv4 header (IHL words from offset 14) and over the IPv4
    payload, which ends at the IPv4 total length (RFC 1122 s3.3.2 / RFC 894: bytes past it
    are link-layer padding) or at the end of a truncated frame."""
    ihl = frame[ETH] & 0x0F
    total = int.from_bytes(frame[ETH + 2 : ETH + 4], "big")
    header = frame[ETH : ETH + 4 * ihl]
    payload = frame[ETH + 4 * ihl : ETH + total]
    return reference_sum(header), reference_sum(payload)


# -- frames ----------------------------------------------------------------------------------


def random_payload(rng, top):
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, top)))


def ip_frame(rng: random.Random, max_payload: int) -> tuple[bytes, bool]:
    """A random IPv4/ICMP or IPv4/TCP frame; returns (frame, checksums_checked)."""
    option_words = rng.choice([0, 0, 0, 1, 2, 3, 5, 7, 10])
    ip = IP(src=f"10.0.0.{rng.randint(1, 254)}", dst="10.0.0.2", ttl=rng.randint(1, 255),
            id=rng.getrandbits(16), options=[IPOption_NOP()] * (4 * option_words))
    if rng.random() < 0.5:
        l4 = ICMP(type=8, id=rng.getrandbits(16), seq=rng.getrandbits(16))
    else:
        tcp_options = rng.choice([[], [("MSS", 1460)], [("NOP", None), ("NOP", None),
                                  ("Timestamp", (rng.getrandbits(32), rng.getrandbits(32)))],
                                  [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)),
                                   ("NOP", None), ("WScale", 7)]])
        l4 = TCP(sport=rng.getrandbits(16), dport=rng.getrandbits(16),
                 seq=rng.getrandbits(32), ack=rng.getrandbits(32), flags="PA",
                 window=rng.getrandbits(16), options=tcp_options)
    frame = bytearray(raw(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
                          / ip / l4 / Raw(random_payload(rng, max_payload))))
    ihl = frame[ETH] & 0x0F
    assert ihl == 5 + option_words
    if option_words and rng.random() < 0.7:  # random option bytes, header checksum redone
        frame[ETH + 20 : ETH + 4 * ihl] = bytes(rng.getrandbits(8) for _ in range(4 * ihl - 20))
        frame[ETH + 10 : ETH + 12] = b"\0\0"
        frame[ETH + 10 : ETH + 12] = internet_checksum(bytes(frame[ETH : ETH + 4 * ihl])
                                                       ).to_bytes(2, "big")
    r = rng.random()
    if r < 0.15:  # corrupt a byte anywhere past the IHL/length fields: sums still follow
        at = rng.randrange(ETH + 4, len(frame))
        frame[at] ^= 1 << rng.randrange(8)
    elif r < 0.25 and len(frame) > ETH + 4 * ihl + 1:  # truncated: total length > frame
        frame = frame[: rng.randrange(ETH + 4 * ihl + 1, len(frame))]
    # Ethernet padding past the IPv4 total length: to the 60-byte minimum, and sometimes more
    if len(frame) < 60:
        frame += bytes(rng.choice([0, 0xFF, 0x55]) for _ in range(60 - len(frame)))
    if rng.random() < 0.4:
        frame += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
    return bytes(frame), True


def arp_frame(rng: random.Random) -> bytes:
    arp = ARP(op=rng.choice([1, 2]), psrc="10.0.0.1", pdst="10.0.0.2",
              hwsrc="02:00:00:00:00:01")
    return raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / arp) + bytes(18)


def make_frames(rng: random.Random, count: int, max_payload: int):
    frames = []
    for index in range(count):
        if index % 9 == 4:
            frames.append((arp_frame(rng), False))
        elif index % 9 == 2:  # a runt or odd short frame: only the capture is checked
            frames.append((bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), False))
        elif index % 9 == 7:  # a large TCP segment (full size at 1460)
            frames.append(big_tcp_frame(rng, max_payload))
        else:
            frames.append(ip_frame(rng, rng.choice([0, 1, 5, 20, max_payload // 4,
                                                     max_payload])))
    return frames


def big_tcp_frame(rng, max_payload):
    payload = bytes(rng.getrandbits(8) for _ in range(max_payload))
    frame = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A") / Raw(payload))
    return frame, True


# -- the test --------------------------------------------------------------------------------


def schedule(rng: random.Random, frames, width: int, idle_prob: float):
    """Per-cycle bus contents: a beat ``(data, keep, last)`` to accept, or None (idle)."""
    cycles = []
    for frame, _ in frames:
        for beat in split_beats(frame, width):
            while rng.random() < idle_prob:
                cycles.append(None)
            cycles.append(beat)
        if rng.random() < 0.5:  # sometimes back to back, sometimes a long gap
            cycles.extend([None] * rng.choice([0, 1, 2, 5]))
    return cycles + [None] * 4


def run_capture(width: int, frames, rng: random.Random, idle_prob: float) -> dict:
    """Feed ``frames`` (``(bytes, sums_checked)``) through the pair and check every one.

    Frames longer than the ``max_beats * W`` bytes the beat counter covers must report a
    ``frame_len`` above the largest frame (the parser drops them as OVERSIZE)."""
    dut = CaptureAndSums(width)
    cap, csum = dut.capture, dut.checksum
    _, _, max_beats = buffer_geometry(ToeConfig(data_bytes=width))
    largest = ToeConfig(data_bytes=width).max_frame_bytes
    checked = {"frames": 0, "sums": 0, "good_ip": 0, "padded": 0}

    async def bench(ctx):
        pending_capture = deque()  # (cycle of done, frame)
        pending_sums = deque()
        previous = None  # (snapshot, length) of the frame captured last
        frame_iter = iter(frames)
        cycle = 0
        for item in schedule(rng, frames, width, idle_prob):
            if item is None:
                ctx.set(dut.accept, 0)
                ctx.set(dut.beat, {"data": rng.getrandbits(8 * width),  # garbage, ignored
                                   "keep": rng.getrandbits(width), "last": rng.getrandbits(1)})
            else:
                data, keep, last = item
                ctx.set(dut.accept, 1)
                ctx.set(dut.beat, {"data": data, "keep": keep, "last": last})
                if last:
                    frame, has_sums = next(frame_iter)
                    pending_capture.append((cycle + 1, frame))
                    pending_sums.append((cycle + 3, frame if has_sums else None))
                    if previous is not None:  # the previous snapshot still holds
                        assert bytes(ctx.get(cap.frame_bytes)) == previous[0]
                        assert ctx.get(cap.frame_len) == previous[1]
            await ctx.tick()
            cycle += 1
            if ctx.get(cap.done):
                when, frame = pending_capture.popleft()
                assert when == cycle, "capture done not one cycle after the last beat"
                snapshot = bytes(ctx.get(cap.frame_bytes))
                assert snapshot == expected_snapshot(frame), (
                    f"snapshot of a {len(frame)}-byte frame:\n{snapshot.hex()}\n"
                    f"{expected_snapshot(frame).hex()}")
                frame_len = ctx.get(cap.frame_len)
                if len(frame) <= max_beats * width:
                    assert frame_len == len(frame)
                else:
                    assert frame_len > largest, f"{len(frame)}-byte frame read as {frame_len}"
                previous = (snapshot, frame_len)
                checked["frames"] += 1
            else:
                assert not pending_capture or pending_capture[0][0] > cycle, "no capture done"
            if ctx.get(csum.done):
                when, frame = pending_sums.popleft()
                assert when == cycle, "checksum done not three cycles after the last beat"
                if frame is not None:
                    ip_sum, l4_sum = expected_sums(frame)
                    ihl = frame[ETH] & 0xF
                    assert ctx.get(csum.ip_sum) == ip_sum, f"IHL {ihl}, {frame.hex()}"
                    assert fold16(ctx.get(csum.l4_sum)) == l4_sum, (
                        f"IHL {ihl}, len {len(frame)}, total length "
                        f"{int.from_bytes(frame[16:18], 'big')}")
                    checked["sums"] += 1
                    checked["good_ip"] += ip_sum == 0xFFFF
                    checked["padded"] += len(frame) > ETH + int.from_bytes(frame[16:18], "big")
            else:
                assert not pending_sums or pending_sums[0][0] > cycle, "no checksum done"
        assert not pending_capture and not pending_sums

    run(dut, bench)
    assert checked["frames"] == len(frames)
    assert checked["sums"] == sum(1 for _, s in frames if s)
    return checked


@pytest.mark.parametrize(("width", "count", "max_payload"), [
    (1, 14, 120), (2, 30, 300), (3, 30, 300), (8, 60, 1460), (64, 80, 1460)])
def test_capture_and_sums(width, count, max_payload):
    """FrameCapture: the snapshot is the frame's first 134 bytes, zero past its end, and
    ``frame_len`` its exact length, stable from ``done`` until the next frame ends.
    RxChecksum: ``ip_sum`` is the RFC 1071 sum of the IPv4 header (IHL 5..15; 0xFFFF when
    the header checksum is right, RFC 1071 s1 (3)) and ``fold(l4_sum)`` the sum of the IPv4
    payload up to the total length, Ethernet padding excluded (RFC 1122 s3.3.2, RFC 894).
    One ``done`` each per frame, one and three cycles after the last beat."""
    rng = random.Random(width * 7919 + count)
    frames = make_frames(rng, count, max_payload)
    checked = run_capture(width, frames, rng, rng.choice([0.0, 0.2, 0.5]))
    assert checked["good_ip"] > checked["sums"] // 2
    assert checked["padded"] > 0


@pytest.mark.parametrize("width", [1, 8, 64])
def test_oversize_frame_then_normal(width):
    """A frame longer than the beat counter covers (the counter saturates): its snapshot is
    still right and its ``frame_len`` is above 14 + MTU, so the parser can drop it as
    OVERSIZE; the frames after it are captured and summed exactly (nothing carries over)."""
    rng = random.Random(width)
    sizes = [1530] if width == 1 else [1600, 3000, 9018]
    frames = [ip_frame(rng, 200)]
    for size in sizes:
        frame, _ = big_tcp_frame(rng, size - 54)
        frames += [(frame, False), ip_frame(rng, 100)]
    run_capture(width, frames, rng, 0.0)
