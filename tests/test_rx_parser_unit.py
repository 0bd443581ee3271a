"""Unit tests of hdl/rx/parser.py (RxParser), at its own ports and inside RxFrontend.

The expected decision of every frame comes from :func:`sim.reference.classify`, the
plain-Python model of the RX checks (RFC 791 s3.1, RFC 1122 s3.2.1/s3.3.6, RFC 792,
RFC 826, RFC 9293 s3.1/s3.2 MUST-2/3/7/57), and the expected header fields from scapy
reading the same bytes (``rx_frames.expected_fields``).  Frames come from
``rx_frames.random_frame`` (seeded): valid TCP/ICMP/ARP, every IPv4 header field bent,
bad checksums, truncated frames, TCP options of every kind including malformed ones,
VLAN and unknown EtherTypes, other destinations, padding; plus hand-made corner cases.

- The direct bench drives the parser's ports as :class:`FrameCapture`, :class:`RxChecksum`
  and :class:`FrameBuffer` do (docs/architecture.md "RX path in detail": snapshot and
  ``frame_done`` one cycle after the last beat, sums two cycles later), with the sums
  computed in Python (RFC 1071), random ``buf_kept``, random addresses and a stalling sink.
- The front-end bench runs the whole :class:`RxFrontend` at 1, 8 and 64 bytes per beat.
"""

import random

import pytest
from amaranth_helpers import run, split_beats
from rx_frames import arp_frame, corner_frames, expected_fields, icmp_frame, random_frame, tcp_frame

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig, ip, mac
from toe.hdl.csr import COUNTERS
from toe.hdl.rx.frontend import RxFrontend, buffer_geometry
from toe.hdl.rx.meta import DropReason, Verdict
from toe.hdl.rx.parser import CAPTURE_BYTES, RxParser
from toe.sim.reference import Classification, classify

ETH = 14
CONFIG = ToeConfig()
PTR_BITS = 11
# Reasons decided before the frame buffer is looked at (hdl/rx/parser.py docstring: "a
# frame not for us is never counted as lost").
BEFORE_BUFFER = (DropReason.RUNT, DropReason.OVERSIZE, DropReason.MAC_DST, DropReason.ETHERTYPE)
ADDRESSES = [  # (mac, ip, netmask): the default, and others the frames mostly miss
    (CONFIG.mac_addr, CONFIG.ip_addr, CONFIG.netmask),
    (CONFIG.mac_addr, CONFIG.ip_addr, ip("255.255.0.0")),
    (CONFIG.mac_addr, CONFIG.ip_addr, ip("255.255.255.252")),
    (mac("02:00:00:00:00:09"), ip("10.0.0.9"), CONFIG.netmask),
]


def expected(frame: bytes, addresses, kept: bool, mac_error: bool = False) -> Classification:
    if mac_error:  # checked before anything else (hdl/rx/parser.py)
        return Classification(Verdict.DROP, DropReason.MAC_ERROR)
    mac_addr, ip_addr, netmask = addresses
    ref = classify(frame, CONFIG, mac=mac_addr, ip=ip_addr, netmask=netmask)
    if not kept and (ref.verdict != Verdict.DROP or ref.reason not in BEFORE_BUFFER):
        return Classification(Verdict.DROP, DropReason.BUFFER_FULL)
    return ref


def check_meta(meta, frame: bytes, want: Classification, label: str, frame_len=None):
    """The record against the reference decision and, for an accepted frame, against the
    fields scapy reads (every rx_meta_layout field the handlers use)."""
    where = f"{label}: {len(frame)} bytes {frame[:60].hex()}"
    got = (Verdict(meta.verdict), DropReason(meta.reason))
    assert got == (want.verdict, want.reason), f"{where}: got {got}, want {want}"
    assert want.counter in COUNTERS
    assert meta.frame_len == (len(frame) if frame_len is None else frame_len), where
    if want.verdict == Verdict.DROP:
        return
    fields = expected_fields(frame, want.verdict.name)
    options = fields.pop("tcp_options", None)
    for name, value in fields.items():
        if name == "frame_len":
            continue
        assert getattr(meta, name) == value, f"{where}: {name} {getattr(meta, name):#x}"
    if options is not None:
        got = meta.tcp_options
        sack = options.pop("sack")
        for name, value in options.items():
            assert getattr(got, name) == value, f"{where}: option {name}"
        assert got.sack_count == len(sack), where
        assert [(got.sack[k].left, got.sack[k].right) for k in range(len(sack))] == sack


def sums(frame: bytes, rng: random.Random) -> tuple[int, int]:
    """RxChecksum's outputs for the frame (test_rx_capture_unit checks that block): the
    RFC 1071 sum of the IPv4 header, and the unfolded sum of the IPv4 payload up to the
    total length (shown here as the folded sum plus some multiple of 0xFFFF)."""
    if len(frame) < ETH + 20 or frame[12:14] != b"\x08\x00" or frame[ETH] & 15 < 5:
        return rng.getrandbits(16), rng.getrandbits(32)  # not used by the parser
    ihl = frame[ETH] & 15
    total = int.from_bytes(frame[ETH + 2 : ETH + 4], "big")
    ip_sum = reference_sum(frame[ETH : ETH + 4 * ihl])
    l4_sum = reference_sum(frame[ETH + 4 * ihl : ETH + total])
    if l4_sum:
        l4_sum += 0xFFFF * rng.randrange(0x8000)
    return ip_sum, l4_sum


def run_parser(cases, seed: int, ready_prob: float = 0.6) -> int:
    """``cases``: ``(frame, label, addresses, kept, mac_error)``.  Returns the frames
    checked."""
    dut = RxParser(CONFIG.max_frame_bytes, PTR_BITS)
    rng = random.Random(seed)
    checked = 0

    async def bench(ctx):
        nonlocal checked
        for frame, label, addresses, kept, mac_error in cases:
            snapshot = frame[:CAPTURE_BYTES] + bytes(max(0, CAPTURE_BYTES - len(frame)))
            mac_addr, ip_addr, netmask = addresses
            start = rng.getrandbits(PTR_BITS)
            end = (start + rng.randint(0, 200)) % (1 << PTR_BITS)
            ctx.set(dut.mac_addr, mac_addr)
            ctx.set(dut.ip_addr, ip_addr)
            ctx.set(dut.netmask, netmask)
            ctx.set(dut.frame_bytes.as_value(), int.from_bytes(snapshot, "little"))
            ctx.set(dut.frame_len, len(frame))
            ctx.set(dut.buf_start, start)
            ctx.set(dut.buf_end, end)
            ctx.set(dut.buf_kept, kept)
            ctx.set(dut.mac_error, mac_error)
            assert ctx.get(dut.ready_for_frame), "parser not ready between frames"
            ctx.set(dut.frame_done, 1)
            await ctx.tick()
            ctx.set(dut.frame_done, 0)
            ctx.set(dut.ip_sum, rng.getrandbits(16))  # not yet valid
            ctx.set(dut.l4_sum, rng.getrandbits(32))
            await ctx.tick()
            ip_sum, l4_sum = sums(frame, rng)
            ctx.set(dut.ip_sum, ip_sum)
            ctx.set(dut.l4_sum, l4_sum)
            ctx.set(dut.sum_done, 1)
            await ctx.tick()
            ctx.set(dut.sum_done, 0)
            for _ in range(200):
                ready = rng.random() < ready_prob
                ctx.set(dut.meta.ready, ready)
                _, _, valid, payload, rff = await ctx.tick().sample(
                    dut.meta.valid, dut.meta.payload, dut.ready_for_frame)
                if valid:
                    assert rff == ready, "ready_for_frame must follow the record handshake"
                if valid and ready:
                    break
            else:
                raise AssertionError(f"{label}: no record")
            ctx.set(dut.meta.ready, 0)
            check_meta(payload, frame, expected(frame, addresses, kept, mac_error), label)
            assert (payload.buf_start, payload.buf_end) == (start, end), label
            checked += 1

    run(dut, bench)
    return checked


def test_parser_corner_cases():
    """Hand-made frames at the edge of each check (rx_frames.corner_frames): the largest
    frame and one byte more (OVERSIZE, 14 + MTU), runts, 60-byte IPv4 and TCP headers,
    every option kind behind IP options, duplicate SACK (last counts), option length
    errors (RFC 9293 MUST-7) and skips (MUST-6), ARP of 41/42 bytes (RFC 826), padding
    trimmed by the total length (RFC 1122 s3.3.2).  Each decided as sim/reference.py says,
    fields as scapy reads them."""
    cases = [(f, label, ADDRESSES[0], True, False) for f, label in corner_frames()]
    assert run_parser(cases, seed=1) == len(cases)


def test_parser_random_frames():
    """A few hundred seeded random frames (every case of rx_frames.random_frame) with the
    default and three other address sets, and the frame buffer full for one frame in ten
    (BUFFER_FULL only for frames that pass the Ethernet checks, hdl/rx/parser.py).  The
    decision and every parsed field agree with sim/reference.py and scapy.  One frame in
    twenty is marked bad by the MAC (IEEE 802.3 s3.2.9 FCS; the architecture's "a bad
    frame is marked on its last beat and dropped and counted by the parser"): MAC_ERROR,
    whatever its bytes and the buffer say."""
    rng = random.Random(9293)
    marks = random.Random(8023)  # its own generator: the frames stay those of rng
    cases = []
    for _ in range(700):
        frame, label = random_frame(rng)
        addresses = ADDRESSES[0] if rng.random() < 0.8 else rng.choice(ADDRESSES)
        cases.append((frame, label, addresses, rng.random() > 0.1, marks.random() < 0.05))
    seen = {classify(f, CONFIG, mac=a[0], ip=a[1], netmask=a[2]).reason
            for f, _, a, _, _ in cases}
    assert seen >= set(DropReason) - {DropReason.BUFFER_FULL, DropReason.TCP_RST_CLOSED,
                                       DropReason.TCP_NO_LISTENER, DropReason.MAC_ERROR}
    assert sum(case[4] for case in cases) >= 20
    assert run_parser(cases, seed=2) == len(cases)


# -- the whole front end at several widths ---------------------------------------------------


def run_frontend(width: int, frames, seed: int, marks=None) -> int:
    """Feed ``frames`` to RxFrontend as MAC beats (idle cycles between and inside frames),
    take its records with a stalling sink and release each frame's words as the
    dispatcher does.  Every record is checked as in the direct bench.

    ``marks`` (one per frame, default all None) drives ``mac_error``: ``"last"`` sets it
    on the frame's last beat (and at random on the others), ``"early"`` on every other
    beat and not on the last; with ``marks`` given it is also 1 on idle cycles."""
    config = ToeConfig(data_bytes=width)
    dut = RxFrontend(config)
    _, _, max_beats = buffer_geometry(config)
    rng = random.Random(seed)
    records = []
    marks = [None] * len(frames) if marks is None else marks
    idle_error = any(marks)

    async def source(ctx):
        for (frame, _), mark in zip(frames, marks, strict=True):
            for data, keep, last in split_beats(frame, width):
                while rng.random() < 0.1:
                    ctx.set(dut.i.valid, 0)
                    ctx.set(dut.mac_error, idle_error)
                    await ctx.tick()
                if last:
                    error = mark == "last"
                else:
                    error = mark == "early" or (mark == "last" and rng.random() < 0.5)
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p, {"data": data, "keep": keep, "last": last})
                ctx.set(dut.mac_error, error)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.mac_error, idle_error)
            if rng.random() < 0.3:
                await ctx.tick().repeat(rng.randint(1, 3))

    async def sink(ctx):
        ctx.set(dut.mac_addr, config.mac_addr)
        ctx.set(dut.ip_addr, config.ip_addr)
        ctx.set(dut.netmask, config.netmask)
        while len(records) < len(frames):
            ready = rng.random() < 0.7
            ctx.set(dut.meta.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.meta.valid, dut.meta.payload)
            ctx.set(dut.release, 0)
            if valid and ready:
                records.append(payload)
                ctx.set(dut.release, 1)
                ctx.set(dut.release_ptr, payload.buf_end)

    run(dut, source, sink)
    largest = config.max_frame_bytes
    for (frame, label), meta, mark in zip(frames, records, marks, strict=True):
        want = classify(frame, config)
        if mark == "last":
            want = Classification(Verdict.DROP, DropReason.MAC_ERROR)
        frame_len = len(frame)
        if len(frame) > max_beats * width:  # the beat counter saturates: still oversize
            assert meta.frame_len > largest
            frame_len = meta.frame_len
        check_meta(meta, frame, want, f"W={width} {label}", frame_len)
    return len(records)


@pytest.mark.parametrize(("width", "count", "longest"), [(1, 250, 200), (8, 250, 2100),
                                                        (64, 300, 2100)])
def test_frontend_random_frames(width, count, longest):
    """RxFrontend (capture, checksums, buffer and parser as wired in hdl/rx/frontend.py) at
    1, 8 and 64 bytes per beat (docs/architecture.md "The stream beat"): seeded random
    frames and the corner cases, each decided as sim/reference.py says and parsed as scapy
    reads it; frames longer than the beat counter covers are still OVERSIZE."""
    rng = random.Random(width)
    frames = [(f, label) for f, label in corner_frames() if len(f) <= max(longest, 1515)]
    if width == 1:
        frames = [(f, label) for f, label in frames if len(f) <= 160]
    while len(frames) < count:
        frame, label = random_frame(rng)
        if len(frame) <= longest:
            frames.append((frame, label))
    rng.shuffle(frames)
    assert run_frontend(width, frames, seed=width + 100) == len(frames)


@pytest.mark.parametrize("width", [1, 8, 64])
def test_frontend_mac_error_drops_the_marked_frame(width):
    """IEEE 802.3 s3.2.9 (a frame whose FCS does not check is discarded) and the
    architecture's "a bad frame is marked on its last beat and dropped and counted by the
    parser" (issue 13; EthernetMac.rx_error, docs/mac.md): a frame whose last beat carries
    ``mac_error`` leaves RxFrontend as DROP / MAC_ERROR, the reason of the counter
    ``drop_mac_error``, even when its bytes are a valid ARP, ICMP or TCP frame, a runt or
    oversize (the mark is checked first); the good frame after it is decided and parsed
    as if no bad frame had come before; ``mac_error`` on any other beat, or while no beat
    is offered, changes nothing."""
    assert "drop_mac_error" in COUNTERS
    rng = random.Random(802 + width)
    longest = 160 if width == 1 else 1600
    frames, marks = [], []
    pool = [bytes(13), bytes(rng.getrandbits(8) for _ in range(longest))]
    while len(pool) < 24:
        frame, label = random_frame(rng)
        if len(frame) <= longest:
            pool.append(frame)
    for k, bad in enumerate(pool):
        good = [bytes(tcp_frame(rng, payload=rng.choice([0, 5, 100]), options=b"")),
                bytes(icmp_frame(rng, payload=rng.choice([0, 30]))),
                bytes(arp_frame(rng))][k % 3]
        frames += [(bytes(bad), "marked"), (good, "good after a marked frame")]
        marks += ["last", "early" if k % 2 else None]
    assert run_frontend(width, frames, seed=width + 200, marks=marks) == len(frames)
    accepted = [f for (f, _), mark in zip(frames, marks, strict=True)
                if mark != "last" and classify(f, CONFIG).verdict != Verdict.DROP]
    assert len(accepted) >= 12  # the good frames really are accepted ones
