"""How the driver's protocol core applies the engine's events: one handler per kind.

:class:`EventHandlers` is the middle layer of :class:`host.protocol.EngineProtocol`, on
top of :class:`host.commands.CommandEncoder`.  :meth:`~EventHandlers.event_received`
decodes an ``event_layout`` value and hands it to the ``_on_*`` handler of its
:class:`~hdl.host_if.EventKind`, which moves the connection's
:class:`host.connection.ConnectionMachine`, answers the tagged request the event names,
and queues the happenings (:mod:`host.happenings`) for the layer above.  Events that name
no connection or request the core knows are counted in ``unknown_events``.

What follows from an event is done here too: a ``CONNECT`` refused with ``PORT_IN_USE``
is retried with another ephemeral port (at most :data:`CONNECT_PORT_ATTEMPTS` tries);
ids the application never saw (a refused or timed-out connect, a connection reset while
it waited in an accept queue, an open on a port no longer listened on) are released; the
end of the peer's stream is reported once every byte before its ``PEER_FIN`` arrived.
"""

from __future__ import annotations

from amaranth.lib.data import StructLayout

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, InfoField

from .commands import MASK32, CommandEncoder, PendingRequest
from .connection import ConnectionRecord, Ending, Opening, ReceiveSide, Release
from .happenings import (
    Accepted,
    Acked,
    Closed,
    Connected,
    Connecting,
    EndOfStream,
    Error,
    IcmpError,
    Info,
    Listening,
    Refused,
    Released,
    Reset,
    TimedOut,
    Unlistened,
)
from .icmp import IcmpReport

__all__ = ["EventHandlers", "CONNECT_PORT_ATTEMPTS"]

#: Attempts of a CONNECT with an automatic local port refused with PORT_IN_USE.
CONNECT_PORT_ATTEMPTS = 8

# Errors that answer a tagged request (LISTEN, UNLISTEN, CONNECT) rather than a
# connection's command or TX data: the event's tag field names the request.
_REQUEST_CODES = frozenset({
    ErrorCode.BAD_COMMAND, ErrorCode.NO_FREE_CONN, ErrorCode.PORT_IN_USE,
    ErrorCode.NO_LISTENER_SLOT, ErrorCode.NOT_LISTENING, ErrorCode.TABLE_FULL,
    ErrorCode.NO_ROUTE, ErrorCode.BAD_ADDRESS,
})


class EventHandlers(CommandEncoder):
    """The engine's events applied to the core's tables (see the module documentation).

    ``rx_buffer`` is the receive credit granted when a connection opens.
    """

    rx_buffer: int
    event_layout: StructLayout

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

    # ------------------------------------------------------------ the handlers

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
        if code == ErrorCode.UNREACHABLE:
            rec.icmp_error = IcmpReport.from_event(ev.value)
            rec.stats.icmp_errors += 1
            self._end(rec, Ending.REFUSED)
            self._events.append(Refused(rec.conn, rec.tag, rec.icmp_error))
        elif code == ErrorCode.REFUSED:
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
        self._events.append(TimedOut(rec.conn, None if rec.machine.established else rec.tag,
                                     rec.icmp_error))
        self._after_death(rec)

    def _on_icmp_error(self, ev, code) -> None:
        rec = self._known(ev.conn)
        if rec is None:
            return
        rec.icmp_error = IcmpReport.from_event(ev.value)
        rec.stats.icmp_errors += 1
        self._events.append(IcmpError(rec.conn, rec.icmp_error))

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
        EventKind.ICMP_ERROR: _on_icmp_error,
    }

    # ------------------------------------------------------------ helpers

    def _take_request(self, tag: int, op: CommandOp) -> PendingRequest | None:
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

    def _end(self, rec: ConnectionRecord, ending: Ending) -> None:
        """The connection ended so, unless it had ended already: the first ending
        stands (an engine event may cross the host's ``abort()``)."""
        if not rec.machine.ended:
            rec.machine.end(ending)

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

    def _check_eof(self, rec: ConnectionRecord) -> None:
        m = rec.machine
        if (m.receive is ReceiveSide.PEER_FIN and not rec.rx_pending
                and rec.stats.bytes_received & MASK32 == m.peer_fin_len):
            m.deliver_eof()
            self._events.append(EndOfStream(rec.conn))
