"""Unit tests of hdl/mac/gearbox.py (RxGearbox 8 -> 8W bits, TxGearbox 8W -> 8 bits).

The reference is the beat format of hdl/stream.py, written out in
``amaranth_helpers.split_beats``: byte ``p`` of a frame in lane ``p % W``, ``keep``
contiguous from lane 0, only the last beat partial.  Frames are scapy frames of lengths
around the beat width, at W = 1, 8 and 64.
"""

import random

import pytest
from amaranth.sim import Simulator
from amaranth_helpers import beat_bytes, split_beats
from test_mac_reference import scapy_frame

from toe.hdl.mac.gearbox import RxGearbox, TxGearbox

WIDTHS = [1, 8, 64]


def frame_lengths(width):
    return sorted({1, 2, width - 1 or 1, width, width + 1, 60, 64, 131} - {0})


@pytest.mark.parametrize("width", WIDTHS)
def test_rx_gearbox_packs_bytes_into_beats(width):
    """hdl/stream.py beat format (AXI4-Stream TKEEP/TLAST, byte 0 in lane 0) after an
    IEEE 802.3 byte stream: bytes arriving with idle cycles between them (as from a MAC
    that strips the FCS) become the frame's beats; the error flag of a frame's last byte
    is on its last beat only."""
    rng = random.Random(width)
    frames = [(scapy_frame(n, seed=n), rng.random() < 0.5) for n in frame_lengths(width)]
    dut = RxGearbox(width)
    got = []

    async def bench(ctx):
        current = bytearray()
        stream = [(b, i == len(f) - 1, err) for f, err in frames for i, b in enumerate(f)]
        for byte, last, err in [*stream, *([(None, 0, 0)] * 4)]:
            if byte is not None and rng.random() < 0.2:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                check(ctx, current)
            if byte is None:
                ctx.set(dut.i.valid, 0)
            else:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, byte)
                ctx.set(dut.i.p.last, last)
                ctx.set(dut.i.p.error, err and last)
            await ctx.tick()
            check(ctx, current)

    def check(ctx, current):
        if not ctx.get(dut.o.valid):
            return
        keep, last = ctx.get(dut.o.p.keep), ctx.get(dut.o.p.last)
        chunk = beat_bytes(ctx.get(dut.o.p.data), keep, width)
        if not last:
            assert keep == (1 << width) - 1, "a partial beat that is not last"
            assert ctx.get(dut.o.p.error) == 0
        current.extend(chunk)
        if last:
            got.append((bytes(current), bool(ctx.get(dut.o.p.error))))
            current.clear()

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()
    assert got == frames


@pytest.mark.parametrize("width", WIDTHS)
def test_tx_gearbox_unpacks_beats_without_gaps(width):
    """hdl/stream.py beat format into the IEEE 802.3 s4.2.3 byte stream: every kept byte
    in lane order, ``last`` with the frame's last byte; a beat is taken with its last
    kept byte; with beats always offered and the MAC always ready, one byte per cycle
    (the wire cannot pause mid-frame); with the MAC stalling, nothing is lost."""
    frames = [scapy_frame(n, seed=n) for n in frame_lengths(width)]
    for stall in (False, True):
        rng = random.Random(width)
        dut = TxGearbox(width)
        beats = [b for f in frames for b in split_beats(f, width)]
        got, current = [], bytearray()
        cycles = 0

        async def bench(ctx, beats=beats, got=got, current=current, dut=dut, stall=stall,
                        rng=rng):
            nonlocal cycles
            queue = list(beats)
            while queue:
                data, keep, last = queue[0]
                ready = int(not stall or rng.random() < 0.6)
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, data)
                ctx.set(dut.i.p.keep, keep)
                ctx.set(dut.i.p.last, last)
                ctx.set(dut.o.ready, ready)
                _, _, taken, o_valid, byte, byte_last = await ctx.tick().sample(
                    dut.i.ready, dut.o.valid, dut.o.p.data, dut.o.p.last)
                cycles += 1
                assert o_valid
                if ready:
                    current.append(byte)
                    if byte_last:
                        got.append(bytes(current))
                        current.clear()
                if taken:
                    queue.pop(0)

        sim = Simulator(dut)
        sim.add_clock(8e-9)
        sim.add_testbench(bench)
        sim.run()
        assert got == frames
        if not stall:
            assert cycles == sum(len(f) for f in frames)
