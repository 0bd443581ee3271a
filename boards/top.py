"""The board top: clocks, resets, the time base, LEDs, the MAC layer, the engine and
the host link, for any board of :data:`toe.boards.platforms.BOARDS`.

A thin IO/clock wrapper around the portable core (Corundum's fpga / fpga_core split):

- ``sync``: the engine's clock, ``BoardInfo.core_mhz`` from an EHXPLLL fed by the
  board's oscillator; held in reset until the PLL locks and while the reset button is
  pressed.
- ``eth0`` (``eth1``): each PHY's 125 MHz RX clock (``RgmiiPhy``, defined here with
  ``create_domain=False``), constrained to 125 MHz.
- ``tick``: one pulse a microsecond from a prescaler of the core clock
  (``ToeConfig.tick_bits`` = 1).
- The PHYs' reset pin is held for 20 ms after configuration (the KSZ9031 needs 10 ms
  after power-up, and samples its straps when it is released; the B50612D needs less).
- Port 0 is the network.  With two ports (Colorlight i9) port 1 is the host link; with
  one (ECPIX-5, ButterStick) the host link's EtherType is split off port 0 before the engine's
  parser and its frames merged with the engine's on TX.
- LEDs: link (port 0 in-band status), activity (frames either way, stretched to 50 ms).
- The PHYs come up from their straps (auto-negotiation on).  Port 0's management pins
  (``mdc``/``mdio`` of ``eth_rgmii`` 0, or the ``eth_mgmt`` resource the Colorlight's
  two PHYs share) are driven by an IEEE 802.3 clause 22 MDIO master
  (:class:`toe.hdl.mac.mdio.MdioMaster`), reached through the board's registers
  (:class:`~toe.boards.board_registers.BoardRegisters`, 0x30..0x3F of the register bus,
  beside the engine's); nothing is written to the PHYs unless the host asks.

``BoardTop(board, config, simulation=True)`` is the same design for a simulator
(``tests/test_board_sim.py``): elaborated with no platform, the EHXPLLL is replaced by
a direct clock (the ``clk`` and ``rst`` ports are the PLL's output and the reset
button), each pin of the board's resources (``eth_rgmii``, ``eth_mgmt``) that the
design uses is a top-level port named ``eth<N>_<subsignal>`` (``eth0_rx_clk``,
``eth0_tx_ctrl`` and ``eth0_mdio`` on the ECPIX-5) or ``mgmt_<subsignal>``
(``mgmt_rst``, ``mgmt_mdc``, ``mgmt_mdio`` on the Colorlight), :class:`RgmiiPhy` uses
its behavioural DDR cells and leaves the DELAYGs out (a delay has no meaning without
wire timing), and the LEDs are the ``led_link``/``led_act`` ports.  Everything between
the pins and the clock is the hardware design.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from toe.hdl.config import ToeConfig
from toe.hdl.core import ToeCore
from toe.hdl.mac.mac import EthernetMac
from toe.hdl.mac.mdio import clk_div_for
from toe.hdl.mac.rgmii import RgmiiPhy
from toe.hdl.tx.arbiter import FrameArbiter
from toe.host.packet_transport import ETHERTYPE

from .board_registers import BoardRegisters
from .frame_fifo import EtherTypeSplitter, FrameFilter
from .host_link import HostLinkBridge
from .platforms import BOARDS, BoardInfo

__all__ = ["BoardTop", "pll_parameters"]


def pll_parameters(f_in_mhz: float, f_out_mhz: float) -> dict:
    """EHXPLLL dividers for ``f_out`` from ``f_in`` with CLKOP as feedback (VCO 400..800
    MHz, PFD 3.125..400 MHz; Lattice TN1263).  Raises if no exact setting exists."""
    for clki in range(1, 129):
        for fb in range(1, 81):
            if abs(f_in_mhz * fb / clki - f_out_mhz) > 1e-6 or f_in_mhz / clki < 3.125:
                continue
            for op in range(1, 129):
                if 400 <= f_out_mhz * op <= 800:
                    return {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op,
                            "CLKOP_CPHASE": op - 1, "vco_mhz": f_out_mhz * op}
    raise ValueError(f"no EHXPLLL setting for {f_out_mhz} MHz from {f_in_mhz} MHz")


class BoardTop(wiring.Component):
    """The whole design of one board (``board``: a key of :data:`BOARDS`)."""

    def __init__(self, board: str, config: ToeConfig, *, simulation: bool = False):
        self.info: BoardInfo = BOARDS[board]
        if config.tick_bits != 1:
            raise ValueError("the board's time base is a strobe (tick_bits=1)")
        self.config = config
        self.simulation = simulation
        ports = {}
        if simulation:
            ports = {"clk": In(1), "rst": In(1), "led_link": Out(1), "led_act": Out(1)}
        super().__init__(ports)

    def _request(self, platform, name, number):
        """The pins of a board resource: the platform's, or in simulation one top-level
        port per subsignal (``eth<N>_<subsignal>``, ``mgmt_<subsignal>``) with the
        resource's widths, directions and inversions."""
        if not self.simulation:
            return platform.request(name, number, dir="-")
        resource = self.info.platform().lookup(name, number)
        prefix = f"eth{number}" if name == "eth_rgmii" else name.removeprefix("eth_")
        pins = {}
        for sub in resource.ios:
            width = len(sub.ios[0].names)
            port = io.IOPort(width, name=f"{prefix}_{sub.name}")
            pins[sub.name] = io.SingleEndedPort(port, invert=sub.ios[0].invert,
                                                direction=sub.ios[0].dir)
        return type("SimPins", (), pins)()

    def _clocks(self, m, platform):
        info = self.info
        if self.simulation:  # the PLL's output is the clk port
            m.domains.sync = ClockDomain("sync")
            m.d.comb += ClockSignal("sync").eq(self.clk)
            m.submodules.sync_reset = ResetSynchronizer(self.rst, domain="sync")
            return
        clk_in = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_in = clk_buf = io.Buffer("i", clk_in)
        f_in = platform.default_clk_frequency / 1e6
        p = pll_parameters(f_in, info.core_mhz)
        locked = Signal()
        core_clk = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(f_in), a_FREQUENCY_PIN_CLKOP=str(info.core_mhz),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
            p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_CPHASE"],
            i_CLKI=clk_buf.i, i_CLKFB=core_clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0,
            i_ENCLKOP=0, o_CLKOP=core_clk, o_LOCK=locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(core_clk)
        reset = ~locked
        if platform.default_rst is not None:
            rst = platform.request(platform.default_rst, dir="-")
            m.submodules.rst_in = rst_buf = io.Buffer("i", rst)
            reset = reset | rst_buf.i
        m.submodules.sync_reset = ResetSynchronizer(reset, domain="sync")
        platform.add_clock_constraint(core_clk, info.core_mhz * 1e6)

    def _port(self, m, platform, n):
        """PHY ``n`` and its MAC; returns (mac, pins)."""
        info = self.info
        pins = self._request(platform, "eth_rgmii", n)
        domain = f"eth{n}"
        m.domains += ClockDomain(domain)
        phy = RgmiiPhy(pins, rx_delay_ns=info.rx_delay_ns, tx_delay_ns=info.tx_delay_ns,
                       domain=domain, create_domain=False)
        m.submodules[f"phy{n}"] = phy
        if not self.simulation:
            platform.add_clock_constraint(phy.rx_clk, 125e6)
        mac = EthernetMac(self.config.data_bytes, phy_domain=domain)
        m.submodules[f"mac{n}"] = mac
        wiring.connect(m, phy.gmii, mac.gmii)
        wiring.connect(m, phy.status, mac.phy_status)
        m.d.comb += phy.reset.eq(ResetSignal("sync"))
        return mac, pins

    def elaborate(self, platform):
        m = Module()
        cfg, info = self.config, self.info
        w = cfg.data_bytes
        self._clocks(m, platform)

        m.submodules.core = core = ToeCore(cfg)
        m.submodules.host_link = link = HostLinkBridge(cfg, board=info.name)
        m.d.comb += [link.mac_addr.eq(cfg.mac_addr), core.arp_lookup.valid.eq(0),
                     core.arp_result.ready.eq(1)]
        wiring.connect(m, link.cmd, core.cmd)
        wiring.connect(m, link.host_tx, core.host_tx)
        wiring.connect(m, core.evt, link.evt)
        wiring.connect(m, core.host_rx, link.host_rx)
        # The register bus: the engine's registers, and the board's window beside them.
        m.submodules.board_regs = regs = BoardRegisters(clk_div_for(info.core_mhz))
        m.d.comb += [core.csr_addr.eq(link.csr_addr), core.csr_wdata.eq(link.csr_wdata),
                     core.csr_we.eq(link.csr_we),
                     regs.addr.eq(link.csr_addr), regs.wdata.eq(link.csr_wdata),
                     regs.we.eq(link.csr_we), regs.core_rdata.eq(core.csr_rdata),
                     link.csr_rdata.eq(regs.rdata)]

        # The time base: one pulse a microsecond.
        per_us = round(info.core_mhz)
        prescaler = Signal(range(per_us))
        m.d.sync += prescaler.eq(prescaler + 1)
        with m.If(prescaler == per_us - 1):
            m.d.sync += prescaler.eq(0)
        m.d.comb += core.tick.eq(prescaler == per_us - 1)

        # Ports.
        mac0, pins0 = self._port(m, platform, 0)
        m.submodules.net_filter = net_filter = FrameFilter(w)
        if info.ports == 2:
            mac1, _ = self._port(m, platform, 1)
            self._flag(m, mac0, net_filter.i)
            self._flag(m, mac1, link.i)
            wiring.connect(m, core.mac_tx, mac0.tx)
            wiring.connect(m, link.o, mac1.tx)
        else:
            m.submodules.splitter = splitter = EtherTypeSplitter(w, ETHERTYPE)
            self._flag(m, mac0, splitter.i)
            wiring.connect(m, splitter.o_net, net_filter.i)
            wiring.connect(m, splitter.o_host, link.i)
            m.submodules.tx_merge = merge = FrameArbiter(w, 2)
            wiring.connect(m, core.mac_tx, merge.i0)
            wiring.connect(m, link.o, merge.i1)
            wiring.connect(m, merge.o, mac0.tx)
        wiring.connect(m, net_filter.o, core.mac_rx)

        # PHY reset: 20 ms after configuration.
        hold = int(20e-3 * info.core_mhz * 1e6)
        phy_reset_count = Signal(range(hold + 1))
        phy_in_reset = Signal()
        m.d.comb += phy_in_reset.eq(phy_reset_count < hold)
        with m.If(phy_in_reset):
            m.d.sync += phy_reset_count.eq(phy_reset_count + 1)
        mgmt = self._request(platform, info.mgmt, 0) if info.mgmt else pins0
        m.submodules.phy_rst = phy_rst = io.Buffer("o", mgmt.rst)
        m.d.comb += phy_rst.o.eq(phy_in_reset)

        # MDIO: port 0's PHY (on the Colorlight, the bus both PHYs share).
        m.submodules.mdc_buf = mdc = io.Buffer("o", mgmt.mdc)
        m.submodules.mdio_buf = mdio = io.Buffer("io", mgmt.mdio)
        m.d.comb += [mdc.o.eq(regs.mdc), mdio.o.eq(regs.mdio_o), mdio.oe.eq(regs.mdio_oe),
                     regs.mdio_i.eq(mdio.i)]

        # LEDs: link, and activity stretched to 50 ms.
        stretch = int(50e-3 * info.core_mhz * 1e6)
        activity = Signal(range(stretch + 1))
        busy = (mac0.rx.valid & mac0.rx.ready) | (mac0.tx.valid & mac0.tx.ready)
        with m.If(busy):
            m.d.sync += activity.eq(stretch)
        with m.Elif(activity != 0):
            m.d.sync += activity.eq(activity - 1)
        link_led = mac0.link_up
        act_led = activity != 0
        if self.simulation:
            m.d.comb += [self.led_link.eq(link_led), self.led_act.eq(act_led)]
        elif info.name == "colorlight-i9":
            led = platform.request("led", 0)
            m.d.comb += led.o.eq(link_led & ~act_led)  # on with link, off while busy
        elif info.name == "butterstick":
            # Seven LEDs share one colour: green; LED 0 the link, LED 1 activity
            # (active high, as LiteX's gsd_butterstick target drives them).
            pins = platform.request("rgb_leds_muxed", 0, dir="-")
            for name, value in (("g", 1), ("r", 0), ("b", 0),
                                ("leds", Cat(link_led, act_led))):
                m.submodules[f"led_{name}"] = buf = io.Buffer("o", getattr(pins, name))
                m.d.comb += buf.o.eq(value)
        else:
            m.d.comb += [platform.request("rgb_led", 0).g.o.eq(link_led),
                         platform.request("rgb_led", 1).b.o.eq(act_led)]
        return m

    @staticmethod
    def _flag(m, mac, sink):
        """The MAC's ``rx`` and ``rx_error`` as one flagged stream into ``sink``."""
        m.d.comb += [sink.valid.eq(mac.rx.valid), sink.p.beat.eq(mac.rx.p),
                     sink.p.error.eq(mac.rx_error), mac.rx.ready.eq(sink.ready)]
