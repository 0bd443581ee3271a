"""The RGMII PHY interface for ECP5: DDR pads, optional DELAYG cells, in-band status.

RGMII 2.0 (Hewlett-Packard, 2002): s3 signal definitions (TXC, TD[3:0], TX_CTL, RXC,
RD[3:0], RX_CTL), s3.2/s3.3 (1000 Mbit/s: bits 3:0 on the rising edge of the 125 MHz
clock, bits 7:4 on the falling edge; TX_CTL = TX_EN on the rising edge and
TX_EN xor TX_ER on the falling edge, RX_CTL likewise with RX_DV and RX_ER), s3.4.1
(in-band status on RD[3:0] while RX_DV = RX_ER = 0: bit 0 link, bits 2:1 RXC speed
(00 = 2.5 MHz, 01 = 25 MHz, 10 = 125 MHz), bit 3 duplex (1 = full)); at 10/100 Mbit/s
one nibble per cycle of the slower clock, low nibble first, s3.3 timing (the
clock must arrive about 2 ns after the data edge: either the PHY's internal delay, a
delay on the board, or the FPGA's DELAYG cell here).
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Instance, Module, Mux, Signal, Value
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .gmii import SPEED_1000, gmii_signature, phy_status_signature

__all__ = ["RgmiiPhy", "DELAYG_STEP_NS", "delay_taps"]

#: ECP5 DELAYG: 25 ps per step, DEL_VALUE 0..127 (Lattice TN1265, "Input/Output Delay").
DELAYG_STEP_NS = 0.025
DELAYG_MAX_TAPS = 127


def delay_taps(delay_ns: float) -> int:
    """DELAYG DEL_VALUE for a delay in nanoseconds (rounded to the nearest 25 ps)."""
    taps = round(delay_ns / DELAYG_STEP_NS)
    if not 0 <= taps <= DELAYG_MAX_TAPS:
        raise ValueError(f"delay {delay_ns} ns is outside 0..{DELAYG_MAX_TAPS * DELAYG_STEP_NS} ns")
    return taps


def _pin(pins, *names):
    for name in names:
        if hasattr(pins, name):
            return getattr(pins, name)
    raise AttributeError(f"RGMII pins have none of {', '.join(names)}")


class RgmiiPhy(wiring.Component):
    """RGMII on ECP5 pads, as a GMII byte interface in the PHY's clock: at 1000 Mbit/s a
    byte every cycle, at 100 and 10 Mbit/s (while the in-band status says so) a byte
    every second cycle, marked by ``gmii.enable``.

    See :mod:`toe.hdl.mac` for the contract.  The clock domain ``domain`` is clocked by
    RXC through its input buffer and reset by ``reset`` through a reset synchroniser; it
    is defined here unless ``create_domain`` is False (then the parent defines
    ``ClockDomain(domain)`` and this component drives its clock and reset, which is what
    Amaranth 0.6 will require when siblings use the domain).
    RX: RD/RX_CTL through IDDRX1F (after a DELAYG of ``rx_delay_ns`` when it is not 0),
    then one register.  TX: TD/TX_CTL through ODDRX1F from the same clock; TXC is an
    ODDRX1F sending (1, 0), so it is edge-aligned with TD, then a DELAYG of
    ``tx_delay_ns`` on TXC when it is not 0.

    With ``platform`` ``None`` (the Amaranth simulator) the DDR cells are behavioural
    models with the same pairing (bits 3:0 from a rising edge and 7:4 from the falling
    edge after it) and the delays are left out.

    Ports
    -----
    reset : In(1)
        Asynchronous reset of the ``domain`` clock domain.
    gmii : Out(gmii_signature), ``domain``
        ``rx_*`` one cycle after the DDR registers; ``tx_*`` go to the DDR registers.
    status : Out(phy_status_signature), ``domain``
        The in-band status last seen between frames (RGMII 2.0 s3.4.1).
    """

    def __init__(self, pins, *, rx_delay_ns: float = 0.0, tx_delay_ns: float = 0.0,
                 domain: str = "eth", create_domain: bool = True):
        self._rx_clk_port = _pin(pins, "rx_clk")
        self._rx_ctl_port = _pin(pins, "rx_ctl", "rx_ctrl")
        self._rx_data_port = _pin(pins, "rx_data")
        self._tx_clk_port = _pin(pins, "tx_clk")
        self._tx_ctl_port = _pin(pins, "tx_ctl", "tx_ctrl")
        self._tx_data_port = _pin(pins, "tx_data")
        self._rx_taps = delay_taps(rx_delay_ns)
        self._tx_taps = delay_taps(tx_delay_ns)
        self._domain = domain
        self._create_domain = create_domain
        #: The buffered RXC, the clock of ``domain`` (for a clock constraint).
        self.rx_clk = Signal(name=f"{domain}_rxc")
        super().__init__({
            "reset": In(1),
            "gmii": Out(gmii_signature),
            "status": Out(phy_status_signature),
        })

    # -- DDR cells --

    def _ddr_in(self, m, name, port, platform):
        """(rising-edge bits, falling-edge bits after them), in ``domain``."""
        width = len(port)
        q0, q1 = Signal(width, name=f"{name}_q0"), Signal(width, name=f"{name}_q1")
        if platform is None:
            m.submodules[f"{name}_buffer"] = buf = io.Buffer("i", port)
            rise, fall = Signal(width, name=f"{name}_rise"), Signal(width, name=f"{name}_fall")
            m.d[self._domain] += [rise.eq(buf.i), q0.eq(rise), q1.eq(fall)]
            m.d[f"{self._domain}_fall"] += fall.eq(buf.i)
        elif self._rx_taps == 0:
            m.submodules[f"{name}_buffer"] = buf = io.DDRBuffer("i", port, i_domain=self._domain)
            m.d.comb += [q0.eq(buf.i[0]), q1.eq(buf.i[1])]
        else:
            m.submodules[f"{name}_buffer"] = buf = io.Buffer("i", port)
            for bit in range(width):
                delayed = Signal(name=f"{name}_delayed{bit}")
                m.submodules[f"{name}_delay{bit}"] = Instance(
                    "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=self._rx_taps,
                    i_A=buf.i[bit], o_Z=delayed)
                m.submodules[f"{name}_ddr{bit}"] = Instance(
                    "IDDRX1F", i_SCLK=ClockSignal(self._domain), i_RST=0, i_D=delayed,
                    o_Q0=q0[bit], o_Q1=q1[bit])
        return q0, q1

    def _ddr_out(self, m, name, port, d0, d1, taps, platform):
        """Send ``d0`` after the rising edge and ``d1`` after the falling edge."""
        width = len(port)
        if platform is None:
            m.submodules[f"{name}_buffer"] = buf = io.Buffer("o", port)
            r0, r1 = Signal(width, name=f"{name}_r0"), Signal(width, name=f"{name}_r1")
            m.d[self._domain] += [r0.eq(d0), r1.eq(d1)]
            m.d.comb += buf.o.eq(Mux(self.rx_clk, r0, r1))
        elif taps == 0:
            m.submodules[f"{name}_buffer"] = buf = io.DDRBuffer("o", port, o_domain=self._domain)
            m.d.comb += [buf.o[0].eq(d0), buf.o[1].eq(d1)]
        else:
            m.submodules[f"{name}_buffer"] = buf = io.Buffer("o", port)
            for bit in range(width):
                undelayed = Signal(name=f"{name}_undelayed{bit}")
                m.submodules[f"{name}_ddr{bit}"] = Instance(
                    "ODDRX1F", i_SCLK=ClockSignal(self._domain), i_RST=0,
                    i_D0=Value.cast(d0)[bit] if width > 1 else d0,
                    i_D1=Value.cast(d1)[bit] if width > 1 else d1, o_Q=undelayed)
                m.submodules[f"{name}_delay{bit}"] = Instance(
                    "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=taps,
                    i_A=undelayed, o_Z=buf.o[bit])

    def elaborate(self, platform):
        m = Module()
        domain = self._domain
        sync = m.d[domain]

        # -- the PHY clock domain, from RXC --
        m.submodules.rx_clk_buffer = rx_clk_buffer = io.Buffer("i", self._rx_clk_port)
        m.d.comb += self.rx_clk.eq(rx_clk_buffer.i)
        if self._create_domain:
            m.domains += ClockDomain(domain)
        m.d.comb += ClockSignal(domain).eq(self.rx_clk)
        m.submodules.reset_sync = ResetSynchronizer(self.reset, domain=domain)
        if platform is None:
            m.domains += ClockDomain(f"{domain}_fall", clk_edge="neg", reset_less=True,
                                     local=True)
            m.d.comb += ClockSignal(f"{domain}_fall").eq(self.rx_clk)

        # -- 10/100 Mbit/s: a nibble a cycle (RXC 25 or 2.5 MHz), a byte every second --
        nibbles = Signal()
        m.d.comb += nibbles.eq(self.status.link_up & (self.status.speed != SPEED_1000))
        half = Signal()  # the second cycle of a byte, for the MAC's clock enable
        sync += half.eq(~half)
        m.d.comb += self.gmii.enable.eq(~nibbles | half)

        # -- receive: RX_CTL = RX_DV (rising), RX_DV xor RX_ER (falling) --
        ctl_rise, ctl_fall = self._ddr_in(m, "rx_ctl", self._rx_ctl_port, platform)
        data_rise, data_fall = self._ddr_in(m, "rx_data", self._rx_data_port, platform)
        rx_dv = ctl_rise
        rx_er = ctl_rise ^ ctl_fall
        # Nibble mode: bytes low nibble first, aligned on the SFD (nibbles 5 then D) as
        # a receiver must (the preamble may lose nibbles).  A byte completes every second
        # cycle and is held in the gmii registers for two cycles, so the MAC, which
        # steps on every second cycle, takes each byte once whatever the phase.
        prev, prev_dv, prev_er = Signal(4), Signal(), Signal()
        high = Signal()  # this nibble is a byte's high one
        synced = Signal()  # the SFD of this frame was seen
        sync += [prev.eq(data_rise), prev_dv.eq(rx_dv), prev_er.eq(rx_er)]
        sfd = rx_dv & prev_dv & ~synced & (prev == 0x5) & (data_rise == 0xD)
        sync += synced.eq((synced | sfd) & rx_dv)
        with m.If(~nibbles):
            sync += [
                self.gmii.rx_data.eq(Cat(data_rise, data_fall)),
                self.gmii.rx_dv.eq(rx_dv),
                self.gmii.rx_er.eq(rx_er),
            ]
        with m.Elif(high | sfd):
            sync += [
                high.eq(0),
                self.gmii.rx_data.eq(Cat(prev, data_rise)),
                self.gmii.rx_dv.eq(rx_dv & prev_dv),
                self.gmii.rx_er.eq((rx_er | prev_er) & rx_dv & prev_dv),
            ]
        with m.Else():
            sync += high.eq(1)
        with m.If(~rx_dv & ~rx_er):
            # Inter-frame: RD[3:0] is the in-band status (RGMII 2.0 s3.4.1).
            sync += [
                self.status.link_up.eq(data_rise[0]),
                self.status.speed.eq(data_rise[1:3]),
                self.status.full_duplex.eq(data_rise[3]),
            ]

        # -- transmit: TX_CTL = TX_EN (rising), TX_EN xor TX_ER (falling) --
        # Nibble mode: the MAC's byte changes after a cycle with ``half``; its low nibble
        # goes in the cycle after, the high one in the next, each on both edges.
        tx = self.gmii
        nibble = Mux(half, tx.tx_data[4:8], tx.tx_data[0:4])
        self._ddr_out(m, "tx_data", self._tx_data_port,
                      Mux(nibbles, nibble, tx.tx_data[0:4]),
                      Mux(nibbles, nibble, tx.tx_data[4:8]), 0, platform)
        self._ddr_out(m, "tx_ctl", self._tx_ctl_port, tx.tx_en, tx.tx_en ^ tx.tx_er, 0,
                      platform)
        self._ddr_out(m, "tx_clk", self._tx_clk_port, 1, 0, self._tx_taps, platform)
        return m
