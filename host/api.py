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

This module holds :class:`Engine`; the rest of the API is imported from here as well:
:class:`Listener` (:mod:`host.listener`), :class:`Connection` and
:class:`IncompleteReadError` (:mod:`host.streams`), and what a transport must provide,
:class:`Transport`, :class:`RuntimeEvent`, :class:`DriverSink` (:mod:`host.transport`).

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
from typing import Any, TypeVar

from toe.hdl.config import ToeConfig
from toe.hdl.csr_map import key_register_writes
from toe.hdl.host_if import InfoField, SocketOption  # noqa: F401 (re-exported)

from .connection import (  # noqa: F401 (ConnState, ConnStats, ConnectionRecord re-exported)
    ConnectionRecord,
    ConnState,
    ConnStats,
    Ending,
    ending_exception,
)
from .happenings import TcpInfo  # noqa: F401 (re-exported)
from .listener import Listener
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
from .streams import DEFAULT_WRITE_HIGH_WATER, Connection, IncompleteReadError
from .transport import DriverSink, RuntimeEvent, Transport

__all__ = [
    "Engine", "Listener", "Connection", "Transport", "RuntimeEvent", "DriverSink",
    "IncompleteReadError", "DEFAULT_WRITE_HIGH_WATER",
]

T = TypeVar("T")


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
            case Refused(tag=tag, conn=conn, icmp=icmp) if tag is not None:
                self._answer_with(tag, ending_exception(Ending.REFUSED, conn, icmp=icmp))
            case TimedOut(tag=tag, conn=conn, icmp=icmp) if tag is not None:
                self._answer_with(tag, ending_exception(Ending.TIMED_OUT, conn, icmp=icmp))
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
