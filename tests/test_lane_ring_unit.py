"""Unit test of hdl/tcp/lane_ring.py: W bytes written and read at any byte address.

The reference is a plain ``bytearray`` of the ring's depth: a write stores byte ``i`` at
``(addr + i) % depth`` where its enable bit is set, a read returns ``(addr + i) % depth``.
"""

import random

import pytest
from amaranth_helpers import run

from toe.hdl.tcp.lane_ring import LaneRing


def _wrap(addr, i, depth, part):
    """Address ``addr + i`` wrapped inside the part of ``addr``."""
    base = addr - addr % part
    return base + (addr % part + i) % part


@pytest.mark.parametrize("width, parts", [(1, 1), (2, 4), (8, 1), (8, 8), (64, 4)])
def test_random_access_matches_bytearray(width, parts):
    depth = max(256, 4 * width)
    part = depth // parts
    dut = LaneRing(width, depth, part)
    model = bytearray(depth)
    rng = random.Random(width)

    async def bench(ctx):
        for _ in range(400):
            if rng.random() < 0.6:
                addr = rng.randrange(depth)
                payload = rng.randbytes(width)
                enable = rng.getrandbits(width)
                ctx.set(dut.wr_addr, addr)
                ctx.set(dut.wr_data, int.from_bytes(payload, "little"))
                ctx.set(dut.wr_en, enable)
                for i in range(width):
                    if enable >> i & 1:
                        model[_wrap(addr, i, depth, part)] = payload[i]
                await ctx.tick()
                ctx.set(dut.wr_en, 0)
            else:
                addr = rng.randrange(depth)
                ctx.set(dut.rd_addr, addr)
                ctx.set(dut.rd_en, 1)
                await ctx.tick()
                ctx.set(dut.rd_en, 0)
                ctx.set(dut.rd_addr, rng.randrange(depth))  # held output ignores it
                got = ctx.get(dut.rd_data).to_bytes(width, "little")
                want = bytes(model[_wrap(addr, i, depth, part)] for i in range(width))
                assert got == want, f"read at {addr}"
                await ctx.tick()
                assert ctx.get(dut.rd_data).to_bytes(width, "little") == want

    run(dut, bench)


def test_rejects_odd_width():
    with pytest.raises(ValueError):
        LaneRing(3, 256)
