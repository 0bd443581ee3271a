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


async def _read_counters(ctx, dut, names):
    """Each named counter through the register bus (one cycle of latency)."""
    values = {}
    for name in names:
        ctx.set(dut.addr, COUNTER_BASE + COUNTERS.index(name))
        await ctx.tick()
        values[name] = ctx.get(dut.rdata)
    return values


def test_counters_count_every_event_through_the_scan():
    """The counters in LUT RAM (hdl/csr.py): every event counts once, whether it comes
    once in a while, every cycle for longer than a scan (the pending count's widest
    case), or in the cycles right after reset while the scan's first pass writes the
    RAM; a read between the scan's visits is exact.  Reads while events keep coming
    never go backwards."""
    import random

    dut = RegisterFile(ToeConfig())
    n = len(COUNTERS)
    rng = random.Random(5)
    watched = [COUNTERS[0], COUNTERS[1], COUNTERS[n // 2], COUNTERS[-1]]
    counts = dict.fromkeys(COUNTERS, 0)

    async def fire(ctx, bits):
        ctx.set(dut.events, bits)
        await ctx.tick()
        for i in range(n):
            counts[COUNTERS[i]] += bits >> i & 1

    async def bench(ctx):
        everything = (1 << n) - 1
        await fire(ctx, everything)  # the first cycle after reset: the scan is clearing
        for _ in range(3 * n):  # every counter, every cycle, three scans long
            await fire(ctx, everything)
        for _ in range(400):
            await fire(ctx, rng.getrandbits(n) & rng.getrandbits(n))
        ctx.set(dut.events, 0)
        await ctx.tick()
        await ctx.tick()
        got = await _read_counters(ctx, dut, COUNTERS)
        assert got == counts
        # Reads while events come: never less than before, never more than counted.
        last = dict.fromkeys(watched, 0)
        for _ in range(300):
            ctx.set(dut.events, rng.getrandbits(n))
            for i in range(n):
                counts[COUNTERS[i]] += ctx.get(dut.events) >> i & 1
            name = rng.choice(watched)
            ctx.set(dut.addr, COUNTER_BASE + COUNTERS.index(name))
            await ctx.tick()
            value = ctx.get(dut.rdata)
            assert last[name] <= value <= counts[name], (name, last[name], value)
            last[name] = value
        ctx.set(dut.events, 0)
        await ctx.tick()
        await ctx.tick()
        assert await _read_counters(ctx, dut, COUNTERS) == counts

    m = Module()
    m.submodules.dut = dut
    run(m, bench)
