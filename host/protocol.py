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
from dataclasses import dataclass, field

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import (
    CommandOp,
    ErrorCode,
    EventKind,
    InfoField,
    SocketOption,
    command_layout,
    data_layout,
    event_layout,
)

from .connection import (
    ConnectionRecord,
    ConnState,
    ConnStats,
    Ending,
    EngineError,
    Opening,
    ReceiveSide,
    Release,
    SendSide,
    closed_exception,
    engine_error,
    format_addr,
)
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
#: Attempts of a CONNECT with an automatic local port refused with PORT_IN_USE.
CONNECT_PORT_ATTEMPTS = 8

_MASK32 = (1 << 32) - 1

# Errors that answer a tagged request (LISTEN, UNLISTEN, CONNECT) rather than a
# connection's command or TX data: the event's tag field names the request.
_REQUEST_CODES = frozenset({
    ErrorCode.BAD_COMMAND, ErrorCode.NO_FREE_CONN, ErrorCode.PORT_IN_USE,
    ErrorCode.NO_LISTENER_SLOT, ErrorCode.NOT_LISTENING, ErrorCode.TABLE_FULL,
    ErrorCode.NO_ROUTE, ErrorCode.BAD_ADDRESS,
})


def parse_addr(addr: int | str) -> int:
    """``"10.0.0.1"`` or an int -> the 32-bit address."""
    if isinstance(addr, str):
        return int(ipaddress.IPv4Address(addr))
    if not 0 <= addr <= _MASK32:
        raise ValueError(f"address out of range: {addr!r}")
    return addr


# ------------------------------------------------------------------ records


@dataclass(eq=False)
class ListenerRecord:
    port: int
    backlog: int
    tag: int
    listening: bool = False  # LISTENING received
    closing: bool = False  # unlisten() called
    queue: deque[int] = field(default_factory=deque)


@dataclass
class _Request:
    op: CommandOp
    port: int
    addr: int = 0
    local_port: int = 0
    auto_port: bool = False
    attempts: int = 1
    cancelled: bool = False


# ------------------------------------------------------------------ the core


class EngineProtocol:
    """The driver's protocol state machine (no I/O).  See the module documentation.

    ``rx_buffer`` is the receive credit per connection (bytes the driver buffers for
    the application); ``ephemeral_ports`` the range local ports are chosen from;
    ``rng`` picks the first ephemeral port (a :class:`random.Random`; default: fresh).
    """

    def __init__(self, config: ToeConfig = ToeConfig(), *, rx_buffer: int = DEFAULT_RX_BUFFER,
                 ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS,
                 rng: random.Random | None = None):
        if not 1 <= rx_buffer <= _MASK32:
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
        self._requests: dict[int, _Request] = {}
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

    def has_output(self) -> bool:
        """Commands or TX beats are waiting to be collected."""
        return bool(self._commands) or any(self._tx_ready(rec) or self._eos_ready(rec)
                                           for rec in self._conns.values())

    # ------------------------------------------------------------ outputs

    def commands_to_send(self) -> list[int]:
        """The packed commands (``command_layout``) to give the engine, in order."""
        out, self._commands = self._commands, []
        return out

    def tx_beats_to_send(self, max_bytes: int | None = None) -> list[int]:
        """Packed TX beats of :meth:`tx_writes_to_send` (see there)."""
        beats: list[int] = []
        for conn, chunk in self.tx_writes_to_send(max_bytes):
            if chunk:
                beats.extend(self._pack_write(conn, chunk))
            else:
                beats.append(conn << self._f_conn[0] | 1 << self._f_last[0])
        return beats

    def tx_writes_to_send(self, max_bytes: int | None = None) -> list[tuple[int, bytes]]:
        """The buffered data that fits the credit, as writes ``(conn, bytes)``.

        Each connection's bytes form writes of at most one MSS (on the TX stream a
        write is a run of beats, the last with ``last`` set).  At most ``max_bytes``
        bytes in total (None: no limit).  A connection whose ``shutdown()`` or
        ``close()`` waited for its buffer to empty gets the end-of-stream marker (an
        empty write: one empty beat with ``last``, counting as no byte) after its last
        data; with ``close()`` the ``CLOSE`` (``value`` 1) is queued at the same time
        (see the ordering contract).  A transport that moves whole writes (the virtual
        NIC's socket) uses this; :meth:`tx_beats_to_send` packs the same as beats.
        """
        writes: list[tuple[int, bytes]] = []
        budget = max_bytes
        for rec in list(self._conns.values()):
            if self._tx_ready(rec) and (budget is None or budget > 0):
                n = min(len(rec.tx_buffer), self._tx_credit - rec.stats.tx_unacked)
                if budget is not None:
                    n = min(n, budget)
                    budget -= n
                chunk = bytes(rec.tx_buffer[:n])
                del rec.tx_buffer[:n]
                # Writes of at most one MSS: the engine queues the bytes of a write when
                # its last beat arrives, so a first segment can leave while the rest of
                # a large buffer is still crossing the TX stream.
                step = self._write_bytes
                for at in range(0, n, step):
                    writes.append((rec.conn, chunk[at : at + step]))
                    rec.stats.tx_writes += 1
                rec.stats.bytes_sent += n
                rec.stats.tx_beats += sum(-(-len(chunk[at : at + step]) // self._w)
                                          for at in range(0, n, step))
            if self._eos_ready(rec):
                self._end_of_stream(rec)
                writes.append((rec.conn, b""))
        return writes

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
        self._requests[tag] = _Request(CommandOp.LISTEN, port)
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
        self._requests[tag] = _Request(CommandOp.UNLISTEN, port)
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
        self._requests[tag] = _Request(CommandOp.CONNECT, port, addr_int, local_port, auto)
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
        self._requests[tag] = _Request(CommandOp.GET_INFO, field.value)
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

    def event_received(self, bits: int) -> None:
        """An ``event_layout`` value from the engine."""
        try:
            ev = self.event_layout.from_bits(bits)
            kind = ev.kind
            code = ev.code
        except ValueError:  # not a known kind or code
            self.unknown_events += 1
            return
        handler = self._handlers.get(kind)
        if handler is None:
            return  # NONE
        handler(self, ev, code)

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

    # ------------------------------------------------------------ event handlers

    def _on_listening(self, ev, code) -> None:
        req = self._take_request(ev.tag, CommandOp.LISTEN)
        if req is None:
            return
        lst = self._listeners.get(req.port)
        if lst is not None and lst.tag == ev.tag:
            lst.listening = True
        self._events.append(Listening(ev.tag, req.port))

    def _on_unlistened(self, ev, code) -> None:
        req = self._take_request(ev.tag, CommandOp.UNLISTEN)
        if req is None:
            return
        self._listeners.pop(req.port, None)
        self._events.append(Unlistened(ev.tag, req.port))

    def _on_connecting(self, ev, code) -> None:
        req = self._take_request(ev.tag, CommandOp.CONNECT)
        if req is None:
            return
        rec = ConnectionRecord(ev.conn, passive=False, local_port=req.local_port,
                               remote_addr_int=req.addr, remote_port=req.port, tag=ev.tag)
        self._add(rec)
        self._events.append(Connecting(ev.tag, ev.conn))
        if req.cancelled:
            self._release(rec)

    def _on_established(self, ev, code) -> None:
        rec = self._conns.get(ev.conn)
        if rec is None or rec.machine.opening is not Opening.CONNECTING:
            self.unknown_events += 1  # not an active open waiting for it
            return
        rec.machine.establish()
        if not rec.machine.held:
            return
        self._grant(rec, self.rx_buffer)
        self._events.append(Connected(rec.tag or 0, rec.conn))

    def _on_accepted(self, ev, code) -> None:
        rec = ConnectionRecord(ev.conn, passive=True, local_port=ev.port,
                               remote_addr_int=ev.addr, remote_port=ev.remote_port,
                               listener_port=ev.port)
        self._add(rec)
        lst = self._listeners.get(ev.port)
        if lst is None or lst.closing:
            # Nobody will accept it: release it (no ACCEPT: the listener is gone or
            # going, and its backlog with it).
            self._drop_queued(rec, accept=False)
            return
        lst.queue.append(rec.conn)
        self._grant(rec, self.rx_buffer)
        self._events.append(Accepted(rec.conn, ev.port, ev.addr, ev.remote_port))

    def _on_peer_fin(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        if rec.machine.receive is not ReceiveSide.OPEN:
            self.unknown_events += 1  # a second PEER_FIN
            return
        rec.machine.see_peer_fin(ev.value)
        self._check_eof(rec)

    def _on_acked(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        n = min(ev.value, rec.stats.tx_unacked)
        rec.stats.bytes_acked += n
        if n:
            self._events.append(Acked(rec.conn, n))

    def _on_closed(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        self._end(rec, Ending.CLOSED)
        self._events.append(Closed(rec.conn))

    def _on_reset(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        if code == ErrorCode.REFUSED:
            self._end(rec, Ending.REFUSED)
            self._events.append(Refused(rec.conn, rec.tag))
        else:
            self._end(rec, Ending.RESET)
            self._events.append(Reset(rec.conn))
        self._after_death(rec)

    def _on_timeout(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        self._end(rec, Ending.TIMED_OUT)
        self._events.append(TimedOut(rec.conn, None if rec.machine.established else rec.tag))
        self._after_death(rec)

    def _on_info(self, ev, code) -> None:
        req = self._take_request(ev.tag, CommandOp.GET_INFO)
        if req is not None:
            self._events.append(Info(ev.conn, ev.tag, InfoField(req.port), ev.value))

    def _on_error(self, ev, code) -> None:
        req = self._requests.get(ev.tag)
        if req is not None and req.op == CommandOp.GET_INFO:
            del self._requests[ev.tag]  # any refusal answers it (no connection, no field)
            self._events.append(Error(code, tag=ev.tag, op=req.op))
            return
        if code in _REQUEST_CODES and ev.tag in self._requests:
            req = self._requests.pop(ev.tag)
            if (req.op == CommandOp.CONNECT and code == ErrorCode.PORT_IN_USE
                    and req.auto_port and req.attempts < CONNECT_PORT_ATTEMPTS):
                # Another local port: the socket pair may still exist in the engine
                # (e.g. in TIME-WAIT after its id was released).
                req.attempts += 1
                req.local_port = self._pick_port(also_avoid=req.local_port)
                self._requests[ev.tag] = req
                self._command(CommandOp.CONNECT, addr=req.addr, port=req.port,
                              value=req.local_port, tag=ev.tag)
                return
            if req.op == CommandOp.LISTEN:
                lst = self._listeners.get(req.port)
                if lst is not None and lst.tag == ev.tag:
                    del self._listeners[req.port]
            elif req.op == CommandOp.UNLISTEN:
                # NOT_LISTENING: the engine has no such listener; neither have we now.
                self._listeners.pop(req.port, None)
            self._events.append(Error(code, tag=ev.tag, op=req.op))
            return
        rec = self._conns.get(ev.conn)
        if rec is not None:
            rec.stats.errors += 1
            rec.last_error = code
        else:
            self.unknown_events += 1
        self._events.append(Error(code, conn=ev.conn))

    def _on_released(self, ev, code) -> None:
        rec = self._conns.pop(ev.conn, None)
        if rec is None:
            self.unknown_events += 1
            return
        rec.machine.engine_released()
        self._discard_tx(rec)
        if rec.machine.opening is Opening.QUEUED:
            lst = self._listeners.get(rec.listener_port or 0)
            if lst is not None and rec.conn in lst.queue:
                lst.queue.remove(rec.conn)
            rec.machine.unclaim()
        self._events.append(Released(rec.conn))

    _handlers = {
        EventKind.LISTENING: _on_listening,
        EventKind.UNLISTENED: _on_unlistened,
        EventKind.CONNECTING: _on_connecting,
        EventKind.ESTABLISHED: _on_established,
        EventKind.ACCEPTED: _on_accepted,
        EventKind.PEER_FIN: _on_peer_fin,
        EventKind.ACKED: _on_acked,
        EventKind.CLOSED: _on_closed,
        EventKind.RESET: _on_reset,
        EventKind.TIMEOUT: _on_timeout,
        EventKind.ERROR: _on_error,
        EventKind.RELEASED: _on_released,
        EventKind.INFO: _on_info,
    }

    # ------------------------------------------------------------ helpers

    def _command(self, op: CommandOp, *, conn: int = 0, tag: int = 0, port: int = 0,
                 addr: int = 0, value: int = 0) -> None:
        self._commands.append(self.command_layout.const({
            "op": op, "conn": conn, "tag": tag, "port": port, "addr": addr, "value": value,
        }).as_bits())

    def _new_tag(self) -> int:
        # Unique among waiting requests and live connections' connect() tags.
        busy = {rec.tag for rec in self._conns.values()}
        for _ in range(0xFFFF):
            tag = self._next_tag
            self._next_tag = tag % 0xFFFF + 1  # 1..65535: 0 means "no request"
            if tag not in self._requests and tag not in busy:
                return tag
        raise RuntimeError("65535 requests are waiting for an answer")

    def _take_request(self, tag: int, op: CommandOp) -> _Request | None:
        req = self._requests.get(tag)
        if req is None or req.op != op:
            self.unknown_events += 1
            return None
        del self._requests[tag]
        return req

    def _known(self, conn: int) -> ConnectionRecord | None:
        rec = self._conns.get(conn)
        if rec is None:
            self.unknown_events += 1
        return rec

    def _add(self, rec: ConnectionRecord) -> None:
        if rec.conn in self._conns:
            # The engine reuses an id only after RELEASED: count the inconsistency.
            self.unknown_events += 1
        self._conns[rec.conn] = rec

    def _pick_port(self, also_avoid: int | None = None) -> int:
        used = {rec.local_port for rec in self._conns.values()}
        used.update(req.local_port for req in self._requests.values()
                    if req.op == CommandOp.CONNECT)
        used.update(self._listeners)
        if also_avoid is not None:
            used.add(also_avoid)
        span = self._eph_hi - self._eph_lo + 1
        for _ in range(span):
            port = self._eph_lo + self._eph_next % span
            self._eph_next = (self._eph_next + 1) % span
            if port not in used:
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")

    def _check_usable(self, rec: ConnectionRecord) -> None:
        m = rec.machine
        if not m.held:
            raise closed_exception(f"connection {rec.conn}")
        exc = m.exception(rec.conn)
        if exc is not None:
            raise exc

    def _end(self, rec: ConnectionRecord, ending: Ending) -> None:
        """The connection ended so, unless it had ended already: the first ending
        stands (an engine event may cross the host's ``abort()``)."""
        if not rec.machine.ended:
            rec.machine.end(ending)

    def _tx_ready(self, rec: ConnectionRecord) -> bool:
        m = rec.machine
        return (bool(rec.tx_buffer) and m.established and not m.dead
                and not m.release_sent and not m.stream_end_sent
                and rec.stats.tx_unacked < self._tx_credit)

    def _eos_ready(self, rec: ConnectionRecord) -> bool:
        """The end-of-stream marker is due: requested, every byte handed over."""
        m = rec.machine
        return (m.send is SendSide.SHUTDOWN_REQUESTED and not rec.tx_buffer
                and m.established and not m.dead)

    def _end_of_stream(self, rec: ConnectionRecord) -> int:
        """The marker beat (``count`` 0, ``last`` 1); with ``close()`` also the CLOSE."""
        rec.machine.send_fin()
        if rec.machine.release is Release.REQUESTED:
            self._send_close(rec, in_band=True)
        return rec.conn << self._f_conn[0] | 1 << self._f_last[0]

    def _send_close(self, rec: ConnectionRecord, *, in_band: bool) -> None:
        """``CLOSE``; ``in_band``: the marker ends the stream (value bit 0)."""
        rec.machine.send_close()
        self._command(CommandOp.CLOSE, conn=rec.conn, value=int(in_band))

    def _discard_tx(self, rec: ConnectionRecord) -> None:
        rec.stats.bytes_discarded += len(rec.tx_buffer)
        rec.tx_buffer.clear()

    def _command_abort(self, rec: ConnectionRecord) -> None:
        rec.machine.send_abort()
        self._command(CommandOp.ABORT, conn=rec.conn)

    def _send_abort(self, rec: ConnectionRecord) -> None:
        """ABORT unless a CLOSE or ABORT was sent already."""
        self._discard_tx(rec)
        if not rec.machine.release_sent:
            self._command_abort(rec)

    def _release(self, rec: ConnectionRecord) -> None:
        """Give an id nobody will use back to the engine."""
        rec.machine.request_release()
        self._send_abort(rec)

    def _drop_queued(self, rec: ConnectionRecord, accept: bool) -> None:
        if rec.machine.opening is Opening.QUEUED:
            if accept:
                rec.machine.accept()
                self._command(CommandOp.ACCEPT, conn=rec.conn)
            else:
                rec.machine.unclaim()
        self._release(rec)

    def _after_death(self, rec: ConnectionRecord) -> None:
        """Reset, refused or timed out: release ids nobody holds, drop unsent data."""
        self._discard_tx(rec)
        m = rec.machine
        if m.opening is Opening.QUEUED:
            lst = self._listeners.get(rec.listener_port or 0)
            if lst is not None and rec.conn in lst.queue:
                lst.queue.remove(rec.conn)
            self._drop_queued(rec, accept=lst is not None and not lst.closing)
        elif not m.established:
            self._release(rec)  # a failed connect(): the application never had it
        elif m.release is Release.REQUESTED:
            self._send_abort(rec)  # close() was waiting for send credit

    def _may_grant(self, rec: ConnectionRecord) -> bool:
        m = rec.machine
        return m.held and not m.dead and m.receive is not ReceiveSide.EOF

    def _grant(self, rec: ConnectionRecord, n: int) -> None:
        rec.consumed_at_grant = rec.stats.bytes_consumed
        rec.stats.credit_granted += n
        self._command(CommandOp.CREDIT, conn=rec.conn, value=n)

    def _check_eof(self, rec: ConnectionRecord) -> None:
        m = rec.machine
        if (m.receive is ReceiveSide.PEER_FIN and not rec.rx_pending
                and rec.stats.bytes_received & _MASK32 == m.peer_fin_len):
            m.deliver_eof()
            self._events.append(EndOfStream(rec.conn))

    def _pack_write(self, conn: int, chunk: bytes) -> list[int]:
        w = self._w
        head = (conn << self._f_conn[0])
        beats = []
        for i in range(0, len(chunk), w):
            piece = chunk[i:i + w]
            bits = (head | int.from_bytes(piece, "little") << self._f_data[0]
                    | len(piece) << self._f_count[0])
            if i + w >= len(chunk):
                bits |= 1 << self._f_last[0]
            beats.append(bits)
        return beats


def _field(bits: int, offset_width: tuple[int, int]) -> int:
    offset, width = offset_width
    return (bits >> offset) & ((1 << width) - 1)


def _check_port(port: int) -> None:
    if not 1 <= port <= 0xFFFF:
        raise ValueError(f"port must be 1..65535, not {port}")
