"""cocotb drivers of the engine's host interface: commands, events, TX and RX data.

:class:`HostPort` attaches to the Verilog top's ``cmd_*``, ``evt_*``, ``htx_*`` and
``hrx_*`` streams (see :mod:`hdl.top`).  Messages are packed and unpacked with the
layouts of :mod:`hdl.host_if`, the same definitions the gateware is built from.  Events
are recorded with their simulated time; received bytes are collected per connection.
Both event and RX streams are always ready (the host takes whatever it granted credit
for), so the monitors sleep until ``valid`` rises instead of waking every cycle.
"""

from collections import defaultdict, deque
from dataclasses import dataclass

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, RisingEdge, with_timeout

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import (
    CommandOp,
    ErrorCode,
    EventKind,
    command_layout,
    data_layout,
    event_layout,
)

__all__ = ["HostPort", "HostEvent"]


@dataclass
class HostEvent:
    """One event from the engine, with the simulated time (ns) it was taken."""

    kind: EventKind
    code: ErrorCode
    conn: int
    tag: int
    port: int
    remote_port: int
    addr: int
    value: int
    time_ns: float

    def __str__(self) -> str:
        extra = f" {self.code.name}" if self.code != ErrorCode.NONE else ""
        return f"{self.kind.name}{extra}(conn={self.conn}, value={self.value})"


class HostPort:
    """The host side of the engine, driven from cocotb.

    ``on_event`` and ``on_rx_beat`` (callables taking the packed bits) let a transport
    forward the raw messages to the host driver as well.
    """

    def __init__(self, dut, config: ToeConfig):
        self.dut = dut
        self.config = config
        self.command_layout = command_layout(config)
        self.event_layout = event_layout(config)
        self.data_layout = data_layout(config)
        self._edge = RisingEdge(dut.clk)
        self.events: list[HostEvent] = []
        self.received: dict[int, bytearray] = defaultdict(bytearray)
        self.rx_log: list[tuple[float, int, int]] = []  # (time ns, conn, bytes) per RX beat
        self.tx_log: list[float] = []  # time (ns) each TX beat was taken
        self.on_event = None
        self.on_rx_beat = None
        self._event_arrived = Event()
        self._rx_arrived = Event()
        self._commands: deque[int] = deque()
        self._tx_beats: deque[int] = deque()
        self._wake_cmd = Event()
        self._wake_tx = Event()
        self._cmd_done = Event()
        self._tx_done = Event()
        dut.cmd_valid.value = 0
        dut.htx_valid.value = 0
        dut.evt_ready.value = 1
        dut.hrx_ready.value = 1
        cocotb.start_soon(self._drive(dut.cmd_valid, dut.cmd_ready, dut.cmd_data,
                                      self._commands, self._wake_cmd, self._cmd_done))
        cocotb.start_soon(self._drive(dut.htx_valid, dut.htx_ready, dut.htx_data,
                                      self._tx_beats, self._wake_tx, self._tx_done,
                                      self.tx_log))
        cocotb.start_soon(self._monitor(dut.evt_valid, dut.evt_data, self._take_event))
        cocotb.start_soon(self._monitor(dut.hrx_valid, dut.hrx_data, self._take_rx))

    # -- sending ------------------------------------------------------------------------

    def pack_command(self, op: CommandOp, **fields) -> int:
        return self.command_layout.const({"op": op, **fields}).as_bits()

    def command(self, op: CommandOp, **fields) -> None:
        """Queue a command (``conn``, ``tag``, ``port``, ``addr``, ``value``)."""
        self.send_command_bits([self.pack_command(op, **fields)])

    def send_command_bits(self, commands: list[int]) -> None:
        self._commands.extend(commands)
        self._wake_cmd.set()

    def write(self, conn: int, data: bytes) -> None:
        """Queue ``data`` on the TX stream for ``conn`` (one write: ``last`` on its end)."""
        w = self.config.data_bytes
        beats = []
        for at in range(0, len(data), w):
            chunk = data[at : at + w]
            beats.append(self.data_layout.const({
                "conn": conn, "data": int.from_bytes(chunk, "little"), "count": len(chunk),
                "last": int(at + w >= len(data)),
            }).as_bits())
        self.send_tx_bits(beats)

    def send_tx_bits(self, beats: list[int]) -> None:
        self._tx_beats.extend(beats)
        self._wake_tx.set()

    async def drained(self) -> None:
        """Wait until every queued command and TX beat has been taken."""
        while self._commands:
            self._cmd_done.clear()
            await self._cmd_done.wait()
        while self._tx_beats:
            self._tx_done.clear()
            await self._tx_done.wait()

    async def _drive(self, valid, ready, payload, queue, wake, done, log=None) -> None:
        edge = self._edge
        presented = False
        while True:
            if not queue and not presented:
                wake.clear()
                await wake.wait()
                await edge
            if not presented:
                payload.value = queue[0]
                valid.value = 1
                presented = True
            await edge
            if ready.value:
                queue.popleft()
                if log is not None:
                    log.append(get_sim_time("ns"))
                presented = False
                if queue:
                    payload.value = queue[0]
                    presented = True
                else:
                    valid.value = 0
                    done.set()

    # -- receiving ----------------------------------------------------------------------

    async def _monitor(self, valid, payload, take) -> None:
        edge = self._edge
        rise = RisingEdge(valid)
        while True:
            if not valid.value:
                await rise
            await edge
            if valid.value:
                take(payload.value.to_unsigned())

    def _take_event(self, bits: int) -> None:
        view = self.event_layout.from_bits(bits)
        event = HostEvent(
            kind=view.kind, code=view.code, conn=view.conn, tag=view.tag, port=view.port,
            remote_port=view.remote_port, addr=view.addr, value=view.value,
            time_ns=get_sim_time("ns"),
        )
        self.events.append(event)
        self._event_arrived.set()
        if self.on_event is not None:
            self.on_event(bits)

    def _take_rx(self, bits: int) -> None:
        view = self.data_layout.from_bits(bits)
        count = view.count
        self.rx_log.append((get_sim_time("ns"), view.conn, count))
        self.received[view.conn] += view.data.to_bytes(self.config.data_bytes, "little")[:count]
        self._rx_arrived.set()
        if self.on_rx_beat is not None:
            self.on_rx_beat(bits)

    # -- waiting ------------------------------------------------------------------------

    async def event(self, kind: EventKind | None = None, *, conn: int | None = None,
                    tag: int | None = None, since: int = 0,
                    timeout_ns: float = 5_000_000) -> HostEvent:
        """The first event from index ``since`` on matching ``kind``/``conn``/``tag``."""

        def find():
            for event in self.events[since:]:
                if ((kind is None or event.kind == kind) and (conn is None or event.conn == conn)
                        and (tag is None or event.tag == tag)):
                    return event
            return None

        async def wait():
            while (found := find()) is None:
                self._event_arrived.clear()
                await self._event_arrived.wait()
            return found

        return await with_timeout(wait(), timeout_ns, "ns")

    async def bytes_received(self, conn: int, n: int, timeout_ns: float = 5_000_000) -> bytes:
        """Wait until ``n`` bytes arrived for ``conn``; returns them all."""

        async def wait():
            while len(self.received[conn]) < n:
                self._rx_arrived.clear()
                await self._rx_arrived.wait()
            return bytes(self.received[conn])

        return await with_timeout(wait(), timeout_ns, "ns")
