"""Tests of hdl/mac/rgmii.py (RgmiiPhy) and of the whole layer at the RGMII pins.

The bench is the PHY chip: it drives RXC, RD[3:0] and RX_CTL half a cycle at a time
(data stable 2 ns either side of each RXC edge, as after the 2 ns clock delay of RGMII
2.0 s3.3) and samples TD[3:0], TX_CTL and TXC in the middle of each half cycle.  The DDR
cells are the simulator's behavioural models (platform ``None``).
"""

from types import SimpleNamespace

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import io, wiring
from amaranth.sim import Simulator
from amaranth_helpers import beat_bytes, split_beats
from test_mac_reference import scapy_frame, wire_octets

from toe.hdl.mac.gmii import SPEED_100, SPEED_1000
from toe.hdl.mac.mac import EthernetMac
from toe.hdl.mac.rgmii import RgmiiPhy

QUARTER = 2e-9  # a quarter of the 8 ns RXC period
#: RGMII 2.0 s3.4.1 in-band status nibbles: link up, 125 MHz, full duplex; and link down.
STATUS_UP_1000_FULL = 0b1101
STATUS_UP_100_FULL = 0b1011
STATUS_DOWN = 0b0000


def rgmii_pins():
    return SimpleNamespace(
        rx_clk=io.SimulationPort("i", 1, name="rxc"),
        rx_ctrl=io.SimulationPort("i", 1, name="rx_ctl"),  # the amaranth-boards name
        rx_data=io.SimulationPort("i", 4, name="rxd"),
        tx_clk=io.SimulationPort("o", 1, name="txc"),
        tx_ctl=io.SimulationPort("o", 1, name="tx_ctl"),
        tx_data=io.SimulationPort("o", 4, name="txd"),
    )


class PhyChip:
    """The PHY side of the RGMII link, one RXC cycle per :meth:`cycle`."""

    def __init__(self, pins):
        self.pins = pins
        self.tx = []  # (tx_en, tx_er, byte, txc high, txc low) per cycle

    async def cycle(self, ctx, byte=None, *, er=0, idle_nibble=STATUS_UP_1000_FULL):
        """Send one octet (RX_DV = 1) or, with ``byte`` None, an idle cycle carrying the
        in-band status nibble; RX_CTL is RX_DV on the rising edge and RX_DV xor RX_ER on
        the falling edge (RGMII 2.0 s3.2)."""
        p = self.pins
        dv = int(byte is not None)
        lo, hi = (byte & 0xF, byte >> 4) if dv else (idle_nibble, idle_nibble)
        ctx.set(p.rx_data.i, lo)
        ctx.set(p.rx_ctrl.i, dv)
        await ctx.delay(QUARTER)
        ctx.set(p.rx_clk.i, 1)
        await ctx.delay(QUARTER)
        tx_lo, ctl_rise, txc_high = ctx.get(p.tx_data.o), ctx.get(p.tx_ctl.o), ctx.get(p.tx_clk.o)
        ctx.set(p.rx_data.i, hi)
        ctx.set(p.rx_ctrl.i, dv ^ er)
        await ctx.delay(QUARTER)
        ctx.set(p.rx_clk.i, 0)
        await ctx.delay(QUARTER)
        tx_hi, ctl_fall, txc_low = ctx.get(p.tx_data.o), ctx.get(p.tx_ctl.o), ctx.get(p.tx_clk.o)
        self.tx.append((ctl_rise, ctl_rise ^ ctl_fall, tx_lo | (tx_hi << 4), txc_high, txc_low))


class NibblePhyChip:
    """The PHY side at 100 Mbit/s: RXC at 25 MHz, one nibble per cycle on both edges
    (RX_CTL still RX_DV on the rising and RX_DV xor RX_ER on the falling edge)."""

    QUARTER = 10e-9  # a quarter of the 40 ns RXC period

    def __init__(self, pins):
        self.pins = pins
        self.tx = []  # (tx_en, tx_er, nibble after the rising edge, after the falling)

    async def cycle(self, ctx, nibble=None, *, er=0, idle_nibble=STATUS_UP_100_FULL):
        p = self.pins
        dv = int(nibble is not None)
        ctx.set(p.rx_data.i, nibble if dv else idle_nibble)
        ctx.set(p.rx_ctrl.i, dv)
        await ctx.delay(self.QUARTER)
        ctx.set(p.rx_clk.i, 1)
        await ctx.delay(self.QUARTER)
        rise, ctl_rise = ctx.get(p.tx_data.o), ctx.get(p.tx_ctl.o)
        ctx.set(p.rx_ctrl.i, dv ^ er)
        await ctx.delay(self.QUARTER)
        ctx.set(p.rx_clk.i, 0)
        await ctx.delay(self.QUARTER)
        fall, ctl_fall = ctx.get(p.tx_data.o), ctx.get(p.tx_ctl.o)
        self.tx.append((ctl_rise, ctl_rise ^ ctl_fall, rise, fall))

    async def octets(self, ctx, octets, skip_first_nibble=False):
        """A frame's octets, low nibble first (RGMII 2.0 s3.3 at 10/100 Mbit/s)."""
        nibbles = [n for b in octets for n in (b & 0xF, b >> 4)]
        for nibble in nibbles[int(skip_first_nibble):]:
            await self.cycle(ctx, nibble)


def simulate(top, *benches, core_period=None):
    sim = Simulator(top)
    if core_period:
        sim.add_clock(core_period, domain="sync")
    for bench, background in benches:
        sim.add_testbench(bench, background=background)
    sim.run()


def cut_frames(units):
    """``(tx_en, value)`` per cycle cut into frames at TX_EN: (the frames, each a list of
    its values, and the idle cycles between one frame and the next)."""
    frames, current, idle, gaps = [], [], 0, []
    for en, value in units:
        if en:
            if not current and frames:
                gaps.append(idle)
            current.append(value)
            idle = 0
        else:
            if current:
                frames.append(current)
                current = []
            idle += 1
    return frames, gaps


def layer_top(pins, width):
    """RgmiiPhy and EthernetMac at W = ``width``, wired as a board top wires them."""
    top = Module()
    top.domains += [ClockDomain("sync"), ClockDomain("eth")]
    top.submodules.phy = phy = RgmiiPhy(pins, create_domain=False)
    top.submodules.mac = mac = EthernetMac(width)
    wiring.connect(top, phy.gmii, mac.gmii)
    wiring.connect(top, phy.status, mac.phy_status)
    return top, mac


def core_bench(mac, width, tx_frames, received, link, done, may_send=lambda: True):
    """The core side: writes ``tx_frames`` as beats (while ``may_send()``), collects
    the received frames with their error flag, and keeps the link status in ``link``,
    until ``done``."""
    async def core(ctx):
        ctx.set(mac.rx.ready, 1)
        current = bytearray()
        queue = [b for f in tx_frames for b in split_beats(f, width)]
        while not done:
            sending = bool(queue) and may_send()
            if sending:
                data, keep, last = queue[0]
                ctx.set(mac.tx.valid, 1)
                ctx.set(mac.tx.p.data, data)
                ctx.set(mac.tx.p.keep, keep)
                ctx.set(mac.tx.p.last, last)
            else:
                ctx.set(mac.tx.valid, 0)
            _, _, tx_ready, valid, data, keep, last, error = await ctx.tick().sample(
                mac.tx.ready, mac.rx.valid, mac.rx.p.data, mac.rx.p.keep, mac.rx.p.last,
                mac.rx_error)
            if sending and tx_ready:
                queue.pop(0)
            if valid:
                current.extend(beat_bytes(data, keep, width))
                if last:
                    received.append((bytes(current), error))
                    current = bytearray()
                else:
                    assert error == 0, "the error flag is read with the last beat only"
            link["state"] = (ctx.get(mac.link_up), ctx.get(mac.link_speed),
                             ctx.get(mac.full_duplex))
    return core


def test_rgmii_rx_nibbles_ctl_and_status():
    """RGMII 2.0 s3.2: RD[3:0] on the rising edge are bits 3:0 and on the falling edge
    bits 7:4 of one GMII octet; RX_CTL is RX_DV on the rising and RX_DV xor RX_ER on the
    falling edge.  s3.4.1: between frames RD[3:0] is the in-band status (bit 0 link,
    bits 2:1 speed, bit 3 duplex), latched only while RX_DV = RX_ER = 0."""
    pins = rgmii_pins()
    dut = RgmiiPhy(pins)
    chip = PhyChip(pins)
    octets = wire_octets(scapy_frame(64, seed=1))
    er_index = 30
    seen = []
    status = {}

    async def bench(ctx):
        for _ in range(6):
            await chip.cycle(ctx, idle_nibble=STATUS_DOWN)
        status["down"] = (ctx.get(dut.status.link_up), ctx.get(dut.status.speed))
        for _ in range(4):
            await chip.cycle(ctx)
        status["up"] = (ctx.get(dut.status.link_up), ctx.get(dut.status.speed),
                        ctx.get(dut.status.full_duplex))
        for index, byte in enumerate(octets):
            await chip.cycle(ctx, byte, er=int(index == er_index))
            seen.append((ctx.get(dut.gmii.rx_dv), ctx.get(dut.gmii.rx_er),
                         ctx.get(dut.gmii.rx_data)))
        for _ in range(6):
            # 100 Mbit/s status nibble (0b1011): must not be taken during the frame's tail,
            # and is taken once the link is idle.
            await chip.cycle(ctx, idle_nibble=0b1011)
            seen.append((ctx.get(dut.gmii.rx_dv), ctx.get(dut.gmii.rx_er),
                         ctx.get(dut.gmii.rx_data)))
        status["after"] = (ctx.get(dut.status.link_up), ctx.get(dut.status.speed),
                           ctx.get(dut.status.full_duplex))

    simulate(dut, (bench, False))
    received = [(er, data) for dv, er, data in seen if dv]
    assert bytes(d for _, d in received) == octets
    assert [i for i, (er, _) in enumerate(received) if er] == [er_index]
    assert status["down"] == (0, 0)
    assert status["up"] == (1, SPEED_1000, 1)
    assert status["after"] == (1, SPEED_100, 1)


def test_rgmii_tx_nibbles_ctl_and_clock():
    """RGMII 2.0 s3.2: TD[3:0] carry bits 3:0 after the rising edge of TXC and bits 7:4
    after the falling edge; TX_CTL = TX_EN (rising), TX_EN xor TX_ER (falling); TXC is
    the 125 MHz clock (high in the first half of each cycle, s3.3)."""
    pins = rgmii_pins()
    dut = RgmiiPhy(pins)
    chip = PhyChip(pins)
    sent = [(1, 0, b) for b in wire_octets(scapy_frame(60, seed=2))] + [(1, 1, 0x5A)]

    async def bench(ctx):
        for _ in range(4):
            await chip.cycle(ctx)
        for en, er, byte in [*sent, *([(0, 0, 0)] * 6)]:
            ctx.set(dut.gmii.tx_en, en)
            ctx.set(dut.gmii.tx_er, er)
            ctx.set(dut.gmii.tx_data, byte)
            await chip.cycle(ctx)

    simulate(dut, (bench, False))
    assert all(high == 1 and low == 0 for *_, high, low in chip.tx[4:])
    wire = [(en, er, byte) for en, er, byte, _, _ in chip.tx if en]
    assert wire == sent


def test_rgmii_layer_at_the_pins():
    """IEEE 802.3 clauses 3 and 4 through RGMII 2.0, the whole layer (RgmiiPhy and
    EthernetMac at W = 8, the core at 20 ns): frames driven at the RX pins come out as
    beats with the FCS stripped and the error flag set only for the bad FCS; frames
    written as beats go out at the TX pins as 7 x 0x55, 0xD5, frame, pad, FCS with at
    least 12 idle octets between them; the in-band status reaches the core domain."""
    width = 8
    pins = rgmii_pins()
    top, mac = layer_top(pins, width)
    chip = PhyChip(pins)

    rx_frames = [scapy_frame(n, seed=n) for n in (64, 60, 150)]
    bad = bytearray(wire_octets(rx_frames[1]))
    bad[-2] ^= 1
    rx_wire = [wire_octets(rx_frames[0]), bytes(bad), wire_octets(rx_frames[2])]
    tx_frames = [scapy_frame(n, seed=n + 100) for n in (20, 100)]
    received, link = [], {}
    done = []

    async def phy_chip(ctx):
        for _ in range(8):
            await chip.cycle(ctx)
        for octets in rx_wire:
            for byte in octets:
                await chip.cycle(ctx, byte)
            for _ in range(12):
                await chip.cycle(ctx)
        # Then idle until the core has the frames and TX is quiet (at most 3000 cycles).
        while (len(received) < 3 or any(t[0] for t in chip.tx[-20:]) or len(chip.tx) < 600
               ) and len(chip.tx) < 3000:
            await chip.cycle(ctx)
        done.append(True)

    core = core_bench(mac, width, tx_frames, received, link, done)

    simulate(top, (phy_chip, False), (core, True), core_period=20e-9)
    assert received == [(rx_frames[0], 0), (rx_frames[1], 1), (rx_frames[2], 0)]
    assert link["state"] == (1, SPEED_1000, 1)

    # Cut the TX pins' octets into frames at TX_EN and measure the gaps between them.
    assert all(er == 0 for _, er, *_ in chip.tx)
    frames, gaps = cut_frames((en, byte) for en, _, byte, _, _ in chip.tx)
    assert [bytes(f) for f in frames] == [wire_octets(f) for f in tx_frames]
    assert all(g >= 12 for g in gaps)


def test_rgmii_layer_at_100_mbit_s():
    """RGMII 2.0 s3.3 at 100 Mbit/s (RXC 25 MHz): with the in-band status saying link up
    at 25 MHz, the PHY takes one nibble a cycle, low nibble first, and the MAC steps on
    every second cycle (``gmii.enable``).  Frames at the RX pins come out whole with the
    FCS stripped, also one whose preamble starts mid-octet (the receiver aligns on the
    SFD); frames written as beats leave as nibbles, the same on both edges, with at
    least 12 idle octets (24 cycles) between them; the core reads SPEED_100."""
    width = 8
    pins = rgmii_pins()
    top, mac = layer_top(pins, width)
    chip = NibblePhyChip(pins)

    rx_frames = [scapy_frame(n, seed=n) for n in (64, 60, 150)]
    tx_frames = [scapy_frame(n, seed=n + 100) for n in (20, 100)]
    received, link, done = [], {}, []

    async def phy_chip(ctx):
        for _ in range(8):
            await chip.cycle(ctx)
        for k, frame in enumerate(rx_frames):
            await chip.octets(ctx, wire_octets(frame), skip_first_nibble=k == 1)
            for _ in range(24):
                await chip.cycle(ctx)
        while (len(received) < 3 or any(t[0] for t in chip.tx[-40:]) or len(chip.tx) < 1200
               ) and len(chip.tx) < 6000:
            await chip.cycle(ctx)
        done.append(True)

    # TX once the core has seen the link at 100 Mbit/s (a frame that starts before the
    # speed is known is cut by the change, as on any link change).
    core = core_bench(mac, width, tx_frames, received, link, done,
                      may_send=lambda: link.get("state", (0, 0, 0))[1] == SPEED_100)

    simulate(top, (phy_chip, False), (core, True), core_period=20e-9)
    assert received == [(f, 0) for f in rx_frames]
    assert link["state"] == (1, SPEED_100, 1)

    assert all(er == 0 for _, er, _, _ in chip.tx)
    assert all(rise == fall for en, _, rise, fall in chip.tx if en), \
        "at 10/100 a nibble is the same on both edges"
    nibble_frames, gaps = cut_frames((en, rise) for en, _, rise, _ in chip.tx)
    assert all(len(f) % 2 == 0 for f in nibble_frames), "a frame is whole octets"
    frames = [bytes(lo | hi << 4 for lo, hi in zip(f[::2], f[1::2], strict=True))
              for f in nibble_frames]
    assert frames == [wire_octets(f) for f in tx_frames]
    assert all(g >= 24 for g in gaps), gaps
