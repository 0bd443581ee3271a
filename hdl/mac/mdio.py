"""The management interface master: IEEE 802.3 clause 22 MDIO frames on MDC/MDIO.

IEEE 802.3 s22.2.4.5 (management frame structure, Table 22-12)::

    <PRE 32 x 1> <ST 01> <OP 10 read | 01 write> <PHYAD 5> <REGAD 5> <TA> <DATA 16> <IDLE>

PHYAD, REGAD and DATA go most significant bit first.  TA (turnaround): on a write the
station drives 1 then 0; on a read it releases MDIO for both bits and the PHY drives 0
in the second, then the 16 data bits.  IDLE: MDIO released (the line's pull-up makes
it 1, s22.2.4.5.1), MDC held low here.

Timing (s22.2.2.11 MDIO, s22.2.2.13 MDC, s22.3.4): MDC has a period of at least 400 ns
(2.5 MHz) with high and low times of at least 160 ns.  The station's MDIO must be stable
from 10 ns before to 10 ns after each rising edge of MDC, where the PHY samples it; the
PHY drives MDIO 0..300 ns after a rising edge and the station samples it at the next
rising edge.  Here the station changes MDIO only together with a falling edge of MDC
(half a period from either rising edge), and takes a bit in the system cycle that
raises MDC, from a two-flip-flop synchroniser: the pin as it was two system cycles
before the rising edge (40 ns at 50 MHz), well after the PHY's 300 ns.
"""

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MdioMaster", "DEFAULT_CLK_DIV", "FRAME_BITS", "MDC_MIN_PERIOD_NS", "clk_div_for"]

#: IEEE 802.3 s22.2.2.13: MDC's shortest period (its highest frequency is 2.5 MHz).
MDC_MIN_PERIOD_NS = 400
#: Preamble, ST, OP, PHYAD, REGAD, TA and DATA (s22.2.4.5).
FRAME_BITS = 32 + 2 + 2 + 5 + 5 + 2 + 16
#: The frame's bit index of the first TA bit (the read releases MDIO from here on).
TA_BIT = 32 + 2 + 2 + 5 + 5
ST = 0b01
OP_READ = 0b10
OP_WRITE = 0b01


def clk_div_for(core_mhz: float, mdc_mhz: float = 2.0) -> int:
    """System cycles per half MDC period for an MDC of at most ``mdc_mhz`` (2 MHz by
    default: 20 % under the clause-22 limit of 2.5 MHz, s22.2.2.13)."""
    if not 0 < mdc_mhz <= 1e3 / MDC_MIN_PERIOD_NS:
        raise ValueError(f"MDC runs at most at {1e3 / MDC_MIN_PERIOD_NS} MHz")
    return max(2, math.ceil(core_mhz / (2 * mdc_mhz)))


#: The divider at the boards' 50 MHz core clock: 13, MDC 1.92 MHz (520 ns).
DEFAULT_CLK_DIV = clk_div_for(50.0)


class MdioMaster(wiring.Component):
    """A clause-22 station management entity: one read or write frame per command.

    Written in the ``sync`` domain.  ``clk_div`` (at least 2): system cycles per half
    MDC period; MDC = f_sync / (2 * clk_div).  :data:`DEFAULT_CLK_DIV` gives 1.92 MHz at
    50 MHz; :func:`clk_div_for` computes it for another clock.  A transaction takes
    ``64 * 2 * clk_div`` cycles (33.3 us at the default).

    Ports
    -----
    start : In(1)
        Strobe: begin a frame with ``write``, ``phy``, ``reg`` and ``wdata`` (sampled in
        this cycle).  **A start while busy is ignored** and reported by ``ignored``.
    write : In(1)
        1: write ``wdata`` to ``reg`` of ``phy`` (OP 01); 0: read it (OP 10).
    phy, reg : In(5)
        PHYAD and REGAD.
    wdata : In(16)
    busy : Out(1)
        A frame is under way (from the cycle after ``start`` to ``done``).
    done : Out(1)
        Strobe: the frame ended (MDIO released, MDC low); ``busy`` falls with it.
    rdata : Out(16); rdata_valid : Out(1)
        The data of the last read, updated with the ``rdata_valid`` strobe (which comes
        with ``done`` of a read).  A PHY that does not answer leaves MDIO to its
        pull-up: 0xFFFF.
    no_answer : Out(1)
        The last read's second TA bit was 1: no PHY drove it (no PHY at ``phy``).
        Updated with ``rdata_valid``.
    ignored : Out(1)
        Strobe, combinational: ``start`` came while busy and was dropped.
    mdc : Out(1)
        MDC, registered; low while idle.
    mdio_o, mdio_oe : Out(1); mdio_i : In(1)
        The MDIO pad: ``mdio_o`` driven while ``mdio_oe`` (both registers), ``mdio_i`` the
        pin (synchronised here).
    """

    def __init__(self, clk_div: int = DEFAULT_CLK_DIV):
        if clk_div < 2:
            raise ValueError("clk_div must be at least 2 (the input synchroniser's delay)")
        self.clk_div = clk_div
        super().__init__({
            "start": In(1), "write": In(1), "phy": In(5), "reg": In(5), "wdata": In(16),
            "busy": Out(1), "done": Out(1), "rdata": Out(16), "rdata_valid": Out(1),
            "no_answer": Out(1), "ignored": Out(1),
            "mdc": Out(1), "mdio_o": Out(1), "mdio_oe": Out(1), "mdio_i": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = Signal(range(self.clk_div))
        bit = Signal(range(FRAME_BITS))  # the bit on the wire
        frame = Signal(FRAME_BITS)  # its most significant bit is on the wire
        is_write = Signal()
        taken = Signal(16)  # the bits sampled at the rising edges, the last one lowest
        ta_bit = Signal()
        mdio_in = Signal(init=1)
        m.submodules.mdio_sync = FFSynchronizer(self.mdio_i, mdio_in, init=1)

        m.d.comb += self.mdio_o.eq(frame[-1])
        m.d.sync += [self.done.eq(0), self.rdata_valid.eq(0)]

        with m.If(self.start & self.busy):
            m.d.comb += self.ignored.eq(1)
        with m.Elif(self.start):
            # Cat is least significant first: the preamble ends up on top.  A read's TA
            # and DATA bits are released; ones are kept there for the record.
            ta = Mux(self.write, 0b10, 0b11)
            data = Mux(self.write, self.wdata, 0xFFFF)
            op = Mux(self.write, OP_WRITE, OP_READ)
            m.d.sync += [
                frame.eq(Cat(data, ta, self.reg, self.phy, op, Const(ST, 2),
                             Const(0xFFFF_FFFF, 32))),
                is_write.eq(self.write), bit.eq(0), div.eq(0), self.mdc.eq(0),
                self.mdio_oe.eq(1), self.busy.eq(1),
            ]

        with m.If(self.busy):
            m.d.sync += div.eq(div + 1)
            with m.If(div == self.clk_div - 1):
                m.d.sync += [div.eq(0), self.mdc.eq(~self.mdc)]
                with m.If(~self.mdc):  # rising edge: the PHY takes our bit, we take its
                    m.d.sync += taken.eq(Cat(mdio_in, taken[:-1]))
                    with m.If(bit == TA_BIT + 1):
                        m.d.sync += ta_bit.eq(mdio_in)
                with m.Elif(bit == FRAME_BITS - 1):  # falling edge after the last bit
                    m.d.sync += [self.busy.eq(0), self.mdio_oe.eq(0), self.done.eq(1)]
                    with m.If(~is_write):
                        m.d.sync += [self.rdata.eq(taken), self.rdata_valid.eq(1),
                                     self.no_answer.eq(ta_bit)]
                with m.Else():  # falling edge: the next bit
                    m.d.sync += [bit.eq(bit + 1), frame.eq(Cat(Const(1, 1), frame[:-1]))]
                    with m.If((bit == TA_BIT - 1) & ~is_write):
                        m.d.sync += self.mdio_oe.eq(0)  # a read releases MDIO at TA
        return m
