"""The register file's time base (hdl/csr.py): ``now`` counts the microseconds of ``tick``."""

import re
from pathlib import Path

from amaranth.hdl import Module
from amaranth_helpers import run

from toe.hdl.config import ToeConfig
from toe.hdl.csr import COUNTER_BASE, COUNTERS, REGISTERS, RegisterFile


def _count(config: ToeConfig, ticks: list[int]) -> list[int]:
    dut = RegisterFile(config)
    seen = []

    async def bench(ctx):
        for tick in ticks:
            ctx.set(dut.tick, tick)
            await ctx.tick()
            seen.append(ctx.get(dut.now))
        ctx.set(dut.tick, 0)
        ctx.set(dut.addr, REGISTERS["now_us"][0])
        await ctx.tick()
        await ctx.tick()
        seen.append(ctx.get(dut.rdata))

    m = Module()
    m.submodules.dut = dut
    run(m, bench)
    return seen


def test_tick_strobe_counts_microseconds():
    """tick_bits 1 (the default): one microsecond per pulse; ``now_us`` reads it."""
    assert _count(ToeConfig(), [1, 0, 1, 1, 0]) == [1, 1, 2, 3, 3, 3]


def test_wide_tick_adds_the_elapsed_microseconds():
    """tick_bits 8: a cycle may carry several microseconds (a time source coarser than
    the clock, or a simulation slower than real time); ``now`` adds them, and wraps at
    2^32 as every deadline comparison expects."""
    config = ToeConfig(tick_bits=8)
    assert _count(config, [255, 0, 3, 1]) == [255, 255, 258, 259, 259]


def test_every_counter_is_documented_at_its_address():
    """docs/registers.md lists every counter of :data:`COUNTERS` at COUNTER_BASE + its
    index (one definition: the gateware's lists; the document is compared with it)."""
    doc = (Path(__file__).parent.parent / "docs" / "registers.md").read_text()
    rows = {name: int(addr, 16) for addr, name in
            re.findall(r"\| `(0x[0-9A-Fa-f]+)` \| `([a-z0-9_]+)` \|", doc)}
    want = {name: COUNTER_BASE + i for i, name in enumerate(COUNTERS)}
    assert {n: rows.get(n) for n in want} == want
