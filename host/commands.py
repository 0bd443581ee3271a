"""What the driver's protocol core sends the engine: commands and TX beats.

:class:`CommandEncoder` is the lowest layer of :class:`host.protocol.EngineProtocol`
(:mod:`host.events` applies the engine's events on top of it, :mod:`host.protocol` adds
the application's requests).  It packs commands (``command_layout``) for the command
stream and the buffered data, as writes or ``data_layout`` beats within the send credit,
for the TX stream, and gives them out (:meth:`~CommandEncoder.commands_to_send`,
:meth:`~CommandEncoder.tx_beats_to_send`, :meth:`~CommandEncoder.tx_writes_to_send`).  It
keeps what they rest on: request tags, ephemeral local ports, receive credit grants, the
end-of-stream marker behind a connection's last byte, and the ``CLOSE`` or ``ABORT`` that
gives an id back.

:class:`ListenerRecord` is the core's record of a listening port and
:class:`PendingRequest` that of a tagged request (``LISTEN``, ``UNLISTEN``, ``CONNECT``,
``GET_INFO``) waiting for its answer.
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass, field

from amaranth.lib.data import StructLayout

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import CommandOp

from .connection import ConnectionRecord, Opening, Release, SendSide
from .happenings import Happening

__all__ = ["CommandEncoder", "ListenerRecord", "PendingRequest", "MASK32"]

#: 32-bit addresses, credits and stream lengths.
MASK32 = (1 << 32) - 1


@dataclass(eq=False)
class ListenerRecord:
    port: int
    backlog: int
    tag: int
    listening: bool = False  # LISTENING received
    closing: bool = False  # unlisten() called
    queue: deque[int] = field(default_factory=deque)


@dataclass
class PendingRequest:
    op: CommandOp
    port: int
    addr: int = 0
    local_port: int = 0
    auto_port: bool = False
    attempts: int = 1
    cancelled: bool = False


class CommandEncoder:
    """The command and TX streams of the core, and the bookkeeping behind them.

    The state is set up by :class:`host.protocol.EngineProtocol`; the annotations below
    name what this layer uses.
    """

    config: ToeConfig
    command_layout: StructLayout
    _w: int
    _tx_credit: int
    _f_conn: tuple[int, int]
    _f_data: tuple[int, int]
    _f_count: tuple[int, int]
    _f_last: tuple[int, int]
    _eph_lo: int
    _eph_hi: int
    _eph_next: int
    _next_tag: int
    _conns: dict[int, ConnectionRecord]
    _listeners: dict[int, ListenerRecord]
    _requests: dict[int, PendingRequest]
    _commands: list[int]
    _events: deque[Happening]
    _write_bytes: int
    unknown_events: int

    # ------------------------------------------------------------ outputs

    def has_output(self) -> bool:
        """Commands or TX beats are waiting to be collected."""
        return bool(self._commands) or any(self._tx_ready(rec) or self._eos_ready(rec)
                                           for rec in self._conns.values())

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
        (see the ordering contract of :mod:`host.protocol`).  A transport that moves
        whole writes (the virtual NIC's socket) uses this; :meth:`tx_beats_to_send` packs
        the same as beats.
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

    # ------------------------------------------------------------ the command stream

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

    def _grant(self, rec: ConnectionRecord, n: int) -> None:
        rec.consumed_at_grant = rec.stats.bytes_consumed
        rec.stats.credit_granted += n
        self._command(CommandOp.CREDIT, conn=rec.conn, value=n)

    def _send_close(self, rec: ConnectionRecord, *, in_band: bool) -> None:
        """``CLOSE``; ``in_band``: the marker ends the stream (value bit 0)."""
        rec.machine.send_close()
        self._command(CommandOp.CLOSE, conn=rec.conn, value=int(in_band))

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

    def _discard_tx(self, rec: ConnectionRecord) -> None:
        rec.stats.bytes_discarded += len(rec.tx_buffer)
        rec.tx_buffer.clear()

    # ------------------------------------------------------------ the TX stream

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
