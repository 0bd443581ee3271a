"""A connection of the async host API as the application uses it: :class:`Connection`.

A :class:`Connection` is a reader and a writer in one, in the style of asyncio's stream
pair (``read``, ``readexactly``, ``readuntil``, ``readline``; ``write``, ``drain``,
``write_eof``), with TCP's own calls besides (``shutdown``, ``close``, ``abort``,
``wait_acked``, ``wait_closed``, ``set_quickack``, ``set_nodelay``, ``set_keepalive``,
``set_congestion``, ``tcp_info``).  :class:`host.api.Engine` makes them and feeds them
the received bytes; flow control and closing are described in :mod:`host.api`.
:class:`IncompleteReadError` is raised when the stream ends before ``readexactly()`` or
``readuntil()`` got what they wait for.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from toe.hdl.host_if import InfoField, SocketOption
from toe.hdl.tcp.congestion import algorithm_names
from toe.hdl.tcp.keepalive import ticks

from .connection import ConnectionRecord, ConnState, ConnStats, Ending, closed_exception
from .happenings import TcpInfo
from .icmp import IcmpReport

if TYPE_CHECKING:
    from .api import Engine

__all__ = ["Connection", "IncompleteReadError", "DEFAULT_WRITE_HIGH_WATER"]

#: Default high-water mark of a connection's driver TX buffer (see ``drain()``).
DEFAULT_WRITE_HIGH_WATER = 64 * 1024


class IncompleteReadError(EOFError):
    """The stream ended before ``readexactly(n)`` got ``n`` bytes (as in asyncio).

    ``partial``: the bytes read before the end; ``expected``: ``n``.
    """

    def __init__(self, partial: bytes, expected: int | None):
        super().__init__(f"{len(partial)} bytes read on a total of {expected} expected bytes")
        self.partial = partial
        self.expected = expected


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
    def icmp_error(self) -> IcmpReport | None:
        """The last ICMP error about the connection's segments (a soft error: the
        connection goes on; RFC 9293 SHLD-25), or None."""
        return self._rec.icmp_error

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
            return closed_exception(f"connection {r.conn}")
        exc = m.exception(r.conn, r.icmp_error)
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
                raise closed_exception(f"connection {self._rec.conn}")
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
            exc = m.exception(r.conn, r.icmp_error)
            if exc is not None:
                return exc
        if m.released:
            return closed_exception(f"connection {r.conn}")
        return None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` for sending (never blocks; see drain())."""
        if self._rec.machine.released:
            raise closed_exception(f"connection {self._rec.conn}")
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
            raise closed_exception(f"connection {self._rec.conn}")
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

    def set_ttl(self, ttl: int) -> None:
        """The IPv4 TTL of this connection's segments, 1..255 (RFC 9293 MUST-49; Linux's
        ``IP_TTL``); the build's ``ToeConfig.ip_ttl`` until then."""
        if not 1 <= ttl <= 255:
            raise ValueError("ttl must be 1..255")
        self._engine.protocol.set_option(self._rec.conn, SocketOption.TTL, ttl)
        self._engine._kick()

    def set_dscp(self, dscp: int) -> None:
        """The DSCP of this connection's segments, 0..63 (RFC 9293 MUST-48, RFC 2474; the
        upper six bits of Linux's ``IP_TOS``; the ECN bits stay the engine's)."""
        if not 0 <= dscp <= 63:
            raise ValueError("dscp must be 0..63")
        self._engine.protocol.set_option(self._rec.conn, SocketOption.DSCP, dscp)
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
