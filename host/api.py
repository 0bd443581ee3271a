"""The async host API: listeners and connections in the style of asyncio streams.

:class:`Engine` wraps the sans-I/O core (:class:`host.protocol.EngineProtocol`) and a
:class:`Transport` that moves the packed messages to and from the engine (a simulator
testbench, a PCIe/AXI driver, an in-memory test double).  It awaits nothing but the
objects the transport supplies (``make_event()`` and, optionally, its send
coroutines), so the same code runs under asyncio and under cocotb's scheduler::

    from toe.host.api import Engine

    async def echo_server(transport, config):
        engine = Engine(transport, config)
        listener = await engine.listen(7, backlog=16)
        conn = await listener.accept()
        while data := await conn.read(4096):     # b"" at the end of the peer's stream
            conn.write(data)                      # buffered in the driver
            await conn.drain()                    # flow control: waits below high water
        await conn.close()                        # FIN after the data; id freed later

    async def client(transport, config):
        engine = Engine(transport, config)
        conn = await engine.connect("10.0.0.1", 7)  # ConnectionRefusedError, TimeoutError
        conn.write(b"hello")
        await conn.shutdown()                     # half-close: reading goes on
        reply = await conn.read()                 # everything up to the peer's FIN
        await conn.wait_acked()                   # the peer has every byte written
        await conn.close()
        await conn.wait_closed()                  # the engine released the id

    asyncio.run(client(MyTransport(), ToeConfig()))   # or from a cocotb test

Runtime and transport
---------------------
``transport.make_event()`` returns an event with ``set()``, ``clear()``, ``is_set()``
and an awaitable ``wait()``: :class:`asyncio.Event` and :class:`cocotb.triggers.Event`
both fit.  The transport gives the engine's output to :meth:`Engine.feed_event` and
:meth:`Engine.feed_rx_beat` (plain functions: call them from a monitor coroutine, a
callback or an interrupt handler) and takes the driver's output through
``send_commands(list[int])`` and ``send_tx_beats(list[int])``, each stream in call
order (nothing is required of the order between the two streams: the end of a
connection's stream travels in-band on the TX stream).  These two are either plain
functions that queue the messages (the data moves as soon as ``write()`` is called), or
coroutine functions; then the driver hands data over whenever the application awaits
something of the engine, or continuously if :meth:`Engine.run` is started as a
background task (``asyncio.create_task(engine.run())``, ``cocotb.start_soon(...)``).
A send coroutine should not be cancelled half-way (the messages it was given count as
handed over): let it queue the messages and return.

A transport for a cocotb bench can be as small as this (one queue here; one per stream
would do as well)::

    class BenchTransport:
        def __init__(self):
            self.queue = collections.deque()  # ("cmd" | "tx", bits), in order
        def attach(self, sink):
            self.sink = sink  # monitors call sink.feed_event(), sink.feed_rx_beat()
        def make_event(self):
            return cocotb.triggers.Event()
        def send_commands(self, commands):
            self.queue.extend(("cmd", c) for c in commands)  # a driver coroutine
        def send_tx_beats(self, beats):                      # drives them in order
            self.queue.extend(("tx", b) for b in beats)

Flow control
------------
- ``write()`` never blocks: it buffers in the driver.  ``await drain()`` waits until
  the driver's buffer (bytes not yet handed to the engine, which takes at most
  ``tx_ring_bytes`` unacknowledged bytes per connection) is at most the low-water mark
  when it was above the high-water mark, as :meth:`asyncio.StreamWriter.drain` does.
- ``await wait_acked()`` waits until the peer acknowledged every byte written.
- reading grants the engine more receive credit (``rx_buffer`` bytes per connection).

Closing
-------
- ``await shutdown()`` half-closes (FIN after the buffered data); reading goes on.
- ``await close()`` sends ``CLOSE`` after the buffered data (waiting for send credit if
  needed) and returns; the engine finishes the close handshake on its own (which may
  include 2 MSL of TIME-WAIT) and then releases the id: ``await wait_closed()`` waits
  for that.  After ``close()`` nothing more is read.
- ``abort()`` resets the connection at once (RST, buffered data discarded).

Errors: :class:`ConnectionRefusedError` (``connect``), :class:`ConnectionResetError`
(the peer reset the connection), :class:`TimeoutError` (retransmissions gave up),
:class:`BrokenPipeError` (``write`` after ``shutdown``), :class:`OSError` with ``EBADF``
(a closed connection or listener), :class:`host.protocol.EngineError` (an
:class:`OSError` with the engine's ``ErrorCode`` as ``code``) for refused requests.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from toe.hdl.config import ToeConfig
from toe.hdl.csr_map import key_register_writes
from toe.hdl.host_if import InfoField, SocketOption
from toe.hdl.tcp.congestion import algorithm_names
from toe.hdl.tcp.keepalive import ticks

from .connection import (
    ConnectionRecord,
    ConnState,
    ConnStats,
    Ending,
    closed_exception,
    ending_exception,
)
from .happenings import TcpInfo
from .protocol import (
    DEFAULT_RX_BUFFER,
    Accepted,
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    EngineProtocol,
    Error,
    Happening,
    Info,
    Listening,
    Refused,
    Released,
    TimedOut,
    Unlistened,
)

__all__ = [
    "Engine", "Listener", "Connection", "Transport", "RuntimeEvent", "DriverSink",
    "IncompleteReadError", "DEFAULT_WRITE_HIGH_WATER",
]

#: Default high-water mark of a connection's driver TX buffer (see ``drain()``).
DEFAULT_WRITE_HIGH_WATER = 64 * 1024

T = TypeVar("T")


class RuntimeEvent(Protocol):
    """What ``Transport.make_event()`` returns (asyncio.Event, cocotb Event)."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[Any]: ...


class DriverSink(Protocol):
    """What the transport feeds: :class:`Engine` implements it."""

    def feed_event(self, bits: int) -> None: ...
    def feed_rx_beat(self, bits: int) -> None: ...


class Transport(Protocol):
    """Moves packed messages between the driver and the engine.

    ``attach`` is called once by :class:`Engine` with the sink the transport must feed
    with every event (``event_layout``) and RX beat (``data_layout``) of the engine.
    ``send_commands`` and ``send_tx_beats`` take packed ``command_layout`` values and TX
    beats; plain functions or coroutine functions (see the module documentation).
    """

    def attach(self, sink: DriverSink) -> None: ...
    def make_event(self) -> RuntimeEvent: ...
    def send_commands(self, commands: list[int]) -> Awaitable[None] | None: ...
    def send_tx_beats(self, beats: list[int]) -> Awaitable[None] | None: ...


class IncompleteReadError(EOFError):
    """The stream ended before ``readexactly(n)`` got ``n`` bytes (as in asyncio).

    ``partial``: the bytes read before the end; ``expected``: ``n``.
    """

    def __init__(self, partial: bytes, expected: int | None):
        super().__init__(f"{len(partial)} bytes read on a total of {expected} expected bytes")
        self.partial = partial
        self.expected = expected


_closed_error = closed_exception


class Engine:
    """The host side of one engine: opens listeners and connections.

    ``rx_buffer``: receive credit per connection (bytes buffered for the application).
    ``write_high_water``/``write_low_water``: default ``drain()`` marks of connections.
    """

    def __init__(self, transport: Transport, config: ToeConfig = ToeConfig(), *,
                 rx_buffer: int = DEFAULT_RX_BUFFER,
                 write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
                 write_low_water: int | None = None, **protocol_options: Any):
        self.config = config
        self.transport = transport
        self.protocol = EngineProtocol(config, rx_buffer=rx_buffer, **protocol_options)
        self.write_high_water = write_high_water
        self.write_low_water = (write_high_water // 4 if write_low_water is None
                                else write_low_water)
        #: Whole writes ``(conn, bytes)`` instead of beats, when the transport can.
        self._send_writes = getattr(transport, "send_tx_writes", None)
        self._async_io = (inspect.iscoroutinefunction(transport.send_commands)
                          or inspect.iscoroutinefunction(transport.send_tx_beats)
                          or inspect.iscoroutinefunction(self._send_writes))
        self._changed = transport.make_event()  # anything happened: waiters re-check
        self._flush_done = transport.make_event()
        self._flushing = False
        self._deferred: list[Awaitable[Any]] = []
        self._conns: dict[int, Connection] = {}
        self._listeners: dict[int, Listener] = {}
        # Answers to requests: tag -> Connection, True (listen/unlisten ok) or exception.
        self._waiting: set[int] = set()
        self._answers: dict[int, Any] = {}
        transport.attach(self)

    # ------------------------------------------------------------ transport side

    def feed_event(self, bits: int) -> None:
        """An event from the engine (``event_layout`` bits)."""
        self.protocol.event_received(bits)
        self._process()

    def feed_rx_beat(self, bits: int) -> None:
        """A beat of the engine's RX stream (``data_layout`` bits)."""
        self.protocol.rx_beat_received(bits)
        self._process()

    def feed_rx_data(self, conn: int, data: bytes, last: bool) -> None:
        """A run of RX beats of connection ``conn``, unpacked (``last``: it ends one)."""
        self.protocol.rx_data_received(conn, data, last)
        self._process()

    def _tx_output(self) -> tuple[Any, bool]:
        """The TX data to hand over: whole writes when the transport takes them
        (``send_tx_writes``), else beats.  Returns (what to send, anything)."""
        if self._send_writes is not None:
            writes = self.protocol.tx_writes_to_send()
            return (self._send_writes(writes) if writes else None), bool(writes)
        beats = self.protocol.tx_beats_to_send()
        return (self.transport.send_tx_beats(beats) if beats else None), bool(beats)

    async def run(self) -> None:
        """Hand data and commands to the transport as soon as they exist (forever).

        Optional: start it as a background task when the transport's send methods are
        coroutines and the application may write without awaiting the engine after.
        """
        while True:
            await self._flush()
            if self.protocol.has_output():
                continue
            self._changed.clear()
            await self._changed.wait()

    # ------------------------------------------------------------ application side

    async def listen(self, port: int, backlog: int = 16) -> Listener:
        """Listen on ``port``; at most ``backlog`` open connections wait for accept()."""
        tag = self._expect(self.protocol.listen(port, backlog))
        listener = Listener(self, port)
        self._listeners[port] = listener
        try:
            await self._answer(tag)
        except BaseException:
            if self._listeners.get(port) is listener:
                del self._listeners[port]
            record = self.protocol.listener(port)
            if record is not None and record.tag == tag and not record.closing:
                self.protocol.unlisten(port)  # abandoned (e.g. cancelled)
                self._kick()
                await self._flush_on_the_way_out()
            raise
        return listener

    async def write_keys(self, isn_key: bytes | None = None,
                         hash_key: bytes | None = None) -> None:
        """Load the engine's secret keys: the ISN function's (16 bytes, RFC 6528 s3,
        RFC 9293 MUST-9) and the connection-lookup hash's (12 bytes), random by default
        (:func:`secrets.token_bytes`).  Call it once before opening connections: the
        keys are zero (ISN) and public (hash) after reset, and writing the hash key
        empties the lookup table.  Needs a transport with ``write_registers``.
        """
        write = getattr(self.transport, "write_registers", None)
        if write is None:
            raise OSError(errno.EOPNOTSUPP, "this transport has no register access")
        await _maybe_await(write(key_register_writes(
            isn_key if isn_key is not None else secrets.token_bytes(16),
            hash_key if hash_key is not None else secrets.token_bytes(12))))

    async def connect(self, addr: str | int, port: int, *,
                      local_port: int | None = None) -> Connection:
        """Open a connection to ``addr:port`` (a free ephemeral local port by default).

        Raises :class:`ConnectionRefusedError`, :class:`TimeoutError` or
        :class:`host.protocol.EngineError` (no free connection, no route...).
        """
        tag = self._expect(self.protocol.connect(addr, port, local_port))
        try:
            conn = await self._answer(tag)
        except BaseException:
            # Refused, timed out (the core released the id), or abandoned, e.g.
            # cancelled by a timeout: the connection is aborted and released.
            self.protocol.cancel_connect(tag)
            self._kick()
            await self._flush_on_the_way_out()
            raise
        return conn

    @property
    def connections(self) -> list[Connection]:
        """Connections whose id the engine has not released."""
        return list(self._conns.values())

    # ------------------------------------------------------------ internals

    def _process(self) -> None:
        """Apply the core's happenings, then wake every waiter."""
        got = False
        while (h := self.protocol.next_event()) is not None:
            got = True
            self._apply(h)
        if got or self.protocol.has_output():
            self._kick()

    def _apply(self, h: Happening) -> None:
        proto = self.protocol
        match h:
            case Connected(tag=tag, conn=conn):
                c = Connection(self, proto.connection(conn))
                self._conns[conn] = c
                self._answer_with(tag, c)
            case Accepted(conn=conn):
                self._conns[conn] = Connection(self, proto.connection(conn))
            case DataReceived(conn=conn, data=data):
                c = self._conns.get(conn)
                if c is not None:
                    c._rx += data
            case EndOfStream(conn=conn):
                c = self._conns.get(conn)
                if c is not None:
                    c._eof = True
            case Refused(tag=tag, conn=conn) if tag is not None:
                self._answer_with(tag, ending_exception(Ending.REFUSED, conn))
            case TimedOut(tag=tag, conn=conn) if tag is not None:
                self._answer_with(tag, ending_exception(Ending.TIMED_OUT, conn))
            case Error(tag=tag) if tag is not None:
                self._answer_with(tag, h.exception())
            case Error(conn=conn) if conn is not None:
                c = self._conns.get(conn)
                if c is not None:
                    c._error = h.exception()
            case Listening(tag=tag) | Unlistened(tag=tag):
                self._answer_with(tag, True)
            case Info(tag=tag, value=value):
                self._answer_with(tag, value)
            case Released(conn=conn):
                self._conns.pop(conn, None)
            case Closed():
                pass
            case _:
                pass

    def _expect(self, tag: int) -> int:
        """Keep the answer to request ``tag`` for _answer() (which may come at once)."""
        self._waiting.add(tag)
        return tag

    def _answer_with(self, tag: int, answer: Any) -> None:
        if tag in self._waiting:
            self._answers[tag] = answer

    def _kick(self) -> None:
        """Something changed: hand output over (plain transports) and wake waiters."""
        if not self._async_io:
            self._flush_now()
        self._changed.set()

    def _flush_now(self) -> None:
        """Hand everything over through a transport with plain send functions."""
        if self._flushing:
            return  # re-entered from the transport: the running loop picks it up
        self._flushing = True
        try:
            while True:
                sent, beats = self._tx_output()
                self._keep(sent)
                commands = self.protocol.commands_to_send()
                if commands:
                    self._keep(self.transport.send_commands(commands))
                if not beats and not commands:
                    break
                self._changed.set()
        finally:
            self._flushing = False

    def _keep(self, result: Awaitable[Any] | None) -> None:
        if result is not None and inspect.isawaitable(result):
            self._deferred.append(result)  # awaited by the next _flush()

    async def _flush(self) -> None:
        """Hand everything over; serialised, so messages keep their order."""
        if not self._async_io:
            self._flush_now()
            while self._deferred:
                await self._deferred.pop(0)
            return
        while self._flushing:
            self._flush_done.clear()
            await self._flush_done.wait()
        self._flushing = True
        try:
            while True:
                while self._deferred:
                    await self._deferred.pop(0)
                sent, beats = self._tx_output()
                await _maybe_await(sent)
                commands = self.protocol.commands_to_send()
                if commands:
                    await _maybe_await(self.transport.send_commands(commands))
                if not beats and not commands:
                    break
                self._changed.set()  # buffers shrank: drain() may return
        finally:
            self._flushing = False
            self._flush_done.set()

    async def _flush_on_the_way_out(self) -> None:
        """Hand over the commands of an abandoned request while its exception unwinds
        (an exception of the flush itself would hide the original one)."""
        if self._async_io:
            with contextlib.suppress(Exception):
                await self._flush()

    async def _wait_for(self, check: Callable[[], T | None]) -> T:
        """Flush, then wait until ``check()`` returns something other than None/False.

        ``check`` may raise; nothing is awaited between the check and the wait, so no
        wake-up is lost.
        """
        while True:
            await self._flush()
            result = check()
            if result is not None and result is not False:
                return result
            self._changed.clear()
            await self._changed.wait()

    async def _answer(self, tag: int) -> Any:
        def check() -> Any:
            if tag not in self._answers:
                return None
            answer = self._answers.pop(tag)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        try:
            return await self._wait_for(check)
        finally:
            self._waiting.discard(tag)
            self._answers.pop(tag, None)


async def _maybe_await(result: Awaitable[Any] | None) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


class Listener:
    """A listening port.  ``async for conn in listener`` accepts forever."""

    def __init__(self, engine: Engine, port: int):
        self._engine = engine
        self.port = port
        self._closed = False

    def __repr__(self) -> str:
        return f"<Listener port={self.port}{' closed' if self._closed else ''}>"

    @property
    def pending(self) -> int:
        """Open connections waiting for accept()."""
        lst = self._engine.protocol.listener(self.port)
        return len(lst.queue) if lst is not None else 0

    async def accept(self) -> Connection:
        """The next connection opened by a peer (raises OSError once closed)."""
        engine = self._engine

        def check() -> Connection | None:
            if self._closed:
                raise _closed_error(f"listener on port {self.port}")
            conn = engine.protocol.accept(self.port)
            if conn is None:
                return None
            engine._kick()  # ACCEPT
            return engine._conns[conn]
        conn = await engine._wait_for(check)
        await engine._flush()  # the ACCEPT (a backlog place) goes out now
        return conn

    async def close(self) -> None:
        """Stop listening (connections waiting for accept() are reset)."""
        if self._closed:
            return
        self._closed = True
        engine = self._engine
        tag = engine._expect(engine.protocol.unlisten(self.port))
        engine._kick()  # wakes accept() waiters too
        try:
            await engine._answer(tag)
        finally:
            if engine._listeners.get(self.port) is self:
                del engine._listeners[self.port]

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Connection:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self.accept()
        except OSError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Connection:
    """One TCP connection: a reader and a writer, as asyncio's stream pair."""

    def __init__(self, engine: Engine, record: ConnectionRecord):
        self._engine = engine
        self._rec = record
        self._rx = bytearray()
        self._eof = False
        self._error: BaseException | None = None  # an ERROR event (TX data refused)
        self.high_water = engine.write_high_water
        self.low_water = engine.write_low_water

    def __repr__(self) -> str:
        r = self._rec
        return (f"<Connection {r.conn} {r.state} {self.local_port} -> "
                f"{r.remote_addr}:{r.remote_port}>")

    # ------------------------------------------------------------ properties

    @property
    def conn_id(self) -> int:
        """The engine's connection id (reused by another connection once released)."""
        return self._rec.conn

    @property
    def state(self) -> ConnState:
        return self._rec.state

    @property
    def stats(self) -> ConnStats:
        return self._rec.stats

    @property
    def local_port(self) -> int:
        return self._rec.local_port

    @property
    def remote_addr(self) -> str:
        return self._rec.remote_addr

    @property
    def remote_port(self) -> int:
        return self._rec.remote_port

    @property
    def peername(self) -> tuple[str, int]:
        return self._rec.remote_addr, self._rec.remote_port

    def at_eof(self) -> bool:
        """The peer's stream ended and every byte of it was read."""
        return self._eof and not self._rx

    def is_closing(self) -> bool:
        """close() or abort() was called, or the connection is over."""
        return not self._rec.machine.held or self._rec.state in (ConnState.CLOSED,
                                                                 ConnState.RELEASED)

    # ------------------------------------------------------------ reading

    def _read_error(self) -> BaseException | None:
        r = self._rec
        m = r.machine
        if not m.held:
            return _closed_error(f"connection {r.conn}")
        exc = m.exception(r.conn)
        if exc is not None:
            return exc
        if m.released:
            return ConnectionResetError(errno.ECONNRESET,
                                        "connection released before the end of the stream")
        return None

    def _take(self, n: int) -> bytes:
        data = bytes(self._rx[:n])
        del self._rx[:n]
        if data and not self._rec.machine.released:
            self._engine.protocol.consume(self._rec.conn, len(data))
            self._engine._kick()  # perhaps a CREDIT
        return data

    async def _wait_readable(self, need: int) -> None:
        """Until ``need`` bytes are buffered, or the end of the stream.

        Bytes received before a reset are read first; then the error is raised.
        """
        def check() -> bool:
            if not self._rec.machine.held:
                raise _closed_error(f"connection {self._rec.conn}")
            if len(self._rx) >= need or self._eof:
                return True
            err = self._read_error()
            if err is not None:
                raise err
            return False
        await self._engine._wait_for(check)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one), ``b""`` at the end of the stream.

        ``n == -1``: everything until the end of the stream.
        """
        if n == 0:
            return b""
        if n < 0:
            chunks = []
            while chunk := await self.read(max(1, self._engine.protocol.rx_buffer // 2)):
                chunks.append(chunk)
            return b"".join(chunks)
        await self._wait_readable(1)
        data = self._take(n)
        await self._engine._flush()  # more credit, perhaps
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`IncompleteReadError` if the stream ends first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        out = bytearray()
        while len(out) < n:
            await self._wait_readable(1)
            if not self._rx:  # EOF
                raise IncompleteReadError(bytes(out), n)
            out += self._take(n - len(out))
        await self._engine._flush()
        return bytes(out)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``; IncompleteReadError at EOF."""
        if not separator:
            raise ValueError("separator should be at least one-byte string")
        start = 0
        while True:
            i = self._rx.find(separator, start)
            if i >= 0:
                data = self._take(i + len(separator))
                await self._engine._flush()
                return data
            start = max(0, len(self._rx) - len(separator) + 1)
            if self._eof:
                partial = self._take(len(self._rx))
                raise IncompleteReadError(partial, None)
            await self._wait_readable(len(self._rx) + 1)

    async def readline(self) -> bytes:
        """A line (ending with ``\\n``), or what is left at EOF."""
        try:
            return await self.readuntil(b"\n")
        except IncompleteReadError as e:
            return e.partial

    # ------------------------------------------------------------ writing

    def _write_error(self) -> BaseException | None:
        if self._error is not None:
            return self._error
        r = self._rec
        m = r.machine
        # After abort() the data was discarded on purpose: writing raises (EBADF), and
        # drain() and wait_acked() do once the id is released.
        if m.ending is not Ending.ABORTED:
            exc = m.exception(r.conn)
            if exc is not None:
                return exc
        if m.released:
            return _closed_error(f"connection {r.conn}")
        return None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` for sending (never blocks; see drain())."""
        if self._rec.machine.released:
            raise _closed_error(f"connection {self._rec.conn}")
        if not data:
            return
        self._engine.protocol.send(self._rec.conn, data)
        self._engine._kick()

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close without waiting (the FIN follows the buffered data)."""
        if self._rec.machine.released:
            raise _closed_error(f"connection {self._rec.conn}")
        self._engine.protocol.shutdown(self._rec.conn)
        self._engine._kick()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """The drain() marks (asyncio's WriteTransport semantics)."""
        if high is None:
            high = DEFAULT_WRITE_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"high ({high}) must be >= low ({low}) must be >= 0")
        self.high_water, self.low_water = high, low

    async def drain(self) -> None:
        """Flow control: when more than ``high_water`` bytes wait in the driver, wait
        until at most ``low_water`` do.  Raises if the connection failed."""
        stats = self._rec.stats
        if stats.tx_buffered <= self.high_water:
            await self._engine._flush()
            self._raise_write_error()
            return

        def check() -> bool:
            self._raise_write_error()
            return stats.tx_buffered <= self.low_water
        await self._engine._wait_for(check)

    async def wait_acked(self) -> None:
        """Wait until the peer acknowledged every byte written."""
        stats = self._rec.stats

        def check() -> bool:
            done = stats.tx_buffered == 0 and stats.tx_unacked == 0
            if not done:
                self._raise_write_error()
            return done
        await self._engine._wait_for(check)

    def _raise_write_error(self) -> None:
        err = self._write_error()
        if err is not None:
            raise err

    # ------------------------------------------------------------ closing

    def set_quickack(self, on: bool = True) -> None:
        """Acknowledge every segment at once (``on``) or let the engine delay ACKs
        (the default: ``ToeConfig.ack_delay_us``), as Linux's ``TCP_QUICKACK``."""
        self._engine.protocol.set_option(self._rec.conn, SocketOption.QUICKACK, int(on))
        self._engine._kick()

    async def tcp_info(self) -> TcpInfo:
        """The connection as the engine has it now (``GET_INFO`` of every
        :class:`~hdl.host_if.InfoField`): cwnd, ssthresh, SRTT, RTO, the bytes in
        flight, the windows, retransmissions, as Linux's ``TCP_INFO``."""
        engine, proto = self._engine, self._engine.protocol
        tags = {f: engine._expect(proto.get_info(self._rec.conn, f)) for f in InfoField}
        engine._kick()
        return TcpInfo.from_fields({f: await engine._answer(tag) for f, tag in tags.items()})

    def set_nodelay(self, on: bool = True) -> None:
        """Turn the Nagle algorithm off (``on``) or back on (the default), as Linux's
        ``TCP_NODELAY`` (RFC 9293 MUST-17): small writes then leave at once, also while
        earlier bytes are unacknowledged."""
        self._engine.protocol.set_option(self._rec.conn, SocketOption.NODELAY, int(on))
        self._engine._kick()

    def set_congestion(self, name: str) -> None:
        """Use the congestion control algorithm ``name`` (one of the build's,
        ``ToeConfig.congestion``, e.g. ``"cubic"``), as Linux's ``TCP_CONGESTION``; it
        starts from the connection's cwnd and ssthresh as they are."""
        names = algorithm_names(self._engine.config)
        if name not in names:
            raise ValueError(f"{name!r} is not in this build; it has {', '.join(names)}")
        self._engine.protocol.set_option(self._rec.conn, SocketOption.CONGESTION,
                                         names.index(name))
        self._engine._kick()

    def set_keepalive(self, idle: float | None = 7200.0, interval: float = 75.0,
                      count: int = 10) -> None:
        """Keep-alives (RFC 1122 s4.2.3.6): after ``idle`` seconds without an ACK from
        the peer, a probe every ``interval`` seconds; after ``count`` (1..15) unanswered
        probes the engine resets the connection and it ends in ``TimeoutError``.
        ``idle=None`` turns them off (the default of a new connection).  The defaults
        are the RFC's: 2 hours, 75 seconds, 10 probes."""
        proto, conn = self._engine.protocol, self._rec.conn
        if idle is None:
            proto.set_option(conn, SocketOption.KEEPALIVE_IDLE, 0)
        else:
            if not 1 <= count <= 15:
                raise ValueError("count must be 1..15")
            if idle <= 0 or interval <= 0:
                raise ValueError("idle and interval must be positive")
            proto.set_option(conn, SocketOption.KEEPALIVE_INTERVAL, ticks(interval))
            proto.set_option(conn, SocketOption.KEEPALIVE_COUNT, count)
            proto.set_option(conn, SocketOption.KEEPALIVE_IDLE, max(1, ticks(idle)))
        self._engine._kick()

    async def shutdown(self) -> None:
        """Half-close: the FIN follows the buffered data.  Reading goes on.

        Returns once the end-of-stream marker was handed to the engine (after every
        buffered byte, which may need send credit, i.e. acknowledgements)."""
        self.write_eof()
        rec = self._rec

        def check() -> bool:
            if rec.machine.stream_end_sent:
                return True
            self._raise_write_error()
            return False
        await self._engine._wait_for(check)

    async def close(self) -> None:
        """Close: ``CLOSE`` after the buffered data, then return (see the module doc).

        Nothing more is read.  Use wait_closed() to wait until the id is released."""
        rec = self._rec
        if rec.machine.held:
            self._engine.protocol.close(rec.conn)
            self._engine._kick()
        await self._engine._wait_for(lambda: rec.machine.release_sent)

    async def wait_closed(self) -> None:
        """Wait until the engine released the connection (after close() or abort())."""
        rec = self._rec
        await self._engine._wait_for(lambda: rec.machine.released)

    def abort(self) -> None:
        """Reset the connection now (RST; buffered data is discarded)."""
        rec = self._rec
        if rec.machine.released:
            return
        self._engine.protocol.abort(rec.conn)
        self._engine._kick()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.abort()
            await self._engine._flush_on_the_way_out()
