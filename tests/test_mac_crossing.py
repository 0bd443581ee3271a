"""Unit tests of hdl/mac/crossing.py (RxCrossing, TxCrossing) with two clocks.

The PHY domain ``eth`` runs at 8 ns (125 MHz); the core domain ``sync`` runs faster or
slower than the wire.  Reference: the frames written must come out byte-exact and in
order; on RX overflow the rules of RxCrossing's docstring decide which frames arrive
whole, cut and marked, or not at all.
"""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator
from amaranth_helpers import beat_bytes, split_beats
from test_mac_reference import scapy_frame

from toe.hdl.mac.crossing import RxCrossing, TxCrossing

PHY_PERIOD = 8e-9


def simulate(dut, benches, core_period):
    top = Module()
    top.domains += [ClockDomain("eth"), ClockDomain("sync")]
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(PHY_PERIOD, domain="eth")
    sim.add_clock(core_period, domain="sync")
    for bench, background in benches:
        sim.add_testbench(bench, background=background)
    sim.run()


@pytest.mark.parametrize("width,core_period", [(8, 20e-9), (8, 3e-9), (1, 7e-9)])
def test_tx_crossing_releases_whole_frames_only(width, core_period):
    """IEEE 802.3 s4.2.3.3 / s4.2.8: once a frame's transmission starts it is sent to
    its end without pause (the PHY cannot be held back), so the frame store starts a
    frame only after its last beat was written.  The core writes slowly (gaps of up to
    12 core cycles between beats); the PHY side never raises ``o.valid`` for a frame
    before its last beat was written, then takes the frame with no gap, byte-exact,
    across clocks of different periods."""
    rng = random.Random(width)
    frames = [scapy_frame(n, seed=n) for n in (60, 14, 200, 64)]
    dut = TxCrossing(width, max_frame_bytes=1518, depth=512 if width == 8 else 4096)
    last_written = {}  # frame index -> simulation time of its last beat's write
    got = []

    async def writer(ctx):
        edges = 0  # core clock edges so far: the time is edges * core_period
        for index, frame in enumerate(frames):
            for data, keep, last in split_beats(frame, width):
                for _ in range(rng.randrange(13)):
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick("sync")
                    edges += 1
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, data)
                ctx.set(dut.i.p.keep, keep)
                ctx.set(dut.i.p.last, last)
                while True:
                    _, _, ready = await ctx.tick("sync").sample(dut.i.ready)
                    edges += 1
                    if ready:
                        break
                if last:
                    last_written[index] = edges * core_period
            ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        ctx.set(dut.o.ready, 1)
        edges = 0  # PHY clock edges so far
        for index in range(len(frames)):
            current = bytearray()
            started = None
            while True:
                _, _, valid, data, keep, last = await ctx.tick("eth").sample(
                    dut.o.valid, dut.o.p.data, dut.o.p.keep, dut.o.p.last)
                edges += 1
                if started is None:
                    if not valid:
                        continue
                    started = edges * PHY_PERIOD
                    assert index in last_written and last_written[index] < started, (
                        "frame released before its last beat was written")
                assert valid, "gap inside a frame on the PHY side"
                current.extend(beat_bytes(data, keep, width))
                if last:
                    break
            got.append(bytes(current))

    simulate(dut, [(writer, False), (reader, False)], core_period)
    assert got == frames


def test_tx_crossing_cuts_overlong_frame():
    """IEEE 802.3 s4.2.3.3 / s4.4.2 maxFrameSize: a frame longer than the largest frame
    is cut there (so it always fits the frame store and cannot block it); the next frame
    goes out whole."""
    width = 8
    long_frame, frame = scapy_frame(300, seed=1), scapy_frame(64, seed=2)
    dut = TxCrossing(width, max_frame_bytes=96, depth=32)
    got = []

    async def writer(ctx):
        for f in (long_frame, frame):
            for data, keep, last in split_beats(f, width):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, data)
                ctx.set(dut.i.p.keep, keep)
                ctx.set(dut.i.p.last, last)
                await ctx.tick("sync").until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        ctx.set(dut.o.ready, 1)
        current = bytearray()
        while len(got) < 2:
            _, _, valid, data, keep, last = await ctx.tick("eth").sample(
                dut.o.valid, dut.o.p.data, dut.o.p.keep, dut.o.p.last)
            if valid:
                current.extend(beat_bytes(data, keep, width))
                if last:
                    got.append(bytes(current))
                    current = bytearray()

    simulate(dut, [(writer, False), (reader, False)], 10e-9)
    assert got == [long_frame[:96], frame]


def rx_crossing_run(width, core_period, frames, *, depth, ready_rate, gap=20):
    """Write beats in the PHY clock at wire pace (one beat per ``width`` cycles, ``gap``
    idle cycles between frames); read with ``o.ready`` high a ``ready_rate`` of cycles.
    Returns (frames read as (bytes, error), overflow pulses)."""
    rng = random.Random(width * 1000 + depth)
    dut = RxCrossing(width, depth=depth)
    got, overflows = [], []
    done = []

    async def writer(ctx):
        count = 0
        for frame, error in frames:
            for data, keep, last in split_beats(frame, width):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, data)
                ctx.set(dut.i.p.keep, keep)
                ctx.set(dut.i.p.last, last)
                ctx.set(dut.i.p.error, error and last)
                _, _, overflow = await ctx.tick("eth").sample(dut.overflow)
                count += overflow
                ctx.set(dut.i.valid, 0)
                for _ in range(width - 1):
                    _, _, overflow = await ctx.tick("eth").sample(dut.overflow)
                    count += overflow
            for _ in range(gap):
                _, _, overflow = await ctx.tick("eth").sample(dut.overflow)
                count += overflow
        for _ in range(400):
            _, _, overflow = await ctx.tick("eth").sample(dut.overflow)
            count += overflow
        overflows.append(count)
        done.append(True)

    async def reader(ctx):
        current = bytearray()
        while not done:
            ready = int(rng.random() < ready_rate)
            ctx.set(dut.o.ready, ready)
            _, _, valid, data, keep, last, error = await ctx.tick("sync").sample(
                dut.o.valid, dut.o.p.data, dut.o.p.keep, dut.o.p.last, dut.error)
            if valid and ready:
                current.extend(beat_bytes(data, keep, width))
                if last:
                    got.append((bytes(current), error))
                    current = bytearray()
                else:
                    assert error == 0

    simulate(dut, [(writer, False), (reader, True)], core_period)
    return got, overflows[0]


@pytest.mark.parametrize("width,core_period", [(8, 13e-9), (8, 50e-9), (64, 9e-9), (1, 5e-9)])
def test_rx_crossing_fast_enough_core_gets_every_frame(width, core_period):
    """IEEE 802.3 s4.2.9 (frames are passed up in order, with their status): with a core
    that keeps up on average, every frame crosses byte-exact, its error flag kept on the
    last beat, and no overflow is reported.  Clock periods differ from the PHY's (faster,
    slower but wide enough)."""
    frames = [(scapy_frame(n, seed=n), n % 3 == 0) for n in (60, 61, 64, 99, 300, 60)]
    got, overflows = rx_crossing_run(width, core_period, frames, depth=128, ready_rate=0.9)
    assert got == frames
    assert overflows == 0


def test_rx_crossing_overflow_cuts_and_marks():
    """IEEE 802.3 s4.2.9 (a receiver that cannot keep a frame must not pass it on as
    good): a core far slower than the wire overflows a small queue.  Every frame read is
    either a frame sent, whole, with its own flag, or a prefix of a frame sent marked
    bad (a terminating byte of value 0 after it); frames come in order, every frame sent
    is whole, cut or missing, and each cut or missing frame is counted by ``overflow``."""
    width = 8
    frames = [(scapy_frame(n, seed=n), False) for n in (200, 64, 300, 60, 100, 64, 500)]
    got, overflows = rx_crossing_run(width, 40e-9, frames, depth=16, ready_rate=0.5, gap=12)
    whole = cut = 0
    position = 0
    for data, error in got:
        while position < len(frames) and not (
                data == frames[position][0] or (error and frames[position][0].startswith(
                    data[:-1]) and data[-1] == 0)):
            position += 1
        assert position < len(frames), f"a frame that was not sent: {data[:20].hex()}"
        if data == frames[position][0] and error == frames[position][1]:
            whole += 1
        else:
            assert error == 1
            cut += 1
        position += 1
    assert cut >= 1
    assert whole + overflows == len(frames)
