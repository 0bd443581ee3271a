"""Unit tests of hdl/mac/mdio.py (MdioMaster) and boards/board_registers.py
(BoardRegisters) against a Python model of an IEEE 802.3 clause 22 PHY.

The model (:class:`Clause22Phy`) sits on the master's pin signals as a PHY on the wire:
it watches MDC every system cycle, takes the line's bit at each rising edge, decodes
frames bit by bit (preamble, ST, OP, PHYAD, REGAD, TA, data), holds the 32 registers of
a PHY at one address, answers a read by driving the second TA bit 0 and the data, and
ignores frames for another address.  The line is the master's ``mdio_o`` while
``mdio_oe``, else the model's drive, else the pull-up (1).  The clock is 20 ns (the
boards' 50 MHz core).
"""

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from toe.boards.board_registers import BoardRegisters
from toe.hdl.csr_map import (
    BOARD_BASE,
    BOARD_END,
    BOARD_REGISTERS,
    COUNTER_BASE,
    MDIO_BUSY,
    MDIO_IGNORED,
    MDIO_NO_ANSWER,
    MDIO_READ_DONE,
    REGISTERS,
    mdio_command,
)
from toe.hdl.mac.mdio import DEFAULT_CLK_DIV, MDC_MIN_PERIOD_NS, MdioMaster, clk_div_for

CLOCK_NS = 20
#: KSZ9031RNX PHY identifier registers 2 and 3 (data sheet, "PHY Identifier 1/2").
KSZ9031_ID = {2: 0x0022, 3: 0x1622}


def bits(value: int, width: int) -> list[int]:
    """``value`` most significant bit first (IEEE 802.3 s22.2.4.5.5/6: PHYAD, REGAD and
    DATA are sent MSB first)."""
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def value_of(bit_list: list[int]) -> int:
    out = 0
    for b in bit_list:
        out = out << 1 | b
    return out


class Clause22Phy:
    """A PHY's management interface at ``address`` (IEEE 802.3 s22.2.4.5).

    ``frames``: (op, phyad, regad, data) of each frame decoded, for any address (data
    as seen on the line); ``edges``: (cycle, line, mdio_oe) at each MDC rising edge;
    ``trace``: (mdc, mdio_o, mdio_oe) every cycle; ``contention``: cycles in which the
    master and the model drove the line together.
    """

    def __init__(self, address: int, registers: dict[int, int] | None = None):
        self.address = address
        self.regs = [0] * 32
        for reg, value in (registers or {}).items():
            self.regs[reg] = value
        self.frames: list[tuple[str, int, int, int]] = []
        self.edges: list[tuple[int, int, int]] = []
        self.trace: list[tuple[int, int, int]] = []
        self.contention = 0

    def _decoder(self):
        """Takes the bit of each rising edge (``send``), gives what to drive until the
        next one (None: released)."""
        b = yield None
        while True:
            ones = 0  # s22.2.4.5.1: at least 32 ones of preamble, then ST = 01
            while b == 1 or ones < 32:
                ones = ones + 1 if b == 1 else 0
                b = yield None
            b = yield None  # ST's first bit (0) was taken
            if b != 1:
                continue
            header = []
            for _ in range(12):  # OP, PHYAD, REGAD
                b = yield None
                header.append(b)
            op = {0b10: "read", 0b01: "write"}.get(value_of(header[0:2]))
            phyad, regad = value_of(header[2:7]), value_of(header[7:12])
            ours = phyad == self.address and op is not None
            if op == "read" and ours:
                ta1 = yield None  # s22.2.4.5.7: high impedance in TA's first bit
                assert ta1 == 1, "the master drove the first TA bit of a read"
                b = yield 0  # the PHY drives 0 in the second
                data = self.regs[regad]
                for i in range(15, -1, -1):
                    b = yield (data >> i) & 1
                self.frames.append((op, phyad, regad, data))
                b = yield None
                continue
            rest = []
            for _ in range(18):  # TA and DATA, of a write or of another PHY's frame
                b = yield None
                rest.append(b)
            self.frames.append((op, phyad, regad, value_of(rest[2:])))
            if op == "write" and ours and rest[0:2] == [1, 0]:
                self.regs[regad] = value_of(rest[2:])
            b = yield None

    async def run(self, ctx, pins):
        decoder = self._decoder()
        drive = next(decoder)
        prev_mdc = 0
        cycle = 0
        while True:
            await ctx.tick()
            cycle += 1
            mdc, o, oe = ctx.get(pins.mdc), ctx.get(pins.mdio_o), ctx.get(pins.mdio_oe)
            self.trace.append((mdc, o, oe))
            if oe and drive is not None:
                self.contention += 1
            if mdc and not prev_mdc:
                line = o if oe else (1 if drive is None else drive)
                self.edges.append((cycle, line, oe))
                drive = decoder.send(line)
            prev_mdc = mdc
            line = o if oe else (1 if drive is None else drive)
            ctx.set(pins.mdio_i, line)


def simulate(dut, bench, phy: Clause22Phy, top=None):
    """Run ``bench`` with ``phy`` on ``dut``'s pins; ``top``: the design to simulate,
    if ``dut`` sits inside one."""
    sim = Simulator(top if top is not None else dut)
    sim.add_clock(CLOCK_NS * 1e-9)
    sim.add_testbench(bench)

    async def model(ctx):
        await phy.run(ctx, dut)

    sim.add_testbench(model, background=True)
    sim.run()


async def transact(ctx, dut, *, write: bool, phy: int, reg: int, data: int = 0):
    """One command on the master's ports; returns (rdata, no_answer) at ``done``."""
    ctx.set(dut.write, write)
    ctx.set(dut.phy, phy)
    ctx.set(dut.reg, reg)
    ctx.set(dut.wdata, data)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    assert ctx.get(dut.busy)
    while not ctx.get(dut.done):
        await ctx.tick()
    assert not ctx.get(dut.busy)
    assert ctx.get(dut.rdata_valid) == (not write)
    return ctx.get(dut.rdata), ctx.get(dut.no_answer)


@pytest.mark.parametrize("clk_div", [2, DEFAULT_CLK_DIV])
def test_write_then_read_back(clk_div):
    """IEEE 802.3 s22.2.4.5: a write frame stores DATA in REGAD of the PHY at PHYAD; a
    read frame of the same register returns it (the PHY drives TA's second bit 0 and
    the 16 bits).  At the smallest divider too (2: the input synchroniser's delay)."""
    dut = MdioMaster(clk_div)
    phy = Clause22Phy(1)
    got = []

    async def bench(ctx):
        await transact(ctx, dut, write=True, phy=1, reg=4, data=0x01E1)
        got.append(await transact(ctx, dut, write=False, phy=1, reg=4))

    simulate(dut, bench, phy)
    assert phy.regs[4] == 0x01E1
    assert got == [(0x01E1, 0)]
    assert phy.frames == [("write", 1, 4, 0x01E1), ("read", 1, 4, 0x01E1)]
    assert phy.contention == 0


def test_read_phy_identifier():
    """IEEE 802.3 s22.2.4.3.1: registers 2 and 3 hold the PHY identifier; a KSZ9031RNX
    answers 0x0022 and 0x1622."""
    dut = MdioMaster()
    phy = Clause22Phy(7, KSZ9031_ID)
    got = []

    async def bench(ctx):
        for reg in (2, 3):
            got.append(await transact(ctx, dut, write=False, phy=7, reg=reg))

    simulate(dut, bench, phy)
    assert got == [(0x0022, 0), (0x1622, 0)]
    assert phy.contention == 0


def test_mdc_frequency_from_the_divider():
    """IEEE 802.3 s22.2.2.13, s22.3.4: MDC's period is at least 400 ns (2.5 MHz) with
    high and low times of at least 160 ns.  The default divider at 50 MHz: 2 x 13
    cycles, 520 ns (1.92 MHz), 260 ns high and low; MDC is low between frames; the
    divider ``clk_div_for`` picks for other core clocks keeps within the limits."""
    dut = MdioMaster()
    phy = Clause22Phy(1)

    async def bench(ctx):
        await transact(ctx, dut, write=True, phy=1, reg=0, data=0x1140)
        await ctx.tick().repeat(50)

    simulate(dut, bench, phy)
    rising = [cycle for cycle, _, _ in phy.edges]
    assert len(rising) == 64
    periods = {b - a for a, b in zip(rising, rising[1:], strict=False)}
    assert periods == {2 * DEFAULT_CLK_DIV}
    runs = []  # lengths of the high and low stretches inside the frame
    mdc = [m for m, _, _ in phy.trace]
    first, last = rising[0] - 1, rising[-1] - 1 + DEFAULT_CLK_DIV  # trace index
    level, length = mdc[first], 0
    for m in mdc[first:last]:
        if m == level:
            length += 1
        else:
            runs.append(length)
            level, length = m, 1
    runs.append(length)
    assert set(runs) == {DEFAULT_CLK_DIV}
    assert 2 * DEFAULT_CLK_DIV * CLOCK_NS >= MDC_MIN_PERIOD_NS
    assert DEFAULT_CLK_DIV * CLOCK_NS >= 160
    assert mdc[last:] == [0] * len(mdc[last:])  # idle: low
    for core_mhz in (25, 30, 50, 62.5, 100, 125):  # the divider for other clocks
        half_ns = clk_div_for(core_mhz) * 1e3 / core_mhz
        assert half_ns >= 160 and 2 * half_ns >= MDC_MIN_PERIOD_NS, core_mhz


def _stable_around_rising_edges(trace, clk_div=DEFAULT_CLK_DIV):
    """The station's MDIO (``mdio_o`` while ``mdio_oe``, and ``mdio_oe`` itself) holds
    for the half MDC period before and the half period after every rising edge of MDC:
    it changes only together with a falling edge (or, for a frame's first bit, half a
    period before the first rising edge)."""
    rising = [t for t in range(1, len(trace)) if trace[t][0] and not trace[t - 1][0]]
    assert rising
    for r in rising:
        window = {(o if oe else None, oe) for _, o, oe in trace[r - clk_div : r + clk_div]}
        assert len(window) == 1, f"MDIO changed within half a period of the edge at {r}"


def test_write_frame_bits():
    """IEEE 802.3 s22.2.4.5 (Table 22-12): a write is 32 ones of preamble, ST 01, OP 01,
    PHYAD and REGAD MSB first, TA 10 driven by the station, 16 data bits MSB first;
    MDIO is released afterwards (IDLE).  s22.2.2.11/s22.3.4: the station's MDIO is
    stable around each rising edge of MDC (it changes with the falling edges)."""
    dut = MdioMaster()
    phy = Clause22Phy(0b10110)

    async def bench(ctx):
        await transact(ctx, dut, write=True, phy=0b10110, reg=0b01001, data=0xA5C3)
        await ctx.tick().repeat(30)
        assert ctx.get(dut.mdio_oe) == 0

    simulate(dut, bench, phy)
    want = ([1] * 32 + [0, 1] + [0, 1] + bits(0b10110, 5) + bits(0b01001, 5) + [1, 0]
            + bits(0xA5C3, 16))
    assert [line for _, line, _ in phy.edges] == want
    assert [oe for _, _, oe in phy.edges] == [1] * 64
    _stable_around_rising_edges(phy.trace)
    assert phy.regs[0b01001] == 0xA5C3


def test_read_frame_releases_mdio_at_the_turnaround():
    """IEEE 802.3 s22.2.4.5.7: in a read the station drives preamble, ST 01, OP 10,
    PHYAD and REGAD, then releases MDIO for both TA bits and the data; the PHY drives 0
    in the second TA bit, then the data MSB first."""
    dut = MdioMaster()
    phy = Clause22Phy(3, {17: 0x8001})

    async def bench(ctx):
        await transact(ctx, dut, write=False, phy=3, reg=17)

    simulate(dut, bench, phy)
    want = [1] * 32 + [0, 1] + [1, 0] + bits(3, 5) + bits(17, 5) + [1, 0] + bits(0x8001, 16)
    assert [line for _, line, _ in phy.edges] == want
    assert [oe for _, _, oe in phy.edges] == [1] * 46 + [0] * 18
    _stable_around_rising_edges(phy.trace)
    assert phy.contention == 0


def test_absent_phy_reads_all_ones():
    """IEEE 802.3 s22.2.4.5: a PHY answers only frames with its PHYAD.  With no PHY at
    the address nothing drives MDIO after the station releases it, so the pull-up
    (s22.2.4.5.1 IDLE, high impedance) makes TA's second bit and the data ones: the read
    gives 0xFFFF and ``no_answer``; a write to that address changes nothing."""
    dut = MdioMaster()
    phy = Clause22Phy(1, {4: 0x1234})
    got = []

    async def bench(ctx):
        got.append(await transact(ctx, dut, write=False, phy=3, reg=4))
        await transact(ctx, dut, write=True, phy=3, reg=4, data=0)
        got.append(await transact(ctx, dut, write=False, phy=1, reg=4))

    simulate(dut, bench, phy)
    assert got == [(0xFFFF, 1), (0x1234, 0)]
    assert phy.regs[4] == 0x1234
    assert [f[:3] for f in phy.frames] == [("read", 3, 4), ("write", 3, 4), ("read", 1, 4)]
    assert phy.contention == 0


def test_start_while_busy_is_ignored():
    """A command while a frame runs is dropped (and reported by ``ignored``): one frame
    on the wire, the first command's; a command after ``done`` is taken (s22.2.4.5: the
    frames on MDIO do not overlap)."""
    dut = MdioMaster()
    phy = Clause22Phy(1, {2: 0x0022})
    seen = []

    async def bench(ctx):
        ctx.set(dut.phy, 1)
        ctx.set(dut.reg, 2)
        ctx.set(dut.start, 1)
        await ctx.tick()
        await ctx.tick().repeat(100)
        ctx.set(dut.write, 1)  # a write to reg 5 while busy
        ctx.set(dut.reg, 5)
        ctx.set(dut.wdata, 0xBEEF)
        seen.append(ctx.get(dut.ignored))
        await ctx.tick()
        ctx.set(dut.start, 0)
        seen.append(ctx.get(dut.ignored))
        while not ctx.get(dut.done):
            await ctx.tick()
        seen.append(ctx.get(dut.rdata))
        await ctx.tick().repeat(20)
        seen.append(len(phy.frames))
        await transact(ctx, dut, write=True, phy=1, reg=5, data=0xBEEF)

    simulate(dut, bench, phy)
    assert seen == [1, 0, 0x0022, 1]
    assert phy.frames == [("read", 1, 2, 0x0022), ("write", 1, 5, 0xBEEF)]
    assert phy.regs[5] == 0xBEEF


# ------------------------------------------------------------ the board's registers


def test_board_window_does_not_overlap_the_engine():
    """docs/registers.md: the engine maps 0x00..0x10 and its counters from 0x40; the
    board's window 0x30..0x3F lies between, and its registers inside it."""
    assert max(addr for addr, _ in REGISTERS.values()) < BOARD_BASE
    assert BOARD_END <= COUNTER_BASE
    assert all(BOARD_BASE <= addr < BOARD_END for addr, _ in BOARD_REGISTERS.values())
    assert mdio_command(0b10101, 0b00011, write=True, value=0xABCD) == (
        0xABCD | 0b00011 << 16 | 0b10101 << 21 | 1 << 26)


class _WithCore(Elaboratable):
    """:class:`BoardRegisters` beside a stand-in for the engine's register file: its
    read data, a register, is 0xC0DE0000 | the address of the cycle before."""

    def __init__(self, regs: BoardRegisters):
        self.regs = regs

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = self.regs
        m.d.sync += regs.core_rdata.eq(0xC0DE_0000 | regs.addr)
        return m


def _run_window(dut, bench, phy):
    simulate(dut, bench, phy, top=_WithCore(dut))


async def csr_read(ctx, dut, addr):
    """A read as the host link does it: the address held, the data a cycle later."""
    ctx.set(dut.addr, addr)
    await ctx.tick()
    return ctx.get(dut.rdata)


async def csr_write(ctx, dut, addr, value):
    ctx.set(dut.addr, addr)
    ctx.set(dut.wdata, value)
    ctx.set(dut.we, 1)
    await ctx.tick()
    ctx.set(dut.we, 0)


def test_board_window_reads_and_passes_the_engines_registers():
    """The window's reads come a cycle after the address, as the engine's
    (docs/registers.md "The bus"); outside 0x30..0x3F the engine's data pass unchanged;
    inside, unmapped and write-only addresses read 0 (as the engine's do)."""
    dut = BoardRegisters(clk_div=2)
    phy = Clause22Phy(1)
    got = {}

    async def bench(ctx):
        for addr in (0x00, 0x10, 0x2F, 0x30, 0x31, 0x3F, 0x40, 0x8D, 0x3FF, 0x00):
            got[addr] = await csr_read(ctx, dut, addr)

    _run_window(dut, bench, phy)
    assert got == {0x00: 0xC0DE0000, 0x10: 0xC0DE0010, 0x2F: 0xC0DE002F, 0x30: 0, 0x31: 0,
                   0x3F: 0, 0x40: 0xC0DE0040, 0x8D: 0xC0DE008D, 0x3FF: 0xC0DE03FF}


def test_board_registers_read_and_write_a_phy():
    """docs/boards.md, reading a PHY register: write ``mdio_cmd``, poll ``mdio_status``
    until busy (bit 31) falls; bit 30 then says a read completed and bits 15:0 hold it
    (IEEE 802.3 s22.2.4.5 frames on the pins).  A write is polled the same way; a new
    command clears bit 30; a command while busy is ignored and flagged (bit 28)."""
    dut = BoardRegisters()
    phy = Clause22Phy(1, KSZ9031_ID)
    status = BOARD_REGISTERS["mdio_status"][0]
    cmd = BOARD_REGISTERS["mdio_cmd"][0]
    log = []

    async def wait(ctx):
        while (word := await csr_read(ctx, dut, status)) & MDIO_BUSY:
            await ctx.tick().repeat(50)
        return word

    async def bench(ctx):
        await csr_write(ctx, dut, cmd, mdio_command(1, 3))
        log.append(await csr_read(ctx, dut, status))
        log.append(await wait(ctx))
        await csr_write(ctx, dut, cmd, mdio_command(1, 9, write=True, value=0x0300))
        await csr_write(ctx, dut, cmd, mdio_command(1, 10, write=True, value=0xFFFF))
        log.append(await csr_read(ctx, dut, status))
        log.append(await wait(ctx))
        await csr_write(ctx, dut, cmd, mdio_command(2, 9))  # no PHY at 2
        log.append(await wait(ctx))
        await csr_write(ctx, dut, cmd, mdio_command(1, 9))
        log.append(await wait(ctx))

    _run_window(dut, bench, phy)
    flags = MDIO_BUSY | MDIO_READ_DONE | MDIO_NO_ANSWER | MDIO_IGNORED
    assert log[0] & flags == MDIO_BUSY
    assert log[1] == MDIO_READ_DONE | 0x1622
    assert log[2] & flags == MDIO_BUSY | MDIO_IGNORED
    assert log[3] & flags == MDIO_IGNORED
    assert log[4] == MDIO_READ_DONE | MDIO_NO_ANSWER | 0xFFFF
    assert log[5] == MDIO_READ_DONE | 0x0300
    assert phy.regs[9] == 0x0300 and phy.regs[10] == 0
