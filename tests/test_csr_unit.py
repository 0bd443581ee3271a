"""The register file's time base (hdl/csr.py): ``now`` counts the microseconds of ``tick``."""

from amaranth.hdl import Module
from amaranth_helpers import run

from toe.hdl.config import ToeConfig
from toe.hdl.csr import REGISTERS, RegisterFile


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
