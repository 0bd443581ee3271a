"""Tests of hdl/mac/mac.py (EthernetMac) at its GMII side, at W = 1 and W = 64.

The bench drives GMII RX octets (the reference's wire octets) in the 8 ns PHY clock and
records GMII TX; the core side runs in its own clock.  (W = 8 with the RGMII pins is in
test_mac_rgmii.py.)
"""

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator
from test_mac_reference import fcs, scapy_frame, wire_octets
from test_mac_rgmii import core_bench, cut_frames

from toe.hdl.mac.mac import EthernetMac


@pytest.mark.parametrize("width,core_period", [(1, 7e-9), (64, 30e-9)])
def test_mac_frames_both_ways(width, core_period):
    """IEEE 802.3 clauses 3 and 4 across the layer: RX frames (a good one, a runt with a
    correct FCS, a 1514-byte one) come out as beats with the FCS stripped and the error
    flag only on the runt's last beat; TX frames written as beats (one short, padded)
    come out as preamble, SFD, padded frame and FCS, at least 12 idle octets apart."""
    top = Module()
    top.domains += [ClockDomain("eth"), ClockDomain("sync")]
    top.submodules.mac = mac = EthernetMac(width)
    good, runt, big = scapy_frame(64, 1), scapy_frame(40, 2), scapy_frame(1514, 3)
    rx_wire = [wire_octets(good), wire_octets(runt, padded=False), wire_octets(big)]
    tx_frames = [scapy_frame(30, 4), scapy_frame(200, 5)]
    received, tx_wire, done = [], [], []

    async def phy(ctx):
        for octets in [b"", *rx_wire]:
            for byte in octets:
                ctx.set(mac.gmii.rx_dv, 1)
                ctx.set(mac.gmii.rx_data, byte)
                _, _, en, data = await ctx.tick("eth").sample(mac.gmii.tx_en, mac.gmii.tx_data)
                tx_wire.append((en, data))
            ctx.set(mac.gmii.rx_dv, 0)
            for _ in range(12):
                _, _, en, data = await ctx.tick("eth").sample(mac.gmii.tx_en, mac.gmii.tx_data)
                tx_wire.append((en, data))
        for _ in range(400):
            _, _, en, data = await ctx.tick("eth").sample(mac.gmii.tx_en, mac.gmii.tx_data)
            tx_wire.append((en, data))
        done.append(True)

    core = core_bench(mac, width, tx_frames, received, {}, done)

    sim = Simulator(top)
    sim.add_clock(8e-9, domain="eth")
    sim.add_clock(core_period, domain="sync")
    sim.add_testbench(phy)
    sim.add_testbench(core, background=True)
    sim.run()

    assert received == [(good, 0), (runt, 1), (big, 0)]
    cut, gaps = cut_frames(tx_wire)
    frames = [bytes(f) for f in cut]
    assert frames == [wire_octets(f) for f in tx_frames]
    assert frames[0][-4:] == fcs(tx_frames[0] + bytes(30))
    assert all(g >= 12 for g in gaps)
