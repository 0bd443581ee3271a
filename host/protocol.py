"""The sans-I/O core of the host driver: the engine's host protocol, without any I/O.

:class:`EngineProtocol` keeps the driver's view of every connection and listener and
translates between the application's requests and the engine's four streams
(:mod:`hdl.host_if`).  It never touches a bus, a socket or an event loop: the caller
feeds it what the engine produced and collects what must go to the engine, in the style
of h11::

    proto = EngineProtocol(config)
    tag = proto.connect("10.0.0.1", 80)          # a request; its answer comes later
    bus.write_commands(proto.commands_to_send())  # packed command_layout() values
    ...
    proto.event_received(evt_bits)                # an event_layout() value
    proto.rx_beat_received(rx_bits)               # a data_layout() value
    for happening in proto.events():              # Connected, DataReceived, ...
        ...
    proto.send(conn, b"hello")                    # buffered in the driver
    bus.write_tx(proto.tx_beats_to_send())        # data_layout() beats within credit
    bus.write_commands(proto.commands_to_send())

Ordering contract: each stream must reach the engine in the order the core produced it
(so a connection's TX beats stay in order, its marker last); there is no ordering
requirement between the command stream and the TX stream.  The end of a connection's
stream travels in-band: after ``shutdown()`` or ``close()`` the core ends the
connection's TX stream with an empty beat (``count`` 0, ``last`` 1) behind its last
data beat, so the FIN follows exactly the bytes written before it, however the engine
interleaves commands and TX writes.  The ``CLOSE`` the core sends then has ``value`` 1
(the end of the stream comes in-band: ``CLOSE`` queues no FIN itself) and may overtake
the marker; the core never uses ``SHUTDOWN``.

What the core takes care of:

- requests (``LISTEN``, ``UNLISTEN``, ``CONNECT``) carry unique tags; the answers are
  matched by tag; a ``CONNECT`` whose automatically chosen ephemeral port (49152..65535)
  is refused with ``PORT_IN_USE`` is retried with the next free port;
- receive credit: ``rx_buffer`` bytes are granted when a connection opens, and granted
  again as :meth:`EngineProtocol.consume` reports that the application took bytes (once
  half the buffer was consumed since the last grant), so the bytes delivered but not
  consumed never exceed ``rx_buffer``;
- send credit: at most ``config.tx_ring_bytes`` bytes handed to the engine and not yet
  acknowledged (``ACKED``); each write (a run of beats ending with ``last``) fits the
  credit;
- the end-of-stream marker (for ``shutdown()`` and ``close()``) follows the last
  buffered byte, once every byte has been handed over and the connection is
  established, and counts as no byte; ``close()`` of an established connection sends
  ``CLOSE`` with ``value`` 1 together with (or after) the marker; ``close()`` of a
  connection not yet established with nothing buffered sends ``CLOSE`` with ``value`` 0
  at once (the engine ends the stream itself; nothing was handed over);
- the end of the peer's stream: ``PEER_FIN`` gives the stream length, the end of stream
  is reported once that many bytes were received;
- connection ids: a connection stays in the table until ``RELEASED``; ids the
  application never saw (a refused or timed-out connect, a connection reset while
  waiting in an accept queue, an open on a port no longer listened on) are released by
  the core itself (``ABORT``; ``ACCEPT`` first when the connection holds a backlog
  place).

The core is built in three layers, one class on the other:
:class:`host.commands.CommandEncoder` packs and gives out the command and TX streams;
:class:`host.events.EventHandlers` applies the engine's events; :class:`EngineProtocol`
(this module) adds the application's requests, the RX stream's input and the queries.

Each connection's state is a :class:`host.connection.ConnectionMachine` (how far the
open got, our stream, the peer's stream, the host's hold on the id, how it ended), moved
only by the machine's transitions; :func:`host.connection.ending_exception` maps an
ending to the exception raised for it.

Misuse raises: an unknown or released id -> :class:`ValueError`; a connection closed by
the application -> :class:`OSError` (``EBADF``); data after ``shutdown`` ->
:class:`BrokenPipeError`; a connection reset by the peer -> :class:`ConnectionResetError`;
a connection that timed out -> :class:`TimeoutError`.
"""

from __future__ import annotations

import errno
import ipaddress
import random
from collections import deque
from collections.abc import Iterator

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import (
    CommandOp,
    InfoField,
    SocketOption,
    command_layout,
    data_layout,
    event_layout,
)

from .commands import MASK32, ListenerRecord, PendingRequest
from .connection import (
    ConnectionRecord,
    ConnState,
    ConnStats,
    Ending,
    EngineError,
    ReceiveSide,
    SendSide,
    closed_exception,
    engine_error,
    format_addr,
)
from .events import CONNECT_PORT_ATTEMPTS, EventHandlers  # noqa: F401 (re-exported)
from .happenings import (  # re-exported: the protocol's vocabulary
    Accepted,
    Acked,
    Closed,
    Connected,
    Connecting,
    DataReceived,
    EndOfStream,
    Error,
    Happening,
    Info,
    Listening,
    Refused,
    Released,
    Reset,
    TimedOut,
    Unlistened,
)

__all__ = [
    "EngineProtocol", "ConnState", "ConnStats", "ConnectionRecord", "ListenerRecord",
    "EngineError", "engine_error",
    "Happening", "Listening", "Unlistened", "Connecting", "Connected", "Accepted",
    "DataReceived", "EndOfStream", "Acked", "Closed", "Reset", "Refused", "TimedOut",
    "Error", "Released", "Info",
    "EPHEMERAL_PORTS", "DEFAULT_RX_BUFFER", "format_addr", "parse_addr",
]

#: The IANA dynamic port range (RFC 6335 s6) the driver picks local ports from.
EPHEMERAL_PORTS = (49152, 65535)
#: Receive credit granted per connection unless configured otherwise.
DEFAULT_RX_BUFFER = 64 * 1024


def parse_addr(addr: int | str) -> int:
    """``"10.0.0.1"`` or an int -> the 32-bit address."""
    if isinstance(addr, str):
        return int(ipaddress.IPv4Address(addr))
    if not 0 <= addr <= MASK32:
        raise ValueError(f"address out of range: {addr!r}")
    return addr


# ------------------------------------------------------------------ the core


class EngineProtocol(EventHandlers):
    """The driver's protocol state machine (no I/O).  See the module documentation.

    ``rx_buffer`` is the receive credit per connection (bytes the driver buffers for
    the application); ``ephemeral_ports`` the range local ports are chosen from;
    ``rng`` picks the first ephemeral port (a :class:`random.Random`; default: fresh).
    """

    def __init__(self, config: ToeConfig = ToeConfig(), *, rx_buffer: int = DEFAULT_RX_BUFFER,
                 ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS,
                 rng: random.Random | None = None):
        if not 1 <= rx_buffer <= MASK32:
            raise ValueError("rx_buffer must be 1 .. 2**32-1 bytes")
        lo, hi = ephemeral_ports
        if not 1 <= lo <= hi <= 0xFFFF:
            raise ValueError(f"bad ephemeral port range {ephemeral_ports}")
        self.config = config
        self.rx_buffer = rx_buffer
        self._write_bytes = config.mss  # largest write handed to the engine at once
        self.command_layout = command_layout(config)
        self.event_layout = event_layout(config)
        self.data_layout = data_layout(config)
        self._w = config.data_bytes
        self._tx_credit = config.tx_ring_bytes
        # Field offsets of a data beat (the hot path packs and unpacks by hand).
        fields = {name: (f.offset, f.width) for name, f in self.data_layout}
        self._f_conn, self._f_data, self._f_count, self._f_last = (
            fields["conn"], fields["data"], fields["count"], fields["last"])
        self._eph_lo, self._eph_hi = lo, hi
        self._eph_next = (rng or random.Random()).randrange(hi - lo + 1)

        self._conns: dict[int, ConnectionRecord] = {}
        self._listeners: dict[int, ListenerRecord] = {}
        self._requests: dict[int, PendingRequest] = {}
        self._next_tag = 1
        self._commands: list[int] = []
        self._events: deque[Happening] = deque()
        #: Events that named no connection or request the driver knows (ignored).
        self.unknown_events = 0
        #: RX beats for no open connection (dropped).
        self.dropped_rx_beats = 0

    # ------------------------------------------------------------ queries

    def connection(self, conn: int) -> ConnectionRecord:
        """The record of a live connection id (ValueError if the id is not the host's)."""
        rec = self._conns.get(conn)
        if rec is None:
            raise ValueError(f"connection {conn} is not open")
        return rec

    @property
    def connections(self) -> dict[int, ConnectionRecord]:
        """Live connections by id (a copy)."""
        return dict(self._conns)

    @property
    def listeners(self) -> dict[int, ListenerRecord]:
        """Listeners by port (a copy)."""
        return dict(self._listeners)

    def listener(self, port: int) -> ListenerRecord | None:
        return self._listeners.get(port)

    def pending_requests(self) -> dict[int, CommandOp]:
        """Requests waiting for an answer: tag -> operation."""
        return {tag: req.op for tag, req in self._requests.items()}


    # ------------------------------------------------------------ happenings

    def next_event(self) -> Happening | None:
        """The next happening, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Happening]:
        """Every happening queued so far (including ones queued while iterating)."""
        while self._events:
            yield self._events.popleft()

    # ------------------------------------------------------------ requests

    def listen(self, port: int, backlog: int = 16) -> int:
        """Ask the engine to listen on ``port``; returns the request's tag.

        Answered by :class:`Listening` or :class:`Error` (``op=LISTEN``).
        """
        _check_port(port)
        if not 0 <= backlog <= 0xFFFF:
            raise ValueError(f"backlog must be 0..65535, not {backlog}")
        if port in self._listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        tag = self._new_tag()
        self._requests[tag] = PendingRequest(CommandOp.LISTEN, port)
        self._listeners[port] = ListenerRecord(port, backlog, tag)
        self._command(CommandOp.LISTEN, port=port, value=backlog, tag=tag)
        return tag

    def unlisten(self, port: int) -> int:
        """Stop listening on ``port``; returns the tag (answered by :class:`Unlistened`).

        Connections still in the accept queue are released (``ACCEPT`` + ``ABORT``).
        """
        lst = self._listeners.get(port)
        if lst is None or lst.closing:
            raise ValueError(f"port {port} is not listening")
        while lst.queue:
            self._drop_queued(self._conns[lst.queue.popleft()], accept=True)
        lst.closing = True
        tag = self._new_tag()
        self._requests[tag] = PendingRequest(CommandOp.UNLISTEN, port)
        self._command(CommandOp.UNLISTEN, port=port, tag=tag)
        return tag

    def connect(self, addr: int | str, port: int, local_port: int | None = None) -> int:
        """Open a connection to ``addr:port``; returns the request's tag.

        ``local_port`` None picks a free ephemeral port.  Answered by
        :class:`Connecting` then :class:`Connected`, :class:`Refused` or
        :class:`TimedOut`; or by :class:`Error` (``op=CONNECT``).
        """
        addr_int = parse_addr(addr)
        _check_port(port)
        auto = local_port is None
        if local_port is None:
            local_port = self._pick_port()
        else:
            _check_port(local_port)
        tag = self._new_tag()
        self._requests[tag] = PendingRequest(CommandOp.CONNECT, port, addr_int, local_port, auto)
        self._command(CommandOp.CONNECT, addr=addr_int, port=port, value=local_port, tag=tag)
        return tag

    def cancel_connect(self, tag: int) -> None:
        """Abandon a ``connect()`` whose connection the application does not hold: it
        is aborted and released, whatever the engine answered or will answer."""
        req = self._requests.get(tag)
        if req is not None and req.op == CommandOp.CONNECT:
            req.cancelled = True
            return
        for rec in list(self._conns.values()):
            if rec.tag == tag and not rec.passive and rec.machine.held:
                self._release(rec)

    def accept(self, port: int) -> int | None:
        """Take the oldest connection of ``port``'s accept queue (sends ``ACCEPT``).

        Returns its id, or None when the queue is empty.
        """
        lst = self._listeners.get(port)
        if lst is None:
            raise ValueError(f"port {port} is not listening")
        if not lst.queue:
            return None
        rec = self._conns[lst.queue.popleft()]
        rec.machine.accept()
        self._command(CommandOp.ACCEPT, conn=rec.conn)
        return rec.conn

    def send(self, conn: int, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` for ``conn``; :meth:`tx_beats_to_send` hands it over."""
        rec = self.connection(conn)
        self._check_usable(rec)
        if rec.machine.send is not SendSide.OPEN:
            raise BrokenPipeError(errno.EPIPE, f"connection {conn} was shut down for writing")
        rec.tx_buffer += data
        rec.stats.bytes_written += len(data)

    def shutdown(self, conn: int) -> None:
        """Half-close: :meth:`tx_beats_to_send` ends the connection's TX stream with the
        end-of-stream marker once the buffered data is handed over (and the connection
        is established).  Idempotent."""
        rec = self.connection(conn)
        self._check_usable(rec)
        rec.machine.request_shutdown()

    def set_option(self, conn: int, option: SocketOption, value: int) -> None:
        """Set a per-connection option of the engine (``SET_OPTION``), e.g.
        ``SocketOption.QUICKACK``, 1: acknowledge every segment at once."""
        rec = self.connection(conn)
        self._check_usable(rec)
        option = SocketOption(option)
        self._command(CommandOp.SET_OPTION, conn=conn, port=option.value, value=int(value))

    def get_info(self, conn: int, field: InfoField) -> int:
        """Ask for one :class:`InfoField` of the connection (``GET_INFO``); returns the
        tag, answered by :class:`Info` (or :class:`Error` with ``op=GET_INFO``)."""
        rec = self.connection(conn)
        field = InfoField(field)
        tag = self._new_tag()
        self._requests[tag] = PendingRequest(CommandOp.GET_INFO, field.value)
        self._command(CommandOp.GET_INFO, conn=rec.conn, port=field.value, tag=tag)
        return tag

    def close(self, conn: int) -> None:
        """Close; the id is released when the engine is done (:class:`Released`).

        Established: the end-of-stream marker follows the buffered data (unless
        ``shutdown()`` sent it already) and ``CLOSE`` (``value`` 1) goes with it.  Not
        yet established with nothing buffered: ``CLOSE`` (``value`` 0) at once (with
        data buffered, the close waits for the connection to open and the data to go).
        Reading stops (the engine drops what arrives).  Idempotent.  A reset or
        timed-out connection is released with ``ABORT``, and so is a connection with
        received bytes the application never took: RFC 9293 SHLD-3 (RFC 2525 s2.17), the
        peer learns by the RST that data was lost (the engine does the same for bytes
        still in its ring, ``CLOSED(UNREAD_DATA)``)."""
        rec = self.connection(conn)
        m = rec.machine
        if not m.held:
            return
        if rec.stats.rx_buffered and not m.dead:
            self.abort(conn)
            return
        m.request_release()
        if m.dead:
            self._send_abort(rec)
        elif m.send is SendSide.FIN_SENT:  # the marker went out after shutdown()
            self._send_close(rec, in_band=True)
        elif not m.established and not rec.tx_buffer:
            m.request_shutdown()
            m.send_fin()  # the engine ends the (empty) stream itself
            self._send_close(rec, in_band=False)
        else:
            m.request_shutdown()  # tx_beats_to_send() sends the marker and the CLOSE

    def abort(self, conn: int) -> None:
        """``ABORT``: RST to the peer, buffered data discarded, the id released.

        Also after ``close()`` (the close handshake is cut short).  Idempotent."""
        rec = self.connection(conn)
        m = rec.machine
        if m.send is SendSide.ABORT_SENT:
            return
        releasing = m.dead and m.release_sent  # ended by the engine; CLOSE or ABORT sent
        m.request_release()
        self._end(rec, Ending.ABORTED)
        self._discard_tx(rec)
        if not releasing:
            self._command_abort(rec)

    def consume(self, conn: int, n: int) -> None:
        """The application took ``n`` received bytes; may grant more credit."""
        rec = self._conns.get(conn)
        if rec is None:
            return  # released: nothing to grant any more
        if not 0 <= n <= rec.stats.rx_buffered:
            raise ValueError(f"consume({n}) but {rec.stats.rx_buffered} bytes are buffered")
        rec.stats.bytes_consumed += n
        since = rec.stats.bytes_consumed - rec.consumed_at_grant
        if since >= max(1, self.rx_buffer // 2) and self._may_grant(rec):
            self._grant(rec, since)

    # ------------------------------------------------------------ inputs

    def rx_beat_received(self, bits: int) -> None:
        """A ``data_layout`` beat from the engine's RX stream."""
        conn = _field(bits, self._f_conn)
        count = _field(bits, self._f_count)
        last = _field(bits, self._f_last)
        rec = self._conns.get(conn)
        if rec is None or not rec.machine.held or not 1 <= count <= self._w:
            self.dropped_rx_beats += 1
            return
        data = _field(bits, self._f_data).to_bytes(self._w, "little")[:count]
        self._rx_bytes(rec, data, last, 1)

    def rx_data_received(self, conn: int, data: bytes, last: bool) -> None:
        """A run of RX beats of one connection, already unpacked: their bytes, and
        whether the run ends with ``last`` (the virtual NIC's socket moves RX data so)."""
        rec = self._conns.get(conn)
        if rec is None or not rec.machine.held or not data:
            self.dropped_rx_beats += -(-len(data) // self._w)
            return
        self._rx_bytes(rec, data, last, -(-len(data) // self._w))

    def _rx_bytes(self, rec: ConnectionRecord, data: bytes, last: bool, beats: int) -> None:
        stats = rec.stats
        count = len(data)
        stats.rx_beats += beats
        stats.bytes_received += count
        over = stats.bytes_received - stats.credit_granted
        if over > 0:
            stats.rx_overrun += min(over, count)
        rec.rx_pending += data
        conn = rec.conn
        if last:
            stats.rx_deliveries += 1
            self._events.append(DataReceived(conn, bytes(rec.rx_pending)))
            rec.rx_pending.clear()
            self._check_eof(rec)

    # ------------------------------------------------------------ helpers

    def _check_usable(self, rec: ConnectionRecord) -> None:
        m = rec.machine
        if not m.held:
            raise closed_exception(f"connection {rec.conn}")
        exc = m.exception(rec.conn, rec.icmp_error)
        if exc is not None:
            raise exc

    def _may_grant(self, rec: ConnectionRecord) -> bool:
        m = rec.machine
        return m.held and not m.dead and m.receive is not ReceiveSide.EOF


def _field(bits: int, offset_width: tuple[int, int]) -> int:
    offset, width = offset_width
    return (bits >> offset) & ((1 << width) - 1)


def _check_port(port: int) -> None:
    if not 1 <= port <= 0xFFFF:
        raise ValueError(f"port must be 1..65535, not {port}")
