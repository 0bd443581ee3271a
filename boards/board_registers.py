"""The board's registers: a window of the register bus beside the engine's, for MDIO.

The engine's register file (``hdl/csr.py``) maps 0x00..0x10 and its counters from
0x40; it reads 0 at every other address.  :class:`BoardRegisters` answers the window
:data:`~toe.hdl.csr_map.BOARD_BASE` .. :data:`~toe.hdl.csr_map.BOARD_END` - 1 (0x30..0x3F)
with the board top's own registers, :data:`~toe.hdl.csr_map.BOARD_REGISTERS`, and passes
the engine's read data through for every other address, with the engine's latency (one
cycle after the address), so the host link's CSRR/CSRW reach both unchanged:

- ``mdio_cmd`` (0x30, write): bits 15:0 data, 20:16 REGAD, 25:21 PHYAD, bit 26 write (1)
  or read (0).  The write starts the frame (:class:`~toe.hdl.mac.mdio.MdioMaster`); a
  write while a frame runs is ignored and flagged.
- ``mdio_status`` (0x31, read): bit 31 busy, bit 30 a read has completed since the last
  accepted command, bit 29 that read had no answer (its second TA bit was 1), bit 28 a
  command was ignored (written while busy) since the last accepted command, bits 15:0
  the last read's data.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from toe.hdl.csr_map import BOARD_BASE, BOARD_END, BOARD_REGISTERS
from toe.hdl.mac.mdio import DEFAULT_CLK_DIV, MdioMaster

__all__ = ["BoardRegisters"]


class BoardRegisters(wiring.Component):
    """The board's register window and its MDIO master.

    Ports
    -----
    addr, wdata, we : In
        The register bus as the host link drives it (``addr`` held, ``we`` a strobe).
    core_rdata : In(32)
        The engine's read data (one cycle after ``addr``).
    rdata : Out(32)
        The read data for the host link: the board's word for an address of the window,
        the engine's otherwise; one cycle after ``addr``.
    mdc, mdio_o, mdio_oe : Out(1); mdio_i : In(1)
        The PHY management pins (:class:`~toe.hdl.mac.mdio.MdioMaster`).
    """

    def __init__(self, clk_div: int = DEFAULT_CLK_DIV):
        self.clk_div = clk_div
        super().__init__({
            "addr": In(10), "wdata": In(32), "we": In(1),
            "core_rdata": In(32), "rdata": Out(32),
            "mdc": Out(1), "mdio_o": Out(1), "mdio_oe": Out(1), "mdio_i": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mdio = mdio = MdioMaster(self.clk_div)
        m.d.comb += [self.mdc.eq(mdio.mdc), self.mdio_o.eq(mdio.mdio_o),
                     self.mdio_oe.eq(mdio.mdio_oe), mdio.mdio_i.eq(self.mdio_i)]

        cmd_addr = BOARD_REGISTERS["mdio_cmd"][0]
        status_addr = BOARD_REGISTERS["mdio_status"][0]
        m.d.comb += [mdio.start.eq(self.we & (self.addr == cmd_addr)),
                     mdio.wdata.eq(self.wdata[0:16]), mdio.reg.eq(self.wdata[16:21]),
                     mdio.phy.eq(self.wdata[21:26]), mdio.write.eq(self.wdata[26])]
        read_done = Signal()
        ignored = Signal()
        with m.If(mdio.start & ~mdio.busy):  # accepted: a new command
            m.d.sync += [read_done.eq(0), ignored.eq(0)]
        with m.If(mdio.rdata_valid):
            m.d.sync += read_done.eq(1)
        with m.If(mdio.ignored):
            m.d.sync += ignored.eq(1)
        status = Cat(mdio.rdata, Signal(12), ignored, mdio.no_answer, read_done, mdio.busy)

        selected = Signal()
        own = Signal(32)
        m.d.sync += [selected.eq((self.addr >= BOARD_BASE) & (self.addr < BOARD_END)),
                     own.eq(Mux(self.addr == status_addr, status, 0))]
        m.d.comb += self.rdata.eq(Mux(selected, own, self.core_rdata))
        return m
