"""Unit tests of hdl/mac/mac_rx.py (MacRx) against the reference in test_mac_reference.py.

The bench drives GMII RXD/RX_DV/RX_ER one octet per cycle from wire octets built by the
reference (scapy frames, zlib FCS) and collects the output bytes; each received frame is
compared with the frame that was sent, FCS stripped, and its error flag with the rule
the test names.
"""

import pytest
from amaranth.sim import Simulator
from test_mac_reference import PREAMBLE, SFD, fcs, scapy_frame, wire_octets

from toe.hdl.mac.mac_rx import MacRx


def gmii_cycles(octets: bytes, *, er_at=(), gap: int = 12):
    """(data, dv, er) per cycle for one frame's octets followed by ``gap`` idle cycles."""
    cycles = [(b, 1, int(i in er_at)) for i, b in enumerate(octets)]
    return cycles + [(0, 0, 0)] * gap


def run_rx(cycles, max_frame_bytes=1522):
    """Drive the cycles; return the received frames as (bytes, error) in order."""
    dut = MacRx(max_frame_bytes)
    frames = []

    async def bench(ctx):
        current = bytearray()
        for data, dv, er in [*cycles, *([(0, 0, 0)] * 10)]:
            ctx.set(dut.rx_data, data)
            ctx.set(dut.rx_dv, dv)
            ctx.set(dut.rx_er, er)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                current.append(ctx.get(dut.o.p.data))
                if ctx.get(dut.o.p.last):
                    frames.append((bytes(current), ctx.get(dut.o.p.error)))
                    current.clear()
                else:
                    assert ctx.get(dut.o.p.error) == 0, "error flag on a byte that is not last"
        assert not current, "a frame without its last byte"

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()
    return frames


def test_rx_good_frames_several_lengths():
    """IEEE 802.3 s3.2.9, s4.2.9: frames with a correct FCS are passed on whole, FCS
    stripped and not flagged; frames of 14..59 bytes arrive padded to 60 (s3.2.8: the
    pad is part of the frame the receiver sees), and 60, 64 and 1514 bytes as they are."""
    lengths = [14, 15, 42, 59, 60, 64, 1514]
    frames = [scapy_frame(n, seed=n) for n in lengths]
    cycles = []
    for frame in frames:
        cycles += gmii_cycles(wire_octets(frame))
    got = run_rx(cycles)
    expected = [(frame + bytes(max(0, 60 - len(frame))), 0) for frame in frames]
    assert got == expected


def test_rx_bad_fcs_is_marked():
    """IEEE 802.3 s4.2.4.1.2 / s4.2.9: a frame whose FCS does not match is marked bad on
    its last byte (one flipped bit in the data, one in the FCS)."""
    frame = scapy_frame(100, seed=3)
    bad_data = bytearray(wire_octets(frame))
    bad_data[8 + 50] ^= 0x10
    bad_fcs = bytearray(wire_octets(frame))
    bad_fcs[-1] ^= 0x80
    good = wire_octets(frame)
    got = run_rx(gmii_cycles(bytes(bad_data)) + gmii_cycles(bytes(bad_fcs)) + gmii_cycles(good))
    assert [err for _, err in got] == [1, 1, 0]
    assert got[1][0] == frame and got[2][0] == frame


@pytest.mark.parametrize("length", [5, 30, 59])
def test_rx_runt_is_marked(length):
    """IEEE 802.3 s4.2.4.2.2 / s4.4.2 minFrameSize: a frame of fewer than 64 octets with
    its FCS is invalid even with a correct FCS; it is marked on its last byte.  A frame of
    exactly 64 octets with FCS is not."""
    short = scapy_frame(length, seed=length)
    minimal = scapy_frame(60, seed=1)
    cycles = gmii_cycles(wire_octets(short, padded=False)) + gmii_cycles(wire_octets(minimal))
    got = run_rx(cycles)
    assert got == [(short, 1), (minimal, 0)]


def test_rx_fragment_without_data_is_dropped():
    """IEEE 802.3 s4.2.4.2.2: fragments (here four octets after the SFD, less than an FCS)
    are not passed on; the next frame is received normally."""
    frame = scapy_frame(64, seed=9)
    cycles = gmii_cycles(PREAMBLE + SFD + b"\x01\x02\x03\x04") + gmii_cycles(wire_octets(frame))
    assert run_rx(cycles) == [(frame, 0)]


def test_rx_er_mid_frame_is_marked():
    """IEEE 802.3 s35.2.2.8: RX_ER asserted with RX_DV during a frame means the PHY saw
    an error; the frame is marked bad even though its FCS is correct."""
    frame = scapy_frame(200, seed=5)
    octets = wire_octets(frame)
    got = run_rx(gmii_cycles(octets, er_at=(8 + 77,)) + gmii_cycles(octets))
    assert got == [(frame, 1), (frame, 0)]


def test_rx_back_to_back_minimum_gap():
    """IEEE 802.3 s4.4.2 interFrameSpacing 96 bit times: frames 12 idle octets apart are
    received as separate frames, each with its own FCS check."""
    frames = [scapy_frame(n, seed=n) for n in (60, 61, 64, 100, 60)]
    cycles = []
    for frame in frames:
        cycles += gmii_cycles(wire_octets(frame), gap=12)
    assert run_rx(cycles) == [(f, 0) for f in frames]


def test_rx_short_preamble_and_bad_preamble():
    """IEEE 802.3 s4.2.9 / s35.2.3.2.2: the receiver looks for the SFD after any number of
    preamble octets (a PHY may pass on a shortened preamble, RGMII 2.0 s3.3); a frame
    with a non-preamble octet before the SFD is discarded."""
    frame = scapy_frame(64, seed=2)
    body = frame + fcs(frame)
    short = bytes([0x55, 0x55]) + SFD + body
    no_preamble = SFD + body
    broken = bytes([0x55, 0x55, 0x12, 0x55]) + SFD + body
    got = run_rx(gmii_cycles(short) + gmii_cycles(broken) + gmii_cycles(no_preamble))
    assert got == [(frame, 0), (frame, 0)]


def test_rx_too_long_is_cut_and_marked():
    """IEEE 802.3 s4.2.4.2.1 (frameTooLong): a frame longer than the largest frame
    (here 100 octets with FCS) is cut at that size and marked; the next frame is fine."""
    long_frame = scapy_frame(300, seed=4)
    frame = scapy_frame(64, seed=6)
    got = run_rx(gmii_cycles(wire_octets(long_frame)) + gmii_cycles(wire_octets(frame)),
                 max_frame_bytes=100)
    assert got[0] == (long_frame[:96], 1)
    assert got[1] == (frame, 0)
