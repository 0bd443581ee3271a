"""Unit tests of hdl/mac/mac_tx.py (MacTx) against the reference in test_mac_reference.py.

The bench offers frame bytes on ``i`` (every byte of a frame available, as the TX frame
store guarantees) and records GMII TXD/TX_EN/TX_ER every cycle.  The wire is cut into
frames at TX_EN and each frame's octets are compared with :func:`wire_octets`.
"""

from amaranth.sim import Simulator
from test_mac_reference import MIN_PADDED, fcs, scapy_frame, wire_octets

from toe.hdl.mac.mac_rx import MacRx
from toe.hdl.mac.mac_tx import MacTx


def run_tx(frames, *, hole_at=None, idle_before=0):
    """Send ``frames``; return the wire as a list of (tx_en, tx_er, tx_data) per cycle.

    ``hole_at`` = (frame index, byte index): ``i.valid`` drops for one cycle before that
    byte (an underrun, which the frame store normally prevents)."""
    dut = MacTx()
    wire = []
    total = sum(len(f) for f in frames)

    async def bench(ctx):
        for _ in range(idle_before):
            await ctx.tick()
        queue = [(fi, bi, b, bi == len(f) - 1) for fi, f in enumerate(frames)
                 for bi, b in enumerate(f)]
        holed = False
        sent = 0
        cycles = 0
        while sent < total or cycles < 40:
            if queue and (queue[0][0], queue[0][1]) == hole_at and not holed and ctx.get(
                    dut.i.ready):
                ctx.set(dut.i.valid, 0)
                holed = True
                _, _, ready = await ctx.tick().sample(dut.i.ready)
            elif queue:
                _, _, byte, last = queue[0]
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.p.data, byte)
                ctx.set(dut.i.p.last, last)
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    queue.pop(0)
                    sent += 1
            else:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycles += 1
            wire.append((ctx.get(dut.tx_en), ctx.get(dut.tx_er), ctx.get(dut.tx_data)))

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()
    return wire


def wire_frames(wire):
    """Cut the wire at TX_EN: list of (octets, any TX_ER, idle cycles before the frame)."""
    frames = []
    current, error, idle, gap_before = bytearray(), 0, 0, 0
    for en, er, byte in wire:
        if en:
            current.append(byte)
            error |= er
        else:
            if current:
                frames.append([bytes(current), error, gap_before])
                current, error = bytearray(), 0
                idle = 0
            idle += 1
        if en and len(current) == 1:
            gap_before = idle
    if current:
        frames.append([bytes(current), error, gap_before])
    return frames


def test_tx_preamble_sfd_fcs_exact():
    """IEEE 802.3 s3.2.1-2, s3.2.9: a frame goes out as exactly seven 0x55, one 0xD5, the
    frame's bytes and the FCS (CRC-32 least significant byte first), nothing more."""
    frame = scapy_frame(100, seed=1)
    got = wire_frames(run_tx([frame]))
    assert len(got) == 1
    octets, error, _ = got[0]
    assert octets[:8] == bytes([0x55] * 7 + [0xD5])
    assert octets == wire_octets(frame)
    assert octets[-4:] == fcs(frame)
    assert error == 0


def test_tx_padding_to_60_bytes():
    """IEEE 802.3 s3.2.8, s4.2.3.3: frames shorter than 60 bytes are padded with zero
    octets to 60 before the FCS (64 with it); 60 and 61 bytes get no pad."""
    frames = [scapy_frame(n, seed=n) for n in (1, 14, 42, 59, 60, 61)]
    got = wire_frames(run_tx(frames))
    assert [o for o, _, _ in got] == [wire_octets(f) for f in frames]
    for (octets, _, _), frame in zip(got, frames, strict=True):
        assert len(octets) == 8 + max(MIN_PADDED, len(frame)) + 4


def test_tx_inter_frame_gap_at_least_12_bytes():
    """IEEE 802.3 s4.4.2 interFrameSpacing 96 bit times: with frames waiting back to
    back, TX_EN stays low for at least 12 cycles (12 octets at 1000 Mbit/s) between
    frames, and for no more than 12 (line rate)."""
    frames = [scapy_frame(n, seed=n) for n in (60, 64, 100, 1514, 60)]
    got = wire_frames(run_tx(frames))
    assert [o for o, _, _ in got] == [wire_octets(f) for f in frames]
    gaps = [g for _, _, g in got[1:]]
    assert gaps == [12] * 4


def test_tx_underrun_sends_tx_er():
    """IEEE 802.3 s35.2.2.5: when a byte is missing mid-frame the MAC asserts TX_ER with
    TX_EN, so that the PHY sends an error and the receiver discards the frame; the next
    frame is sent normally."""
    frames = [scapy_frame(80, seed=1), scapy_frame(80, seed=2)]
    got = wire_frames(run_tx(frames, hole_at=(0, 30)))
    assert got[0][1] == 1
    assert got[1][0] == wire_octets(frames[1]) and got[1][1] == 0


def test_tx_into_rx_loopback():
    """IEEE 802.3 clause 4 both ways: the receiver accepts what the transmitter sends
    (padded frames come back with their pad, FCS checked and stripped)."""
    frames = [scapy_frame(n, seed=n) for n in (20, 64, 300)]
    wire = run_tx(frames)
    rx = MacRx()
    received = []

    async def bench(ctx):
        current = bytearray()
        for en, er, byte in wire + [(0, 0, 0)] * 10:
            ctx.set(rx.rx_dv, en)
            ctx.set(rx.rx_er, er)
            ctx.set(rx.rx_data, byte)
            await ctx.tick()
            if ctx.get(rx.o.valid):
                current.append(ctx.get(rx.o.p.data))
                if ctx.get(rx.o.p.last):
                    received.append((bytes(current), ctx.get(rx.o.p.error)))
                    current.clear()

    sim = Simulator(rx)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()
    assert received == [(f + bytes(max(0, 60 - len(f))), 0) for f in frames]
