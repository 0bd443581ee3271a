"""The host driver over a local socket: a transport to the virtual NIC (``toe sim``).

The virtual NIC (``sim/native/vnic.cpp``) runs the Verilated engine on a TAP device and
serves its host interface on a Unix stream socket.  :func:`open_engine` connects to it
and returns an :class:`host.api.Engine`, so an ordinary asyncio program uses the engine
as it would a socket library::

    import asyncio
    from toe.host.socket_transport import open_engine

    async def main():
        engine = await open_engine("build/vnic/toe.sock")
        listener = await engine.listen(7)
        conn = await listener.accept()
        while data := await conn.read(65536):
            conn.write(data)
            await conn.drain()
        await conn.close()

    asyncio.run(main())

Wire format
-----------
Every message is a 3-byte header, ``type`` (u8) and payload ``length`` (u16, little
endian), then the payload.  Packed host-interface values (:mod:`hdl.host_if`) travel as
little-endian integers of ``ceil(bits / 8)`` bytes.

========== ========= ===========================================================
type       direction payload
========== ========= ===========================================================
0x01 HELLO  NIC→host the engine's configuration as JSON (empty: another host owns it)
0x02 CMD    host→NIC a ``command_layout`` value
0x03 EVT    NIC→host an ``event_layout`` value
0x04 TX     host→NIC a ``data_layout`` beat
0x05 RX     NIC→host a ``data_layout`` beat
0x06 CSRW   host→NIC u16 register address, u32 value
0x07 CSRR   host→NIC u16 register address
0x08 CSRV   NIC→host u16 register address, u32 value (answers CSRR in order)
0x09 TRACE  NIC→host u64 cycle, u64 ns since start, a ``trace_layout`` value
0x0A SUB    host→NIC u8: bit 0 asks for TRACE records
0x0B STATS  both     request (empty) / answer: :data:`STATS_FIELDS`, u64 each
0x0C HOLD   host→NIC u8: bit 0 holds the engine's frames back from the wire (tests)
0x0D TXD    host→NIC u16 connection, the bytes of one write (none: end of stream)
0x0E RXD    NIC→host u16 connection, u8 ``last``, the bytes of a run of RX beats
========== ========= ===========================================================

TXD and RXD carry the data streams by the byte (the NIC packs and unpacks the beats),
so bulk data costs Python one message per write or delivery, not one per beat.  TX and
RX carry single beats for hosts that pack them.

One host connects at a time, as one process owns a NIC queue.  When it disconnects the
virtual NIC resets the engine: the connections die with the program that owned them,
and the peers' next segments get RST.
"""

import asyncio
import contextlib
import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import command_layout, data_layout, event_layout

from .api import DriverSink, Engine

__all__ = [
    "Message",
    "STATS_FIELDS",
    "SocketTransport",
    "TraceRecord",
    "VnicBusyError",
    "open_engine",
]


class Message(enum.IntEnum):
    """Message types of the virtual NIC's socket: the one definition.  The native NIC
    gets them from the header ``sim/vnic.py`` generates (``VNIC_MESSAGES``)."""

    HELLO = 0x01
    COMMAND = 0x02
    EVENT = 0x03
    TX_BEAT = 0x04
    RX_BEAT = 0x05
    CSR_WRITE = 0x06
    CSR_READ = 0x07
    CSR_VALUE = 0x08
    TRACE = 0x09
    SUBSCRIBE = 0x0A
    STATS = 0x0B
    HOLD = 0x0C
    TX_DATA = 0x0D
    RX_DATA = 0x0E



STATS_FIELDS = (
    "cycles", "ns", "ticks", "frames_in", "frames_out", "bytes_in", "bytes_out",
    "impaired_dropped", "impaired_duplicated", "impaired_reordered", "tap_write_errors",
    "sleeps", "resets", "host_rx_bytes", "host_out_buffered",
)
"""The virtual NIC's counters in a STATS answer, in order (``VirtualNic::send_stats`` in
``vnic.cpp`` sends them so; ``tests/test_vnic_messages.py`` counts them)."""


class VnicBusyError(ConnectionError):
    """Another host program is connected to the virtual NIC."""


@dataclass(frozen=True)
class TraceRecord:
    """One TRACE message: the engine's trace port at ``cycle`` (``ns`` after start)."""

    cycle: int
    ns: int
    bits: int


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


class SocketTransport:
    """:class:`host.api.Transport` over the virtual NIC's socket (asyncio streams).

    The send methods are plain functions: they queue the messages in the stream writer,
    which sends them as soon as the event loop runs.  :meth:`start` starts the task
    that reads the socket and feeds the driver.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 config: ToeConfig, hello: dict[str, Any]):
        self.reader = reader
        self.writer = writer
        self.config = config
        self.hello = hello
        self._command_bytes = _nbytes(command_layout(config).size)
        self._event_bytes = _nbytes(event_layout(config).size)
        self._beat_bytes = _nbytes(data_layout(config).size)
        self._sink: DriverSink | None = None
        self._csr_answers: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self._stats_answers: asyncio.Queue[dict[str, int]] = asyncio.Queue()
        self._csr_lock = asyncio.Lock()
        self._reader_task: asyncio.Task | None = None
        self.on_trace: Callable[[TraceRecord], None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, path: str) -> "SocketTransport":
        """Connect to the virtual NIC at ``path`` and read its HELLO."""
        reader, writer = await asyncio.open_unix_connection(path)
        kind, payload = await cls._read_message(reader)
        if kind != Message.HELLO:
            writer.close()
            raise ConnectionError(f"the virtual NIC at {path} sent {kind:#x} before HELLO")
        if not payload:
            writer.close()
            raise VnicBusyError(f"another host program is connected to {path}")
        hello = json.loads(payload)
        names = {f.name for f in fields(ToeConfig)}
        config = ToeConfig(**{k: v for k, v in hello["config"].items() if k in names})
        return cls(reader, writer, config, hello)

    # ------------------------------------------------------------ Transport

    def attach(self, sink: DriverSink) -> None:
        self._sink = sink
        self.start()

    def make_event(self) -> asyncio.Event:
        return asyncio.Event()

    def send_commands(self, commands: list[int]) -> None:
        for bits in commands:
            self._send(Message.COMMAND, bits.to_bytes(self._command_bytes, "little"))

    def send_tx_beats(self, beats: list[int]) -> None:
        for bits in beats:
            self._send(Message.TX_BEAT, bits.to_bytes(self._beat_bytes, "little"))

    def send_tx_writes(self, writes: list[tuple[int, bytes]]) -> None:
        for conn, data in writes:
            self._send(Message.TX_DATA, conn.to_bytes(2, "little") + data)

    async def write_registers(self, writes: list[tuple[int, int]]) -> None:
        for addr, value in writes:
            self._send(Message.CSR_WRITE, struct.pack("<HI", addr, value))
        await self.writer.drain()

    # ------------------------------------------------------------ extras

    async def read_register(self, addr: int) -> int:
        """Read one engine register (:mod:`hdl.csr`)."""
        async with self._csr_lock:
            self._send(Message.CSR_READ, struct.pack("<H", addr))
            got, value = await self._csr_answers.get()
        if got != addr:
            raise ConnectionError(f"register answer for {got:#x}, asked {addr:#x}")
        return value

    async def read_counters(self) -> dict[str, int]:
        """Every engine counter by name (:data:`hdl.csr.COUNTERS`)."""
        from toe.hdl.csr import COUNTER_BASE, COUNTERS

        return {name: await self.read_register(COUNTER_BASE + index)
                for index, name in enumerate(COUNTERS)}

    async def stats(self) -> dict[str, int]:
        """The virtual NIC's own counters (:data:`STATS_FIELDS`): cycles, wall time..."""
        self._send(Message.STATS, b"")
        return await self._stats_answers.get()

    def subscribe_trace(self, callback: Callable[[TraceRecord], None] | None) -> None:
        """Call ``callback`` with every record of the engine's trace port (None: stop)."""
        self.on_trace = callback
        self._send(Message.SUBSCRIBE, bytes([callback is not None]))

    def hold_wire(self, hold: bool) -> None:
        """Hold the engine's frames back from the wire (True), or send the held ones
        and stop holding (False): makes segments of both ends cross in flight."""
        self._send(Message.HOLD, bytes([hold]))

    def start(self) -> None:
        if self._reader_task is None:
            self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def close(self) -> None:
        """Disconnect: the virtual NIC resets the engine."""
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task

    # ------------------------------------------------------------ internals

    def _send(self, kind: int, payload: bytes) -> None:
        self.writer.write(struct.pack("<BH", kind, len(payload)) + payload)

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        kind, length = struct.unpack("<BH", await reader.readexactly(3))
        return kind, await reader.readexactly(length) if length else b""

    async def _read_loop(self) -> None:
        try:
            while True:
                kind, payload = await self._read_message(self.reader)
                if kind == Message.EVENT and self._sink is not None:
                    self._sink.feed_event(int.from_bytes(payload, "little"))
                elif kind == Message.RX_DATA and self._sink is not None:
                    self._sink.feed_rx_data(payload[0] | payload[1] << 8, payload[3:],
                                            bool(payload[2]))
                elif kind == Message.RX_BEAT and self._sink is not None:
                    self._sink.feed_rx_beat(int.from_bytes(payload, "little"))
                elif kind == Message.CSR_VALUE:
                    addr, data = struct.unpack("<HI", payload)
                    self._csr_answers.put_nowait((addr, data))
                elif kind == Message.STATS:
                    values = struct.unpack(f"<{len(payload) // 8}Q", payload)
                    self._stats_answers.put_nowait(dict(zip(STATS_FIELDS, values, strict=False)))
                elif kind == Message.TRACE and self.on_trace is not None:
                    cycle, ns = struct.unpack("<QQ", payload[:16])
                    self.on_trace(TraceRecord(cycle, ns, int.from_bytes(payload[16:], "little")))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()


async def open_engine(path: str, *, keys: bool = True, **engine_options: Any) -> Engine:
    """Connect to the virtual NIC at ``path`` and return an :class:`Engine` on it.

    ``keys``: load random ISN and lookup-hash keys first (:meth:`Engine.write_keys`);
    ``engine_options`` go to :class:`Engine` (``rx_buffer``, ``write_high_water``...).
    The transport is ``engine.transport`` (registers, counters, statistics, trace).
    """
    transport = await SocketTransport.connect(path)
    engine = Engine(transport, transport.config, **engine_options)
    if keys:
        await engine.write_keys()
    return engine
