"""cocotb tests of the simulation harness, run on :mod:`harness_loopback` by test_harness.py.

They check the harness, not the engine: frames of assorted sizes round-trip exactly under the
standard idle/backpressure patterns (AXI4-Stream handshake rules, ARM IHI 0051), frames are
injected at chosen simulated times, the register file and ARP port drivers follow the top's
contract, silence and receive time-outs are detected, and a pcap of both directions is written.
"""

import json
import os
import time

import cocotb
from cocotb.triggers import Timer
from harness_loopback import (
    LOOPBACK_ID,
    REG_DATA_BYTES,
    REG_ID,
    REG_RX_FRAMES,
    REG_SCRATCH0,
    REG_SCRATCH1,
    REG_TICKS,
    arp_model,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from toe.sim.axis import PATTERNS
from toe.sim.testbench import MacTestbench, RecvTimeout, artifacts_path

SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 60, 64, 65, 127, 1500, 1514, 1600]
"""Frame sizes (bytes) of the round-trip test: around beat boundaries of every tested width,
minimum and maximum Ethernet frames without FCS, and beyond."""


def payload(size: int, seed: int) -> bytes:
    """``size`` bytes that differ between frames and positions."""
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(size))


@cocotb.test()
@cocotb.parametrize(idle=list(PATTERNS), backpressure=list(PATTERNS))
async def test_roundtrip(dut, idle: str, backpressure: str):
    """Every frame comes back byte-exact and in order, whatever the idle and backpressure
    pattern; times are ordered (first beat in before first beat out)."""
    tb = MacTestbench(dut, tick_cycles=None)
    await tb.reset()
    tb.set_idle(idle)
    tb.set_backpressure(backpressure)
    frames = [payload(size, n) for n, size in enumerate(SIZES)]
    injected = [tb.send(f) for f in frames]
    for n, expected in enumerate(frames):
        got = await tb.recv(timeout_ns=200_000)
        assert got.data == expected, f"frame {n} ({len(expected)} bytes) differs"
        assert injected[n].start_ns < got.time_ns <= got.end_ns
    await tb.expect_silence(500)
    assert [f.data for f in tb.sent] == frames
    await tb.finish()


@cocotb.test()
async def test_send_at(dut):
    """A frame given ``at_ns`` goes in within two clock cycles of that time, and frames
    scheduled out of order go in in time order."""
    tb = MacTestbench(dut, tick_cycles=None)
    await tb.reset()
    start = tb.now_ns
    late = tb.send(payload(100, 1), at_ns=start + 5_000)
    early = tb.send(payload(70, 2), at_ns=start + 2_000)
    first = await tb.recv(timeout_ns=10_000)
    second = await tb.recv(timeout_ns=10_000)
    assert (first.data, second.data) == (early.data, late.data)
    for frame, at in ((early, start + 2_000), (late, start + 5_000)):
        assert at <= frame.start_ns <= at + 2 * tb.clock_ns, (frame.start_ns, at)
    assert second.time_ns >= start + 5_000
    try:
        tb.send(b"\x00", at_ns=start)
    except ValueError:
        pass
    else:
        raise AssertionError("a time in the past was accepted")
    await tb.finish()


@cocotb.test()
async def test_csr(dut):
    """Registered reads and one-cycle writes; the tick strobe pulses every ``tick_cycles``."""
    tb = MacTestbench(dut, tick_cycles=10)
    await tb.reset()
    assert await tb.csr_read(REG_ID) == LOOPBACK_ID
    assert await tb.csr_read(REG_DATA_BYTES) == tb.config.data_bytes
    await tb.csr_write(REG_SCRATCH0, 0xDEADBEEF)
    await tb.csr_write(REG_SCRATCH1, 0x12345678)
    assert await tb.csr_read(REG_SCRATCH0) == 0xDEADBEEF
    assert await tb.csr_read(REG_SCRATCH1) == 0x12345678
    await tb.csr_write(REG_SCRATCH0, 1)
    assert await tb.csr_read(REG_SCRATCH0) == 1
    assert await tb.csr_read(REG_SCRATCH1) == 0x12345678
    before = await tb.csr_read(REG_TICKS)
    await tb.cycles(1000)
    after = await tb.csr_read(REG_TICKS)
    # 1000 cycles plus the 3 of a read separate the two samples.
    assert after - before in (100, 101), (before, after)
    for n in range(3):
        tb.send(payload(20, n))
    for _ in range(3):
        await tb.recv(timeout_ns=10_000)
    assert await tb.csr_read(REG_RX_FRAMES) == 3
    await tb.finish()


@cocotb.test()
async def test_arp(dut):
    """The ARP port driver returns the loopback's answer for each request."""
    tb = MacTestbench(dut)
    await tb.reset()
    for ip_addr in (0x0A000001, 0xC0A80101, 0, 0xFFFFFFFF):
        assert await tb.arp_lookup(ip_addr, timeout_ns=1_000) == arp_model(ip_addr)
    await tb.finish()


@cocotb.test()
async def test_silence_and_timeouts(dut):
    """``expect_silence`` passes when nothing is sent and fails when a frame comes or waits
    unread; ``recv`` raises after its timeout."""
    tb = MacTestbench(dut)
    await tb.reset()
    await tb.expect_silence(1_000)
    t0 = tb.now_ns
    try:
        await tb.recv(timeout_ns=500)
    except RecvTimeout:
        assert tb.now_ns - t0 >= 500
    else:
        raise AssertionError("recv did not time out")
    tb.send(payload(64, 9))
    try:
        await tb.expect_silence(2_000)
    except AssertionError as exc:
        assert "during the silence" in str(exc)
    else:
        raise AssertionError("a frame during expect_silence went unnoticed")
    try:
        await tb.expect_silence(10)
    except AssertionError as exc:
        assert "not read" in str(exc)
    else:
        raise AssertionError("an unread frame went unnoticed")
    assert (await tb.recv(timeout_ns=0.1)).data == payload(64, 9)
    await tb.expect_silence(100)
    await tb.finish()


@cocotb.test()
async def test_pcap(dut):
    """Scapy packets go in and come back; finish() writes a pcap of both directions
    (checked on the pytest side)."""
    tb = MacTestbench(dut)
    await tb.reset()
    packets = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1000 + n, dport=7)
        / payload(10 * n, n)
        for n in range(3)
    ]
    for n, pkt in enumerate(packets):
        tb.send(pkt, at_ns=tb.now_ns + 1_000 * (n + 1))
    for pkt in packets:
        got = await tb.recv(timeout_ns=10_000)
        assert got.data == bytes(pkt)
        assert got.ether[UDP].sport == pkt[UDP].sport
    path = await tb.finish(name="conversation")
    assert path.name == "conversation.pcapng" and path.parent == artifacts_path()


@cocotb.test()
async def test_speed(dut):
    """Not a check: measures simulated cycles per second, of wall-clock time and of this
    process's CPU time (steadier on a shared machine), with a frame moving every cycle and with
    the design idle (tick strobe only); writes them to speed.json."""
    tb = MacTestbench(dut)
    await tb.reset()

    def rates(cycles: float, wall: float, cpu: float) -> dict[str, int]:
        return {"per_wall_s": round(cycles / wall), "per_cpu_s": round(cycles / cpu)}

    frames = [payload(1500, n) for n in range(40)]
    t0, wall0, cpu0 = tb.now_ns, time.perf_counter(), time.process_time()
    for f in frames:
        tb.send(f)
    for _ in frames:
        await tb.recv(timeout_ns=1_000_000)
    cycles = (tb.now_ns - t0) / tb.clock_ns
    busy = rates(cycles, time.perf_counter() - wall0, time.process_time() - cpu0)
    t0, wall0, cpu0 = tb.now_ns, time.perf_counter(), time.process_time()
    await Timer(2, "ms")
    cycles = (tb.now_ns - t0) / tb.clock_ns
    idle = rates(cycles, time.perf_counter() - wall0, time.process_time() - cpu0)
    result = {"busy_cycles": busy, "idle_cycles": idle, "data_bytes": tb.config.data_bytes}
    (artifacts_path() / "speed.json").write_text(json.dumps(result) + "\n")
    dut._log.info("simulation speed: %s", result)


@cocotb.test(skip=os.environ.get("TOE_HARNESS_FAIL") != "1")
async def test_deliberate_failure(dut):
    """Fails on purpose (only when TOE_HARNESS_FAIL=1): the runner must report it."""
    tb = MacTestbench(dut)
    await tb.reset()
    tb.send(payload(60, 0))
    await tb.recv(timeout_ns=1_000)
    raise AssertionError("deliberate failure for the harness test")
