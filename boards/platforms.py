"""Board platforms: the ECP5 boards the engine is built for, with their RGMII ports.

- :class:`Ecpix585Platform`: LambdaConcept ECPIX-5 85F (LFE5UM5G-85F-8BG554, one
  Microchip KSZ9031RNX).  amaranth-boards' ``ECPIX585Platform`` with the one change the
  PHY needs: the KSZ9031 samples its MODE[3:0] straps on RXD[3:0] while its reset is
  held (KSZ9031RNX data sheet, "Strapping Options": MODE = 1111 selects RGMII with
  every 10/100/1000 capability advertised), so the RX data pins get the FPGA's
  pull-ups (``PULLMODE=UP``), which the amaranth-boards resource does not set.
- :class:`ColorlightI9Platform`: Colorlight i9 v7.2 (LFE5U-45F-6BG381C, two Broadcom
  B50612D), not in amaranth-boards.  Pin-out from litex-boards'
  ``litex_boards/platforms/colorlight_i5.py`` (board ``"i9"``, revision 7.2, which
  takes the i5 v7.0 pins and moves the user LED to L2).  The two PHYs share their reset
  (P4) and MDIO/MDC (P5/N5) pins: they are declared once, as ``eth_mgmt``, and the two
  ``eth_rgmii`` resources hold only the RGMII signals.  As in litex-boards, port 0 and
  port 1 follow the PHYs' PHYA[0] strap, not the connector labels of the extension board.
- :class:`ButterStickPlatform`: Great Scott Gadgets ButterStick r1.0 (LFE5UM5G-85F-8BG381,
  one KSZ9031RNX, 30 MHz clock).  amaranth-boards' ``ButterStickPlatform`` with the same
  RXD pull-ups as the ECPIX-5 (the same PHY samples the same straps).  Its Ethernet
  bank is fixed at 3.3 V, so the engine needs none of the board's adjustable VCCIO
  banks (SYZYGY ports), which the board top leaves off.

Subsignal names differ (``tx_ctrl``/``rx_ctrl`` on the ECPIX-5, ``tx_ctl``/``rx_ctl``
on the Colorlight and in amaranth-boards' ButterStick): :data:`BOARDS` records each
board's facts, and :func:`rgmii_ctl_names` gives a resource's spelling.  The MAC
layer (:class:`toe.hdl.mac.rgmii.RgmiiPhy`) takes either spelling.
"""

from dataclasses import dataclass

from amaranth.build import Attrs, Clock, Pins, PinsN, Resource, Subsignal
from amaranth.vendor import LatticeECP5Platform
from amaranth_boards.butterstick import ButterStickPlatform as _ButterStickPlatform
from amaranth_boards.ecpix5 import ECPIX585Platform
from amaranth_boards.resources import UARTResource

__all__ = [
    "BOARDS", "BoardInfo", "ButterStickPlatform", "ColorlightI9Platform",
    "Ecpix585Platform", "rgmii_ctl_names",
]


def _with_rx_pullups(resource: Resource) -> Resource:
    """A copy of an RGMII resource whose ``rx_data`` subsignal has PULLMODE=UP."""
    subsignals = []
    for sub in resource.ios:
        if sub.name == "rx_data":
            attrs = Attrs(**{**sub.attrs, "PULLMODE": "UP"})
            sub = Subsignal(sub.name, *sub.ios, attrs)
        subsignals.append(sub)
    return Resource(resource.name, resource.number, *subsignals, resource.attrs)


class Ecpix585Platform(ECPIX585Platform):
    """ECPIX-5 85F with pull-ups on the KSZ9031's RXD strap pins (see the module doc)."""

    resources = [
        _with_rx_pullups(r) if r.name == "eth_rgmii" else r
        for r in ECPIX585Platform.resources
    ]


class ButterStickPlatform(_ButterStickPlatform):
    """ButterStick r1.0 with pull-ups on the KSZ9031's RXD strap pins (see the module doc)."""

    resources = [
        _with_rx_pullups(r) if r.name == "eth_rgmii" else r
        for r in _ButterStickPlatform.resources
    ]


class ColorlightI9Platform(LatticeECP5Platform):
    """Colorlight i9 v7.2 on its extension board: LFE5U-45F-6BG381C, 25 MHz clock, two
    B50612D RGMII PHYs (``eth_rgmii`` 0 and 1) sharing ``eth_mgmt`` (reset, MDC, MDIO).

    Pins as litex-boards' ``colorlight_i5.py`` (board "i9", v7.2); every bank is 3.3 V.
    """

    device = "LFE5U-45F"
    package = "BG381"
    speed = "6"
    default_clk = "clk25"
    default_rst = "rst"

    resources = [
        Resource("clk25", 0, Pins("P3", dir="i"), Clock(25e6), Attrs(IO_TYPE="LVCMOS33")),
        # The extension board's button, active low (litex-boards: cpu_reset_n).
        Resource("rst", 0, PinsN("K18", dir="i"), Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
        # The one user LED of the i9 v7.2, active low.
        Resource("led", 0, PinsN("L2", dir="o"), Attrs(IO_TYPE="LVCMOS33")),
        UARTResource(0, rx="H18", tx="J17", attrs=Attrs(IO_TYPE="LVCMOS33")),
        # Shared by both PHYs: one reset, one management bus (PHY addresses differ).
        Resource("eth_mgmt", 0,
                 Subsignal("rst", PinsN("P4", dir="o")),
                 Subsignal("mdc", Pins("N5", dir="o")),
                 Subsignal("mdio", Pins("P5", dir="io")),
                 Attrs(IO_TYPE="LVCMOS33")),
        Resource("eth_rgmii", 0,
                 Subsignal("tx_clk", Pins("G1", dir="o")),
                 Subsignal("tx_ctl", Pins("K1", dir="o")),
                 Subsignal("tx_data", Pins("G2 H1 J1 J3", dir="o")),
                 Subsignal("rx_clk", Pins("H2", dir="i"), Clock(125e6)),
                 Subsignal("rx_ctl", Pins("P2", dir="i")),
                 Subsignal("rx_data", Pins("K2 L1 N1 P1", dir="i")),
                 Attrs(IO_TYPE="LVCMOS33", SLEWRATE="FAST")),
        Resource("eth_rgmii", 1,
                 Subsignal("tx_clk", Pins("U19", dir="o")),
                 Subsignal("tx_ctl", Pins("P19", dir="o")),
                 Subsignal("tx_data", Pins("U20 T19 T20 R20", dir="o")),
                 Subsignal("rx_clk", Pins("L19", dir="i"), Clock(125e6)),
                 Subsignal("rx_ctl", Pins("M20", dir="i")),
                 Subsignal("rx_data", Pins("P20 N19 N20 M19", dir="i")),
                 Attrs(IO_TYPE="LVCMOS33", SLEWRATE="FAST")),
    ]
    connectors = []

    def toolchain_program(self, products, name):
        import os
        import subprocess

        tool = os.environ.get("OPENFPGALOADER", "openFPGALoader")
        with products.extract(f"{name}.bit") as bitstream:
            subprocess.check_call([tool, "-c", "cmsisdap", "-m", bitstream])


@dataclass(frozen=True)
class BoardInfo:
    """What a board top needs to know of a board beyond its platform's resources.

    ``rx_delay_ns``/``tx_delay_ns``: the FPGA-side RGMII delays (the PHY adds none on
    the Colorlight's B50612D RX path; the KSZ9031 adds its own on RX, not on TX), as the
    proven LiteX targets use them.  ``ports``: the RGMII ports (the host link takes port
    1 where there are two).  ``leds``: (resource name, number) of the LEDs used, link
    first.  ``mgmt``: the resource holding the PHYs' reset, or None (reset in the RGMII
    resource).  ``core_mhz``: the engine's clock target.  ``default_connections`` and
    ``ring_bytes`` (each way, per connection): the engine ``toe build`` makes unless told
    otherwise, sized to the device's block RAM (a DP16KD holds 2 KiB of a ring).
    """

    name: str
    platform: type
    ports: int
    rx_delay_ns: float
    tx_delay_ns: float
    leds: tuple
    mgmt: str | None
    core_mhz: float
    default_connections: int
    ring_bytes: int = 2048


BOARDS = {
    "ecpix5-85": BoardInfo("ecpix5-85", Ecpix585Platform, ports=1, rx_delay_ns=0.0,
                           tx_delay_ns=2.0, leds=(("rgb_led", 0), ("rgb_led", 1)),
                           mgmt=None, core_mhz=50.0, default_connections=64),
    "colorlight-i9": BoardInfo("colorlight-i9", ColorlightI9Platform, ports=2,
                               rx_delay_ns=2.0, tx_delay_ns=0.0, leds=(("led", 0),),
                               mgmt="eth_mgmt", core_mhz=50.0, default_connections=32),
    # The same device as the ECPIX-5, but 32 connections by default: the 64-connection
    # ECPIX-5 has not routed (docs/boards.md).  RX delay 0 (the KSZ9031 adds its own),
    # TX 2 ns, as LiteX's gsd_butterstick target.
    "butterstick": BoardInfo("butterstick", ButterStickPlatform, ports=1, rx_delay_ns=0.0,
                             tx_delay_ns=2.0, leds=(("rgb_leds_muxed", 0),), mgmt=None,
                             core_mhz=50.0, default_connections=32),
}
"""The boards ``toe build --board`` knows, by name."""


def rgmii_ctl_names(resource: Resource) -> tuple[str, str]:
    """The (TX, RX) control subsignal names of an RGMII resource: ``tx_ctl``/``rx_ctl``
    (ButterStick, Colorlight) or ``tx_ctrl``/``rx_ctrl`` (ECPIX-5)."""
    names = {sub.name for sub in resource.ios}
    for tx, rx in (("tx_ctl", "rx_ctl"), ("tx_ctrl", "rx_ctrl")):
        if tx in names and rx in names:
            return tx, rx
    raise ValueError(f"{resource.name} {resource.number} has no RGMII control subsignals")
