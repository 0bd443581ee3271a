"""The cocotb testbench of the engine's Verilog top, seen from its MAC side.

:class:`MacTestbench` owns everything outside the core: the clock, reset, the ``tick``
time base (one pulse = one microsecond of engine time), an :class:`~sim.axis.AxisSource` on
``rx_axis`` (frames *to* the engine, as a MAC delivers them) and an :class:`~sim.axis.AxisSink`
on ``tx_axis`` (frames *from* the engine), plus drivers for the register file and the ARP
lookup port.  Every frame in either direction is kept with its simulated time, so a test can
check timing and :meth:`MacTestbench.finish` can write a pcapng of the whole conversation.

Typical cocotb test::

    @cocotb.test()
    async def test_ping(dut):
        tb = MacTestbench(dut)
        await tb.reset()
        tb.send(Ether(dst=...) / IP(dst=...) / ICMP())
        reply = await tb.recv(timeout_ns=10_000)
        assert reply.ether[ICMP].type == 0
        await tb.finish()  # checks the stream protocol, writes <test>.pcapng

The top's ports (fixed contract): ``clk``, ``rst``; ``rx_axis_*`` and ``tx_axis_*``
(AXI4-Stream, ``data_bytes`` lanes; ``rx_axis_tuser``, the MAC's bad-frame flag, where the
top has one, is driven 0); ``tick``; ``csr_addr`` [10], ``csr_wdata`` [32],
``csr_we``, ``csr_rdata`` [32] (read data registered: valid the cycle after the address);
``arp_req_{valid,ready,ip}`` and ``arp_resp_{valid,ready,ok,mac}``.
"""

import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import (
    ClockCycles,
    Event,
    Lock,
    RisingEdge,
    SimTimeoutError,
    Timer,
    with_timeout,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from toe.hdl.config import ToeConfig

from .axis import AxisFrame, AxisSink, AxisSource, Pattern
from .pcap import INBOUND, OUTBOUND, PcapRecord, write_pcapng

__all__ = [
    "MacTestbench",
    "RecvTimeout",
    "TxFrame",
    "artifacts_path",
    "current_test_name",
    "load_config",
]

log = logging.getLogger("cocotb.toe.tb")


def load_config() -> ToeConfig:
    """The configuration the runner passed in ``TOE_CONFIG`` (JSON), else the default."""
    text = os.environ.get("TOE_CONFIG")
    return ToeConfig(**json.loads(text)) if text else ToeConfig()


def current_test_name() -> str:
    """The running cocotb test's name, safe as a file name."""
    try:
        from cocotb import regression

        name = regression._manager_inst._test.name  # no public API for this in cocotb 2.1
    except AttributeError:
        name = "test"
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "test"


def artifacts_path() -> Path:
    """Where this simulation's artefacts go: ``TOE_ARTIFACTS`` (set by
    :func:`sim.runner.run_cocotb`), else ``build/artifacts/<cocotb test name>/``."""
    directory = os.environ.get("TOE_ARTIFACTS")
    if directory:
        path = Path(directory)
    else:
        from .build import build_root

        path = build_root() / "artifacts" / current_test_name()
    path.mkdir(parents=True, exist_ok=True)
    return path


class RecvTimeout(AssertionError):
    """The engine sent no frame within the time a test allowed."""


@dataclass
class TxFrame:
    """A frame the engine sent: simulated times (ns) of its first and last beat, its bytes,
    and (parsed on first use) the scapy ``Ether`` of it."""

    time_ns: float
    data: bytes
    end_ns: float = field(default=0.0)

    @cached_property
    def ether(self) -> Ether:
        return Ether(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return len(self.data)


class MacTestbench:
    """Drives the engine top ``dut`` from the MAC side; see the module docstring.

    ``tick_cycles`` is the period of the ``tick`` strobe in clock cycles (default 100: real
    time at the default 10 ns clock); ``None`` leaves ``tick`` low.  ``strict`` makes an
    AXI4-Stream violation on ``tx_axis`` fail the test at once (else :meth:`finish` fails it).
    """

    def __init__(
        self,
        dut,
        config: ToeConfig | None = None,
        *,
        tick_cycles: int | None = 100,
        clock_ns: int = 10,
        strict: bool = True,
    ):
        self.dut = dut
        self.config = config if config is not None else load_config()
        self.clock_ns = clock_ns
        self.tick_cycles = tick_cycles
        self.clk = dut.clk
        self._edge = RisingEdge(dut.clk)
        dut.rst.value = 0
        dut.tick.value = 0
        dut.csr_addr.value = 0
        dut.csr_wdata.value = 0
        dut.csr_we.value = 0
        dut.arp_req_valid.value = 0
        dut.arp_req_ip.value = 0
        dut.arp_resp_ready.value = 0
        if hasattr(dut, "rx_axis_tuser"):
            dut.rx_axis_tuser.value = 0  # every frame sent is good (ToeTop: drop_mac_error)
        self.clock = Clock(dut.clk, clock_ns, unit="ns")
        self.clock.start()
        lanes = self.config.data_bytes
        self.rx = AxisSource(dut, "rx_axis", dut.clk, reset=dut.rst, byte_lanes=lanes)
        self.tx = AxisSink(dut, "tx_axis", dut.clk, reset=dut.rst, byte_lanes=lanes, strict=strict)
        self._csr_lock = Lock()
        self._arp_lock = Lock()
        self._tx_frames: dict[int, TxFrame] = {}
        self._tick_task = None
        if tick_cycles is not None:
            if tick_cycles < 1:
                raise ValueError("tick_cycles must be at least 1 (or None)")
            self._tick_task = cocotb.start_soon(self._drive_tick(tick_cycles))
        self.test_name = current_test_name()
        self._finished = False
        self._autosave_task = cocotb.start_soon(self._autosave())

    # -- time and reset ---------------------------------------------------------------------

    @property
    def now_ns(self) -> float:
        """The current simulated time in ns."""
        return get_sim_time("ns")

    async def cycles(self, n: int) -> None:
        """Wait ``n`` rising clock edges."""
        await ClockCycles(self.clk, n)

    async def wait_ns(self, ns: float) -> None:
        """Wait ``ns`` nanoseconds of simulated time."""
        await Timer(ns, "ns")

    async def reset(self, cycles: int = 8) -> None:
        """Hold ``rst`` high for ``cycles`` clock cycles; returns with the design running."""
        await self._edge
        self.dut.rst.value = 1
        await ClockCycles(self.clk, cycles)
        self.dut.rst.value = 0
        await self._edge

    async def _drive_tick(self, period: int) -> None:
        tick = self.dut.tick
        if period == 1:
            tick.value = 1
            return
        # Set at edge E0 (sampled at E1), cleared at E1; then sleep to mid-cycle before
        # E0 + period instead of waking at every edge.
        gap = Timer((period - 1.5) * self.clock_ns, "ns")
        await self._edge
        while True:
            tick.value = 1
            await self._edge
            tick.value = 0
            await gap
            await self._edge

    # -- frames -----------------------------------------------------------------------------

    def set_idle(self, pattern: "str | Pattern") -> None:
        """Idle cycles between beats sent to the engine (a :data:`sim.axis.PATTERNS` name, an
        iterable of booleans, or None)."""
        self.rx.set_idle(pattern)

    def set_backpressure(self, pattern: "str | Pattern") -> None:
        """Cycles with ``tx_axis_tready`` low (a :data:`sim.axis.PATTERNS` name, an iterable
        of booleans, or None)."""
        self.tx.set_backpressure(pattern)

    def send(self, frame: bytes | Packet, at_ns: float | None = None) -> AxisFrame:
        """Queue ``frame`` (no FCS) for the engine, now or at simulated time ``at_ns``.

        The frame's first beat is presented within two clock cycles of the request (later if
        frames queued before it are still going in).  The returned :class:`~sim.axis.AxisFrame`
        gets the times of its first and last beat as they transfer.
        """
        data = bytes(frame)
        if at_ns is None:
            return self.rx.send(data)
        delay = at_ns - self.now_ns
        if delay < 0:
            raise ValueError(f"at_ns={at_ns} is in the past (now {self.now_ns} ns)")
        pending = AxisFrame(data)
        cocotb.start_soon(self._send_at(pending, delay))
        return pending

    async def _send_at(self, frame: AxisFrame, delay_ns: float) -> None:
        if delay_ns > 0:
            await Timer(delay_ns, "ns", round_mode="round")
        self.rx.send(frame)

    def _wrap(self, frame: AxisFrame) -> TxFrame:
        wrapped = self._tx_frames.get(id(frame))
        if wrapped is None:
            wrapped = TxFrame(frame.start_ns, frame.data, frame.end_ns)
            self._tx_frames[id(frame)] = wrapped
        return wrapped

    @property
    def sent(self) -> list[TxFrame]:
        """Every frame the engine has sent so far, in order, with its times."""
        return [self._wrap(f) for f in self.tx.frames]

    @property
    def injected(self) -> list[AxisFrame]:
        """Every frame queued for the engine (``start_ns`` is None until it went in)."""
        return list(self.rx.frames)

    async def recv(self, timeout_ns: float | None = 1_000_000) -> TxFrame:
        """The next frame from the engine not yet returned by ``recv``.

        Raises :class:`RecvTimeout` (an ``AssertionError``) if none completes within
        ``timeout_ns`` (default 1 ms of simulated time; None waits forever).
        """
        try:
            frame = await self.tx.recv(timeout_ns)
        except SimTimeoutError:
            raise RecvTimeout(
                f"no frame from the engine within {timeout_ns:g} ns (now {self.now_ns:g} ns)"
            ) from None
        return self._wrap(frame)

    async def expect_silence(self, ns: float) -> None:
        """Assert that no frame from the engine is waiting to be read now and that the engine
        starts none during the next ``ns`` nanoseconds."""
        if self.tx.pending:
            frames = [self._wrap(f) for f in self.tx.unread]
            raise AssertionError(
                f"{len(frames)} frame(s) from the engine not read: {_describe(frames)}"
            )
        before = len(self.tx.frames)
        start = self.now_ns
        await Timer(ns, "ns", round_mode="round")
        new = [self._wrap(f) for f in self.tx.frames[before:]]
        if new or self.tx.in_frame:
            partial = " (and one partly sent)" if self.tx.in_frame else ""
            raise AssertionError(
                f"engine sent {len(new)} frame(s){partial} during the silence expected "
                f"from {start:g} to {start + ns:g} ns: {_describe(new)}"
            )

    async def wait_sent(self) -> None:
        """Wait until every queued frame has gone into the engine."""
        await self.rx.wait_drained()

    # -- register file and ARP port ---------------------------------------------------------

    async def csr_write(self, addr: int, value: int) -> None:
        """Write ``value`` to register ``addr`` (``csr_we`` high for one cycle)."""
        async with self._csr_lock:
            dut = self.dut
            await self._edge
            dut.csr_addr.value = addr
            dut.csr_wdata.value = value & 0xFFFF_FFFF
            dut.csr_we.value = 1
            await self._edge
            dut.csr_we.value = 0

    async def csr_read(self, addr: int) -> int:
        """Read register ``addr`` (address driven, read data registered one cycle later)."""
        async with self._csr_lock:
            await self._edge
            self.dut.csr_addr.value = addr
            await self._edge  # the design registers csr_rdata at this edge
            await self._edge  # ... and it reads here
            return self.dut.csr_rdata.value.to_unsigned()

    async def arp_lookup(self, ip_addr: int, timeout_ns: float | None = None) -> tuple[bool, int]:
        """Ask the engine's ARP port for ``ip_addr``; returns ``(ok, mac)``.

        The answer may need an ARP exchange on the wire: run the lookup as a task
        (``cocotb.start_soon``) while the test answers the request.
        """
        async with self._arp_lock:
            if timeout_ns is None:
                return await self._arp_lookup(ip_addr)
            return await with_timeout(self._arp_lookup(ip_addr), timeout_ns, "ns")

    async def _arp_lookup(self, ip_addr: int) -> tuple[bool, int]:
        dut = self.dut
        edge = self._edge
        await edge
        dut.arp_req_ip.value = ip_addr
        dut.arp_req_valid.value = 1
        dut.arp_resp_ready.value = 1
        try:
            while True:
                await edge
                if dut.arp_req_ready.value:
                    break
            dut.arp_req_valid.value = 0
            # Sleep until the response shows instead of waking at every edge.
            while not dut.arp_resp_valid.value:
                await RisingEdge(dut.arp_resp_valid)
                await edge
            return bool(dut.arp_resp_ok.value), dut.arp_resp_mac.value.to_unsigned()
        finally:
            dut.arp_req_valid.value = 0
            dut.arp_resp_ready.value = 0

    # -- artefacts --------------------------------------------------------------------------

    async def _autosave(self) -> None:
        """Sleeps for the whole test; when cocotb ends the test (passed or failed) and
        cancels its tasks, writes the pcap unless :meth:`finish` already did."""
        try:
            await Event().wait()
        finally:
            if not self._finished:
                try:
                    path = self.write_pcap(artifacts_path() / f"{self.test_name}.pcapng")
                    log.info("test ended without finish(): pcap written to %s", path)
                except Exception:  # never mask the test's own outcome
                    log.exception("could not write the pcap")

    def pcap_records(self) -> list[PcapRecord]:
        """Both directions, in time order: frames into the engine (inbound) and out of it
        (outbound), stamped with the time of their first beat."""
        records = [
            PcapRecord(int(round(f.start_ns)), f.data, INBOUND, "to engine")
            for f in self.rx.frames
            if f.start_ns is not None
        ]
        records += [
            PcapRecord(int(round(f.start_ns)), f.data, OUTBOUND, "from engine")
            for f in self.tx.frames
        ]
        records.sort(key=lambda r: r.time_ns)
        return records

    def write_pcap(self, path: str | Path) -> Path:
        """Write every frame of both directions so far to ``path`` (pcapng, ns timestamps,
        direction flags, which Wireshark shows)."""
        return write_pcapng(path, self.pcap_records())

    async def finish(self, name: str | None = None) -> Path:
        """End a test: write ``<artifacts>/<name or cocotb test name>.pcapng`` and fail on
        any stream protocol error seen; returns the pcap's path.

        A test that ends without calling this (it failed, say) still gets the pcap under the
        cocotb test's name, written when cocotb cancels the testbench's tasks.
        """
        self._finished = True
        path = self.write_pcap(artifacts_path() / f"{name or self.test_name}.pcapng")
        log.info("pcap of %d frames: %s", len(self.rx.frames) + len(self.tx.frames), path)
        if self.tx.errors:
            raise AssertionError("tx_axis protocol errors:\n" + "\n".join(self.tx.errors))
        return path


def _describe(frames: list[TxFrame], limit: int = 4) -> str:
    parts = [f"{f.time_ns:g} ns {f.ether.summary()}" for f in frames[:limit]]
    if len(frames) > limit:
        parts.append(f"... {len(frames) - limit} more")
    return "; ".join(parts) or "none"
