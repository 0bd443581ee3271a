"""The host driver: the sans-I/O core (host/protocol.py) and the async API (host/api.py).

The core is driven by scripted event sequences built with ``event_layout(config)`` and
``data_layout(config)``; the commands and TX beats it emits are decoded with the same
layouts and checked (credit respected, CREDIT granted, the end-of-stream marker beat
after the data and CLOSE with the right value, ACCEPT on accept(), ids released).

The async API runs under asyncio over :class:`FakeEngine`, a test double of the engine's
*wire protocol* (commands in, events and RX beats out, the engine's credit rules
enforced and violations recorded), through a transport with plain send functions and one
with coroutine send functions.  One test runs the API under a minimal hand-written
scheduler instead of asyncio.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from toe.hdl.config import ToeConfig, ip
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
from toe.host.api import Engine, IncompleteReadError
from toe.host.connection import SendSide
from toe.host.framing import recv_message, send_message
from toe.host.protocol import (
    Accepted,
    Acked,
    Closed,
    Connected,
    Connecting,
    ConnState,
    DataReceived,
    EndOfStream,
    EngineError,
    EngineProtocol,
    Error,
    Listening,
    Refused,
    Released,
    Reset,
    TimedOut,
    Unlistened,
)

CONFIG = ToeConfig(data_bytes=8, tx_ring_bytes=64, rx_ring_bytes=4096)
PEER = "10.0.0.1"


# ====================================================================== helpers


class Wire:
    """Packs events and RX beats, unpacks commands and TX beats, for one config."""

    def __init__(self, config: ToeConfig):
        self.config = config
        self.cmd = command_layout(config)
        self.evt = event_layout(config)
        self.dat = data_layout(config)

    def event(self, kind: EventKind, code: ErrorCode = ErrorCode.NONE, **fields) -> int:
        return self.evt.const({"kind": kind, "code": code, **fields}).as_bits()

    def beats(self, conn: int, data: bytes, last: bool = True) -> list[int]:
        w = self.config.data_bytes
        out = []
        for i in range(0, len(data), w):
            piece = data[i:i + w]
            out.append(self.dat.const({
                "conn": conn, "data": int.from_bytes(piece, "little"), "count": len(piece),
                "last": int(last and i + w >= len(data)),
            }).as_bits())
        return out

    def commands(self, bits: list[int]) -> list[tuple]:
        """(op, conn, tag, port, addr, value) of each command; unused fields are 0."""
        out = []
        for b in bits:
            c = self.cmd.from_bits(b)
            out.append((c.op, c.conn, c.tag, c.port, c.addr, c.value))
        return out

    def ops(self, bits: list[int]) -> list[tuple[CommandOp, int]]:
        return [(op, conn) for op, conn, *_ in self.commands(bits)]

    def marker(self, conn: int) -> int:
        """The end-of-stream marker of ``conn``: an empty beat with ``last``."""
        return self.dat.const({"conn": conn, "data": 0, "count": 0, "last": 1}).as_bits()

    def writes(self, bits: list[int]) -> list[tuple[int, bytes | None]]:
        """The writes (conn, bytes) of a list of TX beats; checks the beat format.

        An end-of-stream marker is reported as (conn, None)."""
        w = self.config.data_bytes
        out, current, conn_of = [], bytearray(), None
        for b in bits:
            beat = self.dat.from_bits(b)
            if beat.count == 0:
                assert beat.last and beat.data == 0, "an empty beat is only the marker"
                assert conn_of is None, "the marker inside a write"
                out.append((beat.conn, None))
                continue
            assert 1 <= beat.count <= w
            assert conn_of in (None, beat.conn), "a write mixes connections"
            conn_of = beat.conn
            current += beat.data.to_bytes(w, "little")[:beat.count]
            if beat.last:
                out.append((beat.conn, bytes(current)))
                current, conn_of = bytearray(), None
            else:
                assert beat.count == w, "only the last beat of a write may be partial"
        assert not current, "a write without last"
        return out


def make_proto(config: ToeConfig = CONFIG, **kw) -> tuple[EngineProtocol, Wire]:
    return EngineProtocol(config, rng=random.Random(1), **kw), Wire(config)


def events(proto: EngineProtocol) -> list:
    return list(proto.events())


def open_active(proto: EngineProtocol, wire: Wire, conn: int = 1) -> int:
    """connect() + CONNECTING + ESTABLISHED; returns the tag; commands and events drained."""
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=conn))
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=conn))
    proto.commands_to_send()
    events(proto)
    return tag


# ====================================================================== the core


def test_listen_accept_sends_credit_and_accept():
    proto, wire = make_proto(rx_buffer=5000)
    tag = proto.listen(80, backlog=4)
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.LISTEN, 0, tag, 80, 0, 4)]
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    assert events(proto) == [Listening(tag, 80)]

    proto.event_received(wire.event(EventKind.ACCEPTED, conn=3, port=80, addr=ip(PEER),
                                    remote_port=4444))
    assert events(proto) == [Accepted(3, 80, ip(PEER), 4444)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CREDIT, 3, 0, 0, 0, 5000)]
    rec = proto.connection(3)
    assert (rec.passive, rec.local_port, rec.remote_addr, rec.remote_port) == (
        True, 80, PEER, 4444)
    assert rec.state == ConnState.ESTABLISHED == "ESTABLISHED"
    assert proto.listener(80).queue == deque([3])

    assert proto.accept(80) == 3
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ACCEPT, 3)]
    assert proto.accept(80) is None
    assert proto.commands_to_send() == []
    with pytest.raises(ValueError):
        proto.accept(81)


def test_listen_twice_and_listen_error():
    proto, wire = make_proto()
    tag = proto.listen(80)
    with pytest.raises(OSError):
        proto.listen(80)
    proto.event_received(wire.event(EventKind.ERROR, ErrorCode.NO_LISTENER_SLOT, tag=tag))
    assert events(proto) == [Error(ErrorCode.NO_LISTENER_SLOT, tag=tag, op=CommandOp.LISTEN)]
    assert proto.listener(80) is None
    proto.listen(80)  # the port is free again in the driver


def test_set_option_sends_set_option():
    """``set_option`` puts the option in ``port`` and its value in ``value``
    (hdl/host_if.py SET_OPTION); an option the engine does not know is refused before
    anything is sent, so the engine's ERROR(BAD_OPTION) is only for raw users."""
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=5))
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=5))
    proto.commands_to_send()
    proto.set_option(5, SocketOption.QUICKACK, 1)
    assert wire.commands(proto.commands_to_send()) == [
        (CommandOp.SET_OPTION, 5, 0, SocketOption.QUICKACK.value, 0, 1)]
    with pytest.raises(ValueError):
        proto.set_option(5, 999, 1)
    assert proto.commands_to_send() == []


def test_connect_established_grants_credit():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    [(op, _, ctag, port, addr, local)] = wire.commands(proto.commands_to_send())
    assert (op, ctag, port, addr) == (CommandOp.CONNECT, tag, 80, ip(PEER))
    assert 49152 <= local <= 65535
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=5))
    assert events(proto) == [Connecting(tag, 5)]
    assert proto.connection(5).state == ConnState.SYN_SENT
    assert proto.commands_to_send() == []
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=5))
    assert events(proto) == [Connected(tag, 5)]
    assert wire.commands(proto.commands_to_send()) == [
        (CommandOp.CREDIT, 5, 0, 0, 0, 64 * 1024)]
    rec = proto.connection(5)
    assert (rec.local_port, rec.remote_addr, rec.remote_port) == (local, PEER, 80)
    assert rec.state == ConnState.ESTABLISHED


def test_ephemeral_ports_are_free_and_distinct():
    proto, wire = make_proto(ephemeral_ports=(50000, 50003))
    proto.listen(50001)
    ports = []
    for _ in range(3):
        proto.connect(PEER, 80)
        ports.append(wire.commands(proto.commands_to_send())[-1][5])
    assert sorted(ports) == [50000, 50002, 50003]
    with pytest.raises(OSError):
        proto.connect(PEER, 80)
    # An explicit local port is taken as given.
    proto.connect(PEER, 81, local_port=1234)
    assert wire.commands(proto.commands_to_send())[-1][5] == 1234


def test_connect_port_in_use_retried_with_another_port():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    first = wire.commands(proto.commands_to_send())[0][5]
    proto.event_received(wire.event(EventKind.ERROR, ErrorCode.PORT_IN_USE, tag=tag))
    assert events(proto) == []
    [(op, _, ctag, port, _, second)] = wire.commands(proto.commands_to_send())
    assert (op, ctag, port) == (CommandOp.CONNECT, tag, 80) and second != first
    # With an explicit local port the error is reported.
    tag2 = proto.connect(PEER, 80, local_port=40000)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.ERROR, ErrorCode.PORT_IN_USE, tag=tag2))
    assert events(proto) == [Error(ErrorCode.PORT_IN_USE, tag=tag2, op=CommandOp.CONNECT)]
    assert proto.commands_to_send() == []


@pytest.mark.parametrize("code", [ErrorCode.NO_FREE_CONN, ErrorCode.TABLE_FULL,
                                  ErrorCode.NO_ROUTE])
def test_connect_error(code):
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.ERROR, code, tag=tag, conn=2))
    [err] = events(proto)
    assert err == Error(code, tag=tag, op=CommandOp.CONNECT)
    exc = err.exception()
    assert isinstance(exc, EngineError) and isinstance(exc, OSError) and exc.code == code
    assert proto.pending_requests() == {}


def test_connect_refused_releases_the_id():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.REFUSED, conn=2))
    assert events(proto) == [Connecting(tag, 2), Refused(2, tag)]
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 2)]
    assert proto.connection(2).state == ConnState.CLOSED
    proto.event_received(wire.event(EventKind.RELEASED, conn=2))
    assert events(proto) == [Released(2)]
    with pytest.raises(ValueError):
        proto.connection(2)


def test_connect_timeout_releases_the_id():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=4))
    proto.event_received(wire.event(EventKind.TIMEOUT, conn=4))
    assert events(proto)[-1] == TimedOut(4, tag)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 4)]


def test_cancel_connect_before_and_after_the_id():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.cancel_connect(tag)
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=1))
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=1))
    assert proto.commands_to_send() == []  # no CREDIT for an abandoned connection
    assert [e for e in events(proto) if isinstance(e, Connected)] == []

    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    proto.cancel_connect(tag)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 2)]


def test_tx_respects_send_credit_and_width():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    data = bytes(random.Random(2).randrange(256) for _ in range(200))
    proto.send(1, data)
    assert proto.connection(1).stats.tx_buffered == 200
    beats = proto.tx_beats_to_send()
    assert len(beats) == 8  # 64 bytes of credit, 8 bytes per beat
    sent = wire.writes(beats)
    assert sent == [(1, data[:64])]
    assert proto.tx_beats_to_send() == []  # no credit left
    proto.event_received(wire.event(EventKind.ACKED, conn=1, value=40))
    assert events(proto) == [Acked(1, 40)]
    sent += wire.writes(proto.tx_beats_to_send())
    assert sent[-1] == (1, data[64:104])
    proto.event_received(wire.event(EventKind.ACKED, conn=1, value=64))
    sent += wire.writes(proto.tx_beats_to_send())
    assert sent[-1] == (1, data[104:168])
    proto.event_received(wire.event(EventKind.ACKED, conn=1, value=64))
    sent += wire.writes(proto.tx_beats_to_send())
    assert b"".join(d for _, d in sent) == data
    stats = proto.connection(1).stats
    assert (stats.bytes_written, stats.bytes_sent, stats.bytes_acked) == (200, 200, 168)
    assert stats.tx_unacked == 32 and stats.tx_buffered == 0 and stats.tx_writes == 4


def test_tx_partial_beats_and_max_bytes():
    config = ToeConfig(data_bytes=4, tx_ring_bytes=256)
    proto, wire = make_proto(config)
    open_active(proto, wire, conn=0)
    proto.send(0, b"0123456789")
    beats = proto.tx_beats_to_send()
    assert [wire.dat.from_bits(b).count for b in beats] == [4, 4, 2]
    assert [wire.dat.from_bits(b).last for b in beats] == [0, 0, 1]
    assert wire.writes(beats) == [(0, b"0123456789")]
    # The hand-packed beats equal the layout's.
    assert beats == wire.beats(0, b"0123456789")
    proto.send(0, b"abcdefghij")
    assert wire.writes(proto.tx_beats_to_send(max_bytes=5)) == [(0, b"abcde")]
    assert wire.writes(proto.tx_beats_to_send()) == [(0, b"fghij")]


def test_tx_never_exceeds_credit_randomized():
    rng = random.Random(3)
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    expected, got, unacked = bytearray(), bytearray(), 0
    for _ in range(300):
        action = rng.random()
        if action < 0.4:
            chunk = rng.randbytes(rng.randrange(1, 100))
            proto.send(1, chunk)
            expected += chunk
        elif action < 0.7:
            for _, data in wire.writes(proto.tx_beats_to_send()):
                got += data
                unacked += len(data)
            assert unacked <= CONFIG.tx_ring_bytes
        elif unacked:
            n = rng.randrange(1, unacked + 1)
            proto.event_received(wire.event(EventKind.ACKED, conn=1, value=n))
            unacked -= n
    while len(got) < len(expected):
        proto.event_received(wire.event(EventKind.ACKED, conn=1, value=unacked))
        unacked = 0
        for _, data in wire.writes(proto.tx_beats_to_send()):
            got += data
            unacked += len(data)
    assert got == expected


def test_shutdown_only_after_all_data_handed_over():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(100))
    proto.shutdown(1)
    assert proto.connection(1).state == ConnState.FIN_WAIT
    assert proto.commands_to_send() == []
    assert len(b"".join(d for _, d in wire.writes(proto.tx_beats_to_send()))) == 64
    assert proto.commands_to_send() == []  # 36 bytes still buffered
    with pytest.raises(BrokenPipeError):
        proto.send(1, b"x")
    assert proto.connection(1).machine.send is SendSide.SHUTDOWN_REQUESTED
    proto.event_received(wire.event(EventKind.ACKED, conn=1, value=64))
    beats = proto.tx_beats_to_send()
    # The rest of the data, then the marker (count 0, last 1) behind its last beat.
    assert wire.writes(beats) == [(1, bytes(36)), (1, None)]
    eos = wire.dat.from_bits(beats[-1])
    assert (eos.conn, eos.count, eos.last, eos.data) == (1, 0, 1, 0)
    assert beats[-1] == wire.marker(1)
    assert proto.commands_to_send() == []  # no SHUTDOWN command
    stats = proto.connection(1).stats
    assert (stats.bytes_sent, stats.tx_writes, stats.tx_beats) == (100, 2, 13)
    assert proto.connection(1).machine.send is SendSide.FIN_SENT and not proto.has_output()
    proto.shutdown(1)  # idempotent
    assert proto.commands_to_send() == [] and proto.tx_beats_to_send() == []
    # Reading goes on after the half-close.
    for b in wire.beats(1, b"still reading"):
        proto.rx_beat_received(b)
    assert events(proto)[-1] == DataReceived(1, b"still reading")


def test_shutdown_with_empty_buffer_is_immediate():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.shutdown(1)
    assert proto.has_output()
    assert proto.tx_beats_to_send() == [wire.marker(1)]
    assert proto.commands_to_send() == []
    assert proto.tx_beats_to_send() == []  # once


def test_shutdown_before_established_waits_for_it():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=3))
    proto.send(3, b"early")
    proto.shutdown(3)
    assert proto.tx_beats_to_send() == [] and proto.commands_to_send() == []
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=3))
    assert wire.writes(proto.tx_beats_to_send()) == [(3, b"early"), (3, None)]
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.CREDIT, 3)]


def test_markers_count_toward_no_byte_budget():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    open_active(proto, wire, conn=2)
    proto.send(1, bytes(10))
    proto.shutdown(1)
    proto.shutdown(2)
    assert wire.writes(proto.tx_beats_to_send(max_bytes=4)) == [(1, bytes(4)), (2, None)]
    assert wire.writes(proto.tx_beats_to_send(max_bytes=6)) == [(1, bytes(6)), (1, None)]
    assert proto.connection(1).stats.bytes_sent == 10


def test_close_after_data_then_released():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(70))
    proto.close(1)
    with pytest.raises(OSError):
        proto.send(1, b"x")
    assert wire.writes(proto.tx_beats_to_send()) == [(1, bytes(64))]
    assert proto.commands_to_send() == []
    proto.event_received(wire.event(EventKind.ACKED, conn=1, value=64))
    assert wire.writes(proto.tx_beats_to_send()) == [(1, bytes(6)), (1, None)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 1, 0, 0, 0, 1)]
    # After CLOSE nothing more is read: late beats are dropped, no credit is granted.
    for b in wire.beats(1, b"late"):
        proto.rx_beat_received(b)
    assert proto.dropped_rx_beats == 1
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=0))
    proto.event_received(wire.event(EventKind.CLOSED, conn=1))
    proto.event_received(wire.event(EventKind.RELEASED, conn=1))
    assert [e for e in events(proto) if isinstance(e, (Closed, Released))] == [
        Closed(1), Released(1)]
    assert 1 not in proto.connections


def test_close_with_unread_received_data_aborts():
    """RFC 9293 SHLD-3 (RFC 2525 s2.17): close() while received bytes were never taken
    by the application sends ABORT (a RST), not the end of the stream, so the peer
    learns that data was lost; with everything consumed close() is the usual CLOSE."""
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.commands_to_send()
    for b in wire.beats(1, b"not read"):
        proto.rx_beat_received(b)
    proto.close(1)
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.ABORT, 1, 0, 0, 0, 0)]
    assert proto.tx_beats_to_send() == []

    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.commands_to_send()
    for b in wire.beats(1, b"read"):
        proto.rx_beat_received(b)
    proto.consume(1, 4)
    proto.close(1)
    assert wire.writes(proto.tx_beats_to_send()) == [(1, None)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 1, 0, 0, 0, 1)]


def test_close_after_the_marker_of_shutdown():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, b"data")
    proto.shutdown(1)
    assert wire.writes(proto.tx_beats_to_send()) == [(1, b"data"), (1, None)]
    proto.close(1)  # the marker went out: CLOSE (in-band end) at once, no second marker
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 1, 0, 0, 0, 1)]
    assert proto.tx_beats_to_send() == [] and not proto.has_output()
    proto.close(1)  # idempotent
    assert proto.commands_to_send() == []


def test_close_and_shutdown_marker_in_one_call_with_data():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, b"abc")
    proto.shutdown(1)
    proto.close(1)
    assert proto.commands_to_send() == []  # nothing before the data is handed over
    assert wire.writes(proto.tx_beats_to_send()) == [(1, b"abc"), (1, None)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 1, 0, 0, 0, 1)]


def test_close_before_established_ends_the_stream_in_the_engine():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    proto.close(2)
    # Nothing was handed over and no marker will follow: CLOSE with value 0, at once.
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 2, 0, 0, 0, 0)]
    assert proto.tx_beats_to_send() == [] and not proto.has_output()
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=2))
    assert proto.tx_beats_to_send() == [] and proto.commands_to_send() == []
    assert [e for e in events(proto) if isinstance(e, Connected)] == []


def test_close_before_established_with_data_waits_for_it():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    proto.send(2, b"request")
    proto.close(2)
    assert proto.commands_to_send() == [] and proto.tx_beats_to_send() == []
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=2))
    assert wire.writes(proto.tx_beats_to_send()) == [(2, b"request"), (2, None)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 2, 0, 0, 0, 1)]


def test_reset_before_the_marker_sends_none():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(100))
    wire.writes(proto.tx_beats_to_send())
    proto.shutdown(1)
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=1))
    assert proto.tx_beats_to_send() == [] and proto.commands_to_send() == []
    assert not proto.has_output()


def test_rx_credit_granted_again_after_half_the_buffer():
    proto, wire = make_proto(rx_buffer=100)
    open_active(proto, wire, conn=2)
    for b in wire.beats(2, bytes(range(60))):
        proto.rx_beat_received(b)
    assert events(proto) == [DataReceived(2, bytes(range(60)))]
    proto.consume(2, 40)
    assert proto.commands_to_send() == []
    proto.consume(2, 20)
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CREDIT, 2, 0, 0, 0, 60)]
    stats = proto.connection(2).stats
    assert stats.credit_granted == 160 and stats.rx_buffered == 0
    with pytest.raises(ValueError):
        proto.consume(2, 1)


def test_rx_deliveries_and_overrun_counted():
    proto, wire = make_proto(rx_buffer=16)
    open_active(proto, wire, conn=2)
    beats = wire.beats(2, b"abcdefghij", last=False) + wire.beats(2, b"klmnopqrst")
    for b in beats:
        proto.rx_beat_received(b)
    assert events(proto) == [DataReceived(2, b"abcdefghijklmnopqrst")]
    stats = proto.connection(2).stats
    assert (stats.rx_beats, stats.rx_deliveries, stats.rx_overrun) == (4, 1, 4)


def test_peer_fin_before_the_last_data():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    for b in wire.beats(1, b"0123"):
        proto.rx_beat_received(b)
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=10))
    assert events(proto) == [DataReceived(1, b"0123")]
    assert proto.connection(1).state == ConnState.CLOSE_WAIT
    for b in wire.beats(1, b"456789"):
        proto.rx_beat_received(b)
    assert events(proto) == [DataReceived(1, b"456789"), EndOfStream(1)]
    proto.consume(1, 10)
    assert proto.commands_to_send() == []  # no credit after the end of the stream
    proto.shutdown(1)
    assert proto.connection(1).state == ConnState.CLOSING


def test_peer_fin_length_modulo_2_32():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    rec = proto.connection(1)
    rec.stats.bytes_received = rec.stats.credit_granted = 2**32 - 2  # as after 4 GiB
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=3))
    for b in wire.beats(1, b"abcde"):
        proto.rx_beat_received(b)
    assert events(proto)[-1] == EndOfStream(1)


def test_reset_of_an_established_connection():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(100))
    wire.writes(proto.tx_beats_to_send())
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=1))
    assert events(proto) == [Reset(1)]
    assert proto.commands_to_send() == []  # the application still holds the id
    assert proto.tx_beats_to_send() == []
    rec = proto.connection(1)
    assert rec.state == ConnState.CLOSED and rec.stats.tx_buffered == 0
    with pytest.raises(ConnectionResetError):
        proto.send(1, b"x")
    with pytest.raises(ConnectionResetError):
        proto.shutdown(1)
    proto.close(1)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]


def test_timeout_of_an_established_connection():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.event_received(wire.event(EventKind.TIMEOUT, conn=1))
    assert events(proto) == [TimedOut(1, None)]
    with pytest.raises(TimeoutError):
        proto.send(1, b"x")
    proto.abort(1)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]


def test_reset_while_close_waits_for_credit_aborts():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(100))
    wire.writes(proto.tx_beats_to_send())
    proto.close(1)
    assert proto.commands_to_send() == []
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=1))
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]


def test_abort_discards_and_is_idempotent():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.send(1, bytes(100))
    proto.close(1)
    proto.abort(1)
    proto.abort(1)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]
    assert proto.tx_beats_to_send() == []
    assert proto.connection(1).stats.bytes_discarded == 100
    # abort() after a CLOSE that was sent: the RST cuts the handshake short.
    open_active(proto, wire, conn=2)
    proto.close(2)
    assert proto.tx_beats_to_send() == [wire.marker(2)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 2, 0, 0, 0, 1)]
    proto.abort(2)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 2)]


def test_reset_in_the_accept_queue_releases_the_connection():
    proto, wire = make_proto()
    tag = proto.listen(80)
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    proto.event_received(wire.event(EventKind.ACCEPTED, conn=6, port=80, addr=1,
                                    remote_port=5))
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=6))
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ACCEPT, 6), (CommandOp.ABORT, 6)]
    assert proto.accept(80) is None


def test_unlisten_releases_the_accept_queue():
    proto, wire = make_proto()
    tag = proto.listen(80)
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    proto.event_received(wire.event(EventKind.ACCEPTED, conn=2, port=80, addr=1,
                                    remote_port=5))
    proto.commands_to_send()
    utag = proto.unlisten(80)
    assert wire.commands(proto.commands_to_send()) == [
        (CommandOp.ACCEPT, 2, 0, 0, 0, 0), (CommandOp.ABORT, 2, 0, 0, 0, 0),
        (CommandOp.UNLISTEN, 0, utag, 80, 0, 0)]
    # A passive open that completed meanwhile: released without ACCEPT.
    proto.event_received(wire.event(EventKind.ACCEPTED, conn=3, port=80, addr=1,
                                    remote_port=6))
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 3)]
    proto.event_received(wire.event(EventKind.UNLISTENED, tag=utag, port=80))
    assert [e for e in events(proto) if isinstance(e, (Accepted, Unlistened))] == [
        Accepted(2, 80, 1, 5), Unlistened(utag, 80)]
    assert proto.listener(80) is None
    with pytest.raises(ValueError):
        proto.unlisten(80)


def test_unlisten_not_listening_error():
    proto, wire = make_proto()
    tag = proto.listen(80)
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    utag = proto.unlisten(80)
    proto.event_received(wire.event(EventKind.ERROR, ErrorCode.NOT_LISTENING, tag=utag))
    assert events(proto)[-1] == Error(ErrorCode.NOT_LISTENING, tag=utag, op=CommandOp.UNLISTEN)


def test_connection_error_event():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.event_received(wire.event(EventKind.ERROR, ErrorCode.TX_OVERFLOW, conn=1, tag=77))
    assert events(proto) == [Error(ErrorCode.TX_OVERFLOW, conn=1)]
    rec = proto.connection(1)
    assert rec.stats.errors == 1 and rec.last_error == ErrorCode.TX_OVERFLOW


def test_state_sequence_of_an_active_close():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    rec = proto.connection(1)
    states = [rec.state]
    proto.shutdown(1)
    states.append(rec.state)
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=0))
    states.append(rec.state)
    proto.event_received(wire.event(EventKind.CLOSED, conn=1))
    states.append(rec.state)
    proto.close(1)
    assert proto.tx_beats_to_send() == [wire.marker(1)]
    assert wire.commands(proto.commands_to_send()) == [(CommandOp.CLOSE, 1, 0, 0, 0, 1)]
    proto.event_received(wire.event(EventKind.RELEASED, conn=1))
    states.append(rec.state)
    assert [str(s) for s in states] == [
        "ESTABLISHED", "FIN-WAIT", "CLOSING", "CLOSED", "RELEASED"]


def test_unknown_and_malformed_input_is_ignored():
    proto, wire = make_proto()
    proto.event_received(wire.event(EventKind.ACKED, conn=9, value=5))
    proto.event_received(wire.event(EventKind.LISTENING, tag=42, port=1))
    proto.event_received(15)  # not an EventKind
    proto.event_received(wire.event(EventKind.NONE))
    assert proto.unknown_events == 3
    for b in wire.beats(9, b"x"):
        proto.rx_beat_received(b)
    assert proto.dropped_rx_beats == 1
    assert events(proto) == []


def test_tags_are_unique_among_waiting_requests():
    proto, _ = make_proto()
    tags = {proto.connect(PEER, 80) for _ in range(100)}
    assert len(tags) == 100 and 0 not in tags


# ====================================================================== engine double


@dataclass
class FakeConn:
    conn: int
    passive: bool
    local_port: int
    remote_addr: int
    remote_port: int
    listener: int | None = None
    accepted: bool = False
    credit: int = 0
    rx_queue: bytearray = field(default_factory=bytearray)
    rx_sent: int = 0  # bytes the peer sent (stream length)
    tx_data: bytearray = field(default_factory=bytearray)  # what the host wrote
    tx_partial: bytearray = field(default_factory=bytearray)
    unacked: int = 0
    shut: bool = False  # the FIN is queued (marker, CLOSE value 0, SHUTDOWN or ABORT)
    fin_at: int | None = None  # the stream length the FIN follows
    close_value: int | None = None  # value of the CLOSE received
    host_closed: bool = False
    dead: bool = False


CONN_COMMANDS = {CommandOp.ACCEPT, CommandOp.SHUTDOWN, CommandOp.CLOSE, CommandOp.ABORT,
                 CommandOp.CREDIT}


class FakeEngine:
    """A test double of the engine's host interface (commands in; events and beats out).

    It follows the rules of hdl/host_if.py: engine-allocated ids, LISTEN/ACCEPT backlog,
    RX deliveries within the credit, TX writes within tx_ring_bytes of unacknowledged
    data, ERROR(TX_OVERFLOW / TX_AFTER_SHUTDOWN), RELEASED after CLOSE/ABORT, the
    end of a stream in-band (an empty TX beat with ``last``: FIN after the bytes before
    it), CLOSE value 1 (marks the id only; the marker ends the stream) or 0 (also ends
    the stream).  Host-side rule breaking is recorded in ``violations``, including any
    ``SHUTDOWN``: it races the TX stream, so this driver must not use it.

    ``on_connect``: "establish", "refuse", "timeout" or "hold" (the test decides).
    ``auto_ack``: acknowledge TX writes at once.  ``echo``: the peer sends back what
    the host writes.  ``max_delivery``: bytes per RX delivery.
    """

    def __init__(self, config: ToeConfig, *, on_connect: str = "establish",
                 auto_ack: bool = True, echo: bool = False, max_delivery: int = 100):
        self.config = config
        self.wire = Wire(config)
        self.on_connect = on_connect
        self.auto_ack = auto_ack
        self.echo = echo
        self.max_delivery = max_delivery
        self.out = None  # set by the transport: out(kind "evt"/"rx", bits)
        self.conns: dict[int, FakeConn] = {}
        self.free = list(range(config.connections))
        self.listeners: dict[int, list[int]] = {}  # port -> [backlog, pending]
        self.commands: list[tuple] = []
        self.violations: list[str] = []

    # ---------------------------------------------------------------- output

    def event(self, kind: EventKind, code: ErrorCode = ErrorCode.NONE, **fields) -> None:
        self.out("evt", self.wire.event(kind, code, **fields))

    def _deliver(self, fc: FakeConn) -> None:
        while fc.credit and fc.rx_queue and not fc.host_closed:
            n = min(fc.credit, len(fc.rx_queue), self.max_delivery)
            chunk = bytes(fc.rx_queue[:n])
            del fc.rx_queue[:n]
            fc.credit -= n
            for b in self.wire.beats(fc.conn, chunk):
                self.out("rx", b)

    # ---------------------------------------------------------------- input

    def command(self, bits: int) -> None:
        c = self.wire.cmd.from_bits(bits)
        op, conn, tag, port, addr, value = c.op, c.conn, c.tag, c.port, c.addr, c.value
        self.commands.append((op, conn, tag, port, addr, value))
        if op == CommandOp.LISTEN:
            if port in self.listeners:
                self.event(EventKind.ERROR, ErrorCode.PORT_IN_USE, tag=tag)
            else:
                self.listeners[port] = [value, 0]
                self.event(EventKind.LISTENING, tag=tag, port=port)
        elif op == CommandOp.UNLISTEN:
            if self.listeners.pop(port, None) is None:
                self.event(EventKind.ERROR, ErrorCode.NOT_LISTENING, tag=tag, port=port)
            else:
                self.event(EventKind.UNLISTENED, tag=tag, port=port)
        elif op == CommandOp.CONNECT:
            if not self.free:
                self.event(EventKind.ERROR, ErrorCode.NO_FREE_CONN, tag=tag)
                return
            if any(fc.local_port == value and fc.remote_port == port
                   and fc.remote_addr == addr for fc in self.conns.values()):
                self.event(EventKind.ERROR, ErrorCode.PORT_IN_USE, tag=tag)
                return
            cid = self.free.pop(0)
            fc = self.conns[cid] = FakeConn(cid, False, value, addr, port)
            self.event(EventKind.CONNECTING, tag=tag, conn=cid)
            if self.on_connect == "establish":
                self.event(EventKind.ESTABLISHED, conn=cid)
            elif self.on_connect == "refuse":
                fc.dead = True
                self.event(EventKind.RESET, ErrorCode.REFUSED, conn=cid)
            elif self.on_connect == "timeout":
                fc.dead = True
                self.event(EventKind.TIMEOUT, conn=cid)
        else:
            fc = self.conns.get(conn)
            if fc is None:
                self.violations.append(f"{op.name} for unknown connection {conn}")
                self.event(EventKind.ERROR, ErrorCode.UNKNOWN_CONN, conn=conn, tag=tag)
                return
            if op == CommandOp.ACCEPT:
                if not fc.passive or fc.accepted:
                    self.violations.append(f"ACCEPT of {conn} in a bad state")
                    self.event(EventKind.ERROR, ErrorCode.BAD_STATE, conn=conn)
                    return
                fc.accepted = True
                if fc.listener in self.listeners:
                    self.listeners[fc.listener][1] -= 1
            elif op == CommandOp.CREDIT:
                if not fc.host_closed:
                    fc.credit += value
                    self._deliver(fc)
            elif op == CommandOp.SHUTDOWN:
                # The engine's command stream may overtake bytes on the TX stream.
                self.violations.append(f"SHUTDOWN of {conn}: not ordered with TX data")
                if fc.shut:
                    self.violations.append(f"SHUTDOWN of {conn} twice")
                    self.event(EventKind.ERROR, ErrorCode.BAD_STATE, conn=conn)
                    return
                self._queue_fin(fc)
            elif op == CommandOp.CLOSE:
                if fc.host_closed:
                    self.violations.append(f"CLOSE of {conn} twice")
                    self.event(EventKind.ERROR, ErrorCode.BAD_STATE, conn=conn)
                    return
                if value not in (0, 1):
                    self.violations.append(f"CLOSE of {conn} with value {value}")
                fc.host_closed = True
                fc.close_value = value & 1
                if not value & 1:
                    # The engine ends the stream after what it took: meant for nothing
                    # taken (not yet established), else bytes on their way would race.
                    if fc.tx_data or fc.tx_partial:
                        self.violations.append(f"CLOSE value 0 of {conn} after TX data")
                    if not fc.shut:
                        self._queue_fin(fc)
                if fc.dead:
                    self._release(fc)
            elif op == CommandOp.ABORT:
                fc.shut = fc.host_closed = fc.dead = True
                self._release(fc)
            elif op == CommandOp.GET_INFO:
                if port >= len(InfoField):
                    self.event(EventKind.ERROR, ErrorCode.BAD_OPTION, conn=conn, tag=tag)
                else:  # a made-up value the test can recognise: 1000 * conn + field
                    self.event(EventKind.INFO, conn=conn, tag=tag, value=1000 * conn + port)

    def tx_beat(self, bits: int) -> None:
        beat = self.wire.dat.from_bits(bits)
        fc = self.conns.get(beat.conn)
        w = self.config.data_bytes
        if fc is None:
            self.violations.append(f"TX beat for unknown connection {beat.conn}")
            return
        if beat.count == 0:
            if not beat.last or beat.data:
                self.violations.append(f"empty TX beat without last (or with data) "
                                       f"on {fc.conn}")
            if fc.tx_partial:
                self.violations.append(f"end-of-stream marker inside a write on {fc.conn}")
                fc.tx_partial = bytearray()
            if fc.shut:
                self.violations.append(f"end of stream of {fc.conn} twice")
                self.event(EventKind.ERROR, ErrorCode.TX_AFTER_SHUTDOWN, conn=fc.conn)
                return
            self._queue_fin(fc)
            return
        if beat.count > w:
            self.violations.append(f"TX beat with count {beat.count}")
        fc.tx_partial += beat.data.to_bytes(w, "little")[:beat.count]
        if not beat.last:
            return
        data, fc.tx_partial = bytes(fc.tx_partial), bytearray()
        if fc.shut:
            self.violations.append(f"TX data after the end of stream on {fc.conn}")
            self.event(EventKind.ERROR, ErrorCode.TX_AFTER_SHUTDOWN, conn=fc.conn)
            return
        if fc.unacked + len(data) > self.config.tx_ring_bytes:
            self.violations.append(f"TX overflow on {fc.conn}")
            self.event(EventKind.ERROR, ErrorCode.TX_OVERFLOW, conn=fc.conn)
            return
        fc.tx_data += data
        fc.unacked += len(data)
        if self.echo:
            self.peer_send(fc.conn, data)
        if self.auto_ack:
            self.peer_ack(fc.conn, fc.unacked)

    def _queue_fin(self, fc: FakeConn) -> None:
        """The FIN follows every byte taken so far."""
        fc.shut = True
        fc.fin_at = len(fc.tx_data)

    def _release(self, fc: FakeConn) -> None:
        del self.conns[fc.conn]
        self.free.append(fc.conn)
        self.event(EventKind.RELEASED, conn=fc.conn)

    # ---------------------------------------------------------------- the peer side

    def incoming(self, port: int, addr: str = PEER, remote_port: int = 40000) -> int | None:
        """A passive open completes on ``port``; None if the engine would drop it."""
        lst = self.listeners.get(port)
        if lst is None or lst[1] >= lst[0] or not self.free:
            return None
        lst[1] += 1
        cid = self.free.pop(0)
        self.conns[cid] = FakeConn(cid, True, port, ip(addr), remote_port, listener=port)
        self.event(EventKind.ACCEPTED, conn=cid, port=port, addr=ip(addr),
                   remote_port=remote_port)
        return cid

    def establish(self, conn: int) -> None:
        self.event(EventKind.ESTABLISHED, conn=conn)

    def peer_send(self, conn: int, data: bytes) -> None:
        fc = self.conns[conn]
        fc.rx_queue += data
        fc.rx_sent += len(data)
        self._deliver(fc)

    def peer_fin(self, conn: int) -> None:
        self.event(EventKind.PEER_FIN, conn=conn, value=self.conns[conn].rx_sent & 0xFFFFFFFF)

    def peer_ack(self, conn: int, n: int) -> None:
        fc = self.conns[conn]
        fc.unacked -= n
        self.event(EventKind.ACKED, conn=conn, value=n)

    def peer_reset(self, conn: int) -> None:
        fc = self.conns[conn]
        fc.dead = True
        self.event(EventKind.RESET, ErrorCode.RESET, conn=conn)
        if fc.host_closed:
            self._release(fc)

    def time_out(self, conn: int) -> None:
        fc = self.conns[conn]
        fc.dead = True
        self.event(EventKind.TIMEOUT, conn=conn)

    def finish_close(self, conn: int) -> None:
        """The close handshake ends (both FINs acknowledged, TIME-WAIT over)."""
        fc = self.conns[conn]
        if not fc.shut and not fc.dead:
            self.violations.append(f"close handshake of {conn} without our FIN")
        fc.dead = True
        self.event(EventKind.CLOSED, conn=conn)
        if fc.host_closed:
            self._release(fc)

    def ops(self, conn: int | None = None) -> list[CommandOp]:
        """The commands received (those naming connection ``conn`` if given)."""
        return [c[0] for c in self.commands
                if conn is None or (c[1] == conn and c[0] in CONN_COMMANDS)]


def test_fake_engine_flags_misuse_of_the_end_of_stream():
    fake = FakeEngine(CONFIG, on_connect="hold")
    out: list[tuple[str, int]] = []
    fake.out = lambda kind, bits: out.append((kind, bits))
    wire = fake.wire
    fake.command(wire.cmd.const({"op": CommandOp.CONNECT, "addr": ip(PEER), "port": 7,
                                 "value": 50000, "tag": 1}).as_bits())
    cid = next(iter(fake.conns))
    for b in wire.beats(cid, b"abc"):
        fake.tx_beat(b)
    fake.tx_beat(wire.marker(cid))
    assert fake.conns[cid].shut and fake.conns[cid].fin_at == 3
    assert fake.violations == []
    for b in wire.beats(cid, b"late"):
        fake.tx_beat(b)
    fake.tx_beat(wire.marker(cid))
    assert fake.violations == [f"TX data after the end of stream on {cid}",
                               f"end of stream of {cid} twice"]
    assert bytes(fake.conns[cid].tx_data) == b"abc"
    fake.violations.clear()
    fake.command(wire.cmd.const({"op": CommandOp.SHUTDOWN, "conn": cid}).as_bits())
    assert len(fake.violations) == 2  # SHUTDOWN at all, and after the marker


class SyncTransport:
    """Plain send functions: the double answers at once (re-entrantly)."""

    def __init__(self, fake: FakeEngine, make_event=asyncio.Event):
        self.fake = fake
        self.sink = None
        self._make_event = make_event
        fake.out = self._out

    def attach(self, sink) -> None:
        self.sink = sink

    def make_event(self):
        return self._make_event()

    def send_commands(self, commands: list[int]) -> None:
        for c in commands:
            self.fake.command(c)

    def send_tx_beats(self, beats: list[int]) -> None:
        for b in beats:
            self.fake.tx_beat(b)

    def _out(self, kind: str, bits: int) -> None:
        (self.sink.feed_event if kind == "evt" else self.sink.feed_rx_beat)(bits)


class AsyncTransport(SyncTransport):
    """Coroutine send functions with a delay; the double's output comes later too."""

    async def send_commands(self, commands: list[int]) -> None:
        await asyncio.sleep(0)
        super().send_commands(commands)

    async def send_tx_beats(self, beats: list[int]) -> None:
        await asyncio.sleep(0)
        super().send_tx_beats(beats)

    def _out(self, kind: str, bits: int) -> None:
        asyncio.get_running_loop().call_soon(super()._out, kind, bits)


TRANSPORTS = {"sync": SyncTransport, "async": AsyncTransport}


def setup(kind: str, config: ToeConfig = CONFIG, *, rx_buffer: int = 64 * 1024,
          **fake_options) -> tuple[Engine, FakeEngine]:
    fake = FakeEngine(config, **fake_options)
    engine = Engine(TRANSPORTS[kind](fake), config, rx_buffer=rx_buffer)
    return engine, fake


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


both = pytest.mark.parametrize("kind", sorted(TRANSPORTS))


# ====================================================================== the async API


@both
def test_api_connect_write_read_eof_close(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        assert conn.state == ConnState.ESTABLISHED
        assert conn.remote_addr == PEER and conn.remote_port == 7
        assert 49152 <= conn.local_port <= 65535
        cid = conn.conn_id
        assert fake.ops(cid)[-1] == CommandOp.CREDIT
        conn.write(b"hello ")
        conn.write(b"world")
        await conn.drain()
        await conn.wait_acked()
        assert bytes(fake.conns[cid].tx_data) == b"hello world"
        fake.peer_send(cid, b"0123456789")
        assert await conn.readexactly(4) == b"0123"
        assert await conn.read(100) == b"456789"
        fake.peer_send(cid, b"tail")
        fake.peer_fin(cid)
        assert await conn.read() == b"tail"
        assert await conn.read() == b""
        assert conn.at_eof() and conn.state == ConnState.CLOSE_WAIT
        await conn.close()
        assert fake.ops(cid)[-1] == CommandOp.CLOSE and fake.conns[cid].close_value == 1
        assert fake.conns[cid].fin_at == 11  # the marker ended the stream
        fake.finish_close(cid)
        await conn.wait_closed()
        assert conn.state == ConnState.RELEASED
        assert conn.stats.bytes_acked == 11 and conn.stats.bytes_received == 14
        assert engine.connections == [] and fake.conns == {}
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_connect_refused(kind):
    async def main():
        engine, fake = setup(kind, on_connect="refuse")
        with pytest.raises(ConnectionRefusedError):
            await engine.connect(PEER, 7)
        await settle()
        assert fake.ops() == [CommandOp.CONNECT, CommandOp.ABORT]
        assert fake.conns == {} and engine.protocol.connections == {}
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_connect_timeout(kind):
    async def main():
        engine, fake = setup(kind, on_connect="timeout")
        with pytest.raises(TimeoutError):
            await engine.connect(PEER, 7)
        await settle()
        assert fake.conns == {} and fake.violations == []
    asyncio.run(main())


@both
def test_api_connect_engine_error(kind):
    async def main():
        engine, fake = setup(kind, ToeConfig(connections=2, tx_ring_bytes=64))
        a = await engine.connect(PEER, 7)
        b = await engine.connect(PEER, 7)
        assert a.local_port != b.local_port
        with pytest.raises(EngineError) as info:
            await engine.connect(PEER, 7)
        assert info.value.code == ErrorCode.NO_FREE_CONN and isinstance(info.value, OSError)
        a.abort()
        await a.wait_closed()
        c = await engine.connect(PEER, 7)  # the released id is reused
        assert c.conn_id == a.conn_id and a.state == ConnState.RELEASED
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_connect_cancelled_releases_the_id(kind):
    async def main():
        engine, fake = setup(kind, on_connect="hold")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(engine.connect(PEER, 7), 0.01)
        await settle()
        assert fake.ops() == [CommandOp.CONNECT, CommandOp.ABORT]
        assert fake.conns == {}
    asyncio.run(main())


@both
def test_api_reset_during_read_and_write(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        cid = conn.conn_id
        fake.peer_send(cid, b"before")
        reader = asyncio.ensure_future(conn.readexactly(100))
        await settle()
        assert not reader.done()
        fake.peer_reset(cid)
        with pytest.raises(ConnectionResetError):
            await reader
        with pytest.raises(ConnectionResetError):
            conn.write(b"x")
        with pytest.raises(ConnectionResetError):
            await conn.read()
        assert conn.state == ConnState.CLOSED
        await conn.close()  # releases the id (ABORT)
        await conn.wait_closed()
        assert fake.ops(cid)[-1] == CommandOp.ABORT and fake.violations == []
    asyncio.run(main())


@both
def test_api_data_before_reset_is_read_first(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        fake.peer_send(conn.conn_id, b"last words")
        fake.peer_reset(conn.conn_id)
        await settle()
        assert await conn.read(100) == b"last words"
        with pytest.raises(ConnectionResetError):
            await conn.read(100)
    asyncio.run(main())


@both
def test_api_timeout_during_read(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        reader = asyncio.ensure_future(conn.read(10))
        await settle()
        fake.time_out(conn.conn_id)
        with pytest.raises(TimeoutError):
            await reader
        with pytest.raises(TimeoutError):
            await conn.drain()
    asyncio.run(main())


@both
def test_api_readexactly_incomplete(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        fake.peer_send(conn.conn_id, b"abc")
        fake.peer_fin(conn.conn_id)
        with pytest.raises(IncompleteReadError) as info:
            await conn.readexactly(5)
        assert info.value.partial == b"abc" and info.value.expected == 5
        assert isinstance(info.value, EOFError)
    asyncio.run(main())


@both
def test_api_readline(kind):
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        fake.peer_send(conn.conn_id, b"one\ntw")
        assert await conn.readline() == b"one\n"
        fake.peer_send(conn.conn_id, b"o\nthree")
        assert await conn.readuntil(b"\n") == b"two\n"
        fake.peer_fin(conn.conn_id)
        assert await conn.readline() == b"three"
        assert await conn.readline() == b""
    asyncio.run(main())


@both
def test_api_listener_backlog_and_accept(kind):
    async def main():
        engine, fake = setup(kind, rx_buffer=1000)
        listener = await engine.listen(8080, backlog=2)
        a = fake.incoming(8080, remote_port=1001)
        b = fake.incoming(8080, remote_port=1002)
        assert fake.incoming(8080, remote_port=1003) is None  # backlog full
        fake.peer_send(a, b"early data")  # credit is granted before accept()
        await settle()
        assert listener.pending == 2
        first = await listener.accept()
        assert (first.conn_id, first.remote_port, first.local_port) == (a, 1001, 8080)
        assert first.remote_addr == PEER
        assert fake.conns[a].accepted
        assert await first.readexactly(10) == b"early data"
        c = fake.incoming(8080, remote_port=1003)  # a backlog place is free again
        assert c is not None
        assert [(await listener.accept()).conn_id for _ in range(2)] == [b, c]
        waiter = asyncio.ensure_future(listener.accept())
        await settle()
        assert not waiter.done()
        await listener.close()
        with pytest.raises(OSError):
            await waiter
        assert CommandOp.UNLISTEN in fake.ops() and 8080 not in fake.listeners
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_listen_port_in_use(kind):
    async def main():
        engine, fake = setup(kind)
        fake.listeners[8081] = [1, 0]  # someone else listens there
        with pytest.raises(EngineError) as info:
            await engine.listen(8081)
        assert info.value.code == ErrorCode.PORT_IN_USE
        assert engine.protocol.listener(8081) is None
    asyncio.run(main())


@both
def test_api_unaccepted_connections_released_on_listener_close(kind):
    async def main():
        engine, fake = setup(kind)
        listener = await engine.listen(80, backlog=4)
        a = fake.incoming(80)
        await settle()
        await listener.close()
        await settle()
        assert fake.ops(a) == [CommandOp.CREDIT, CommandOp.ACCEPT, CommandOp.ABORT]
        assert fake.conns == {} and fake.violations == []
    asyncio.run(main())


@both
def test_api_async_iteration_of_a_listener(kind):
    async def main():
        engine, fake = setup(kind)
        listener = await engine.listen(80)
        for port in (1, 2):
            fake.incoming(80, remote_port=port)
        got = []
        async for conn in listener:
            got.append(conn.remote_port)
            if len(got) == 2:
                await listener.close()
        assert got == [1, 2]
    asyncio.run(main())


@both
def test_api_tx_flow_control(kind):
    async def main():
        engine, fake = setup(kind, auto_ack=False)
        conn = await engine.connect(PEER, 7)
        cid = conn.conn_id
        data = random.Random(4).randbytes(1000)
        conn.set_write_buffer_limits(high=100, low=10)
        conn.write(data)
        drained = asyncio.ensure_future(conn.drain())
        acked = asyncio.ensure_future(conn.wait_acked())
        await settle()
        fc = fake.conns[cid]
        assert len(fc.tx_data) == 64 and not drained.done()  # one send credit's worth
        while not acked.done():
            assert fc.unacked <= CONFIG.tx_ring_bytes
            if fc.unacked:
                fake.peer_ack(cid, min(fc.unacked, 24))
            await settle(5)
        assert drained.done()
        await drained
        assert bytes(fc.tx_data) == data
        assert conn.stats.bytes_acked == 1000 and fake.violations == []
    asyncio.run(main())


@both
def test_api_rx_flow_control(kind):
    async def main():
        engine, fake = setup(kind, rx_buffer=1000, max_delivery=77)
        conn = await engine.connect(PEER, 7)
        data = random.Random(5).randbytes(10_000)
        fake.peer_send(conn.conn_id, data)
        fake.peer_fin(conn.conn_id)
        got = bytearray()
        while chunk := await conn.read(300):
            got += chunk
            stats = conn.stats
            # Credit outstanding + bytes buffered never exceed the receive buffer.
            assert stats.credit_granted - stats.bytes_consumed <= 1000
            assert stats.rx_overrun == 0
        assert got == data
        assert fake.ops(conn.conn_id).count(CommandOp.CREDIT) > 10
    asyncio.run(main())


@both
def test_api_read_all_until_eof(kind):
    async def main():
        engine, fake = setup(kind, rx_buffer=256)
        conn = await engine.connect(PEER, 7)
        data = bytes(range(256)) * 10
        fake.peer_send(conn.conn_id, data)
        fake.peer_fin(conn.conn_id)
        assert await conn.read() == data
    asyncio.run(main())


@both
def test_api_shutdown_is_a_half_close(kind):
    async def main():
        engine, fake = setup(kind, auto_ack=False)
        conn = await engine.connect(PEER, 7)
        cid = conn.conn_id
        conn.write(bytes(100))
        shut = asyncio.ensure_future(conn.shutdown())
        await settle()
        assert not shut.done() and not fake.conns[cid].shut
        fake.peer_ack(cid, 64)
        await shut
        # The FIN follows exactly the 100 bytes written, from the in-band marker.
        assert fake.conns[cid].shut and fake.conns[cid].fin_at == 100
        assert len(fake.conns[cid].tx_data) == 100
        assert CommandOp.SHUTDOWN not in fake.ops()
        assert conn.state == ConnState.FIN_WAIT
        with pytest.raises(BrokenPipeError):
            conn.write(b"more")
        fake.peer_send(cid, b"the reply")
        fake.peer_fin(cid)
        assert await conn.read() == b"the reply"
        assert conn.state == ConnState.CLOSING
        fake.peer_ack(cid, 36)
        await conn.wait_acked()
        fake.finish_close(cid)
        await settle()
        assert conn.state == ConnState.CLOSED
        await conn.close()
        await conn.wait_closed()
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_close_waits_for_credit_then_closes(kind):
    async def main():
        engine, fake = setup(kind, auto_ack=False)
        conn = await engine.connect(PEER, 7)
        cid = conn.conn_id
        conn.write(bytes(100))
        closing = asyncio.ensure_future(conn.close())
        await settle()
        assert not closing.done()
        with pytest.raises(OSError):
            conn.write(b"x")
        with pytest.raises(OSError):
            await conn.read(1)
        fake.peer_ack(cid, 64)
        await closing
        fc = fake.conns[cid]
        assert fake.ops(cid)[-1] == CommandOp.CLOSE and fc.close_value == 1
        assert len(fc.tx_data) == 100 and fc.shut and fc.fin_at == 100
        assert fake.violations == []
    asyncio.run(main())


@both
def test_api_abort(kind):
    async def main():
        engine, fake = setup(kind, auto_ack=False)
        conn = await engine.connect(PEER, 7)
        conn.write(bytes(500))
        conn.abort()
        await conn.wait_closed()
        assert fake.ops(conn.conn_id)[-1] == CommandOp.ABORT
        assert conn.state == ConnState.RELEASED and conn.stats.bytes_discarded > 0
        conn.abort()  # no-op
        with pytest.raises(OSError):
            conn.write(b"x")
    asyncio.run(main())


@both
def test_api_context_manager_closes(kind):
    async def main():
        engine, fake = setup(kind)
        async with await engine.connect(PEER, 7) as conn:
            conn.write(b"bye")
        assert fake.ops(conn.conn_id)[-1] == CommandOp.CLOSE
        with pytest.raises(RuntimeError):
            async with await engine.connect(PEER, 7) as conn2:
                raise RuntimeError
        await settle()
        assert conn2.state == ConnState.RELEASED
    asyncio.run(main())


@both
def test_api_many_connections_framing_echo(kind):
    async def main():
        engine, fake = setup(kind, echo=True, rx_buffer=512, max_delivery=37)
        conns = [await engine.connect(PEER, 7) for _ in range(4)]
        assert len({c.local_port for c in conns}) == 4
        rng = random.Random(6)

        async def talk(conn, n):
            messages = [rng.randbytes(rng.randrange(0, 300)) for _ in range(n)]
            for m in messages:
                await send_message(conn, m)
            for m in messages:
                assert await recv_message(conn) == m
            return n
        assert await asyncio.gather(*(talk(c, 20) for c in conns)) == [20] * 4
        assert fake.violations == []
    asyncio.run(main())


def test_api_run_pumps_writes_without_awaits():
    async def main():
        engine, fake = setup("async")
        pump = asyncio.ensure_future(engine.run())
        conn = await engine.connect(PEER, 7)
        conn.write(b"fire and forget")
        await settle()
        assert bytes(fake.conns[conn.conn_id].tx_data) == b"fire and forget"
        pump.cancel()
    asyncio.run(main())


def test_api_sync_transport_hands_writes_over_at_once():
    async def main():
        engine, fake = setup("sync")
        conn = await engine.connect(PEER, 7)
        conn.write(b"now")
        assert bytes(fake.conns[conn.conn_id].tx_data) == b"now"
    asyncio.run(main())


# ====================================================================== no asyncio


class MiniEvent:
    """An event for :class:`MiniLoop` (same interface as asyncio.Event)."""

    def __init__(self, loop: MiniLoop):
        self.loop = loop
        self._set = False
        self.waiters: list = []

    def set(self) -> None:
        self._set = True
        self.loop.ready.extend(self.waiters)
        self.waiters.clear()

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self):
        return _MiniWait(self)


class _MiniWait:
    def __init__(self, event: MiniEvent):
        self.event = event

    def __await__(self):
        if not self.event.is_set():
            yield self.event


class MiniLoop:
    """A scheduler of a dozen lines: tasks park on MiniEvents, nothing else."""

    def __init__(self):
        self.ready: deque = deque()
        self.results: dict = {}

    def spawn(self, coro) -> None:
        self.ready.append(coro)

    def run(self, main):
        self.spawn(main)
        while self.ready:
            task = self.ready.popleft()
            try:
                event = task.send(None)
            except StopIteration as stop:
                self.results[task] = stop.value
                continue
            event.waiters.append(task)
        return self.results[main]


class CoroutineTransport(SyncTransport):
    """Coroutine send functions that need no particular event loop."""

    async def send_commands(self, commands: list[int]) -> None:
        super().send_commands(commands)

    async def send_tx_beats(self, beats: list[int]) -> None:
        super().send_tx_beats(beats)


@pytest.mark.parametrize("transport", [SyncTransport, CoroutineTransport])
def test_api_runs_without_asyncio(transport):
    loop = MiniLoop()
    fake = FakeEngine(CONFIG, echo=True)
    engine = Engine(transport(fake, make_event=lambda: MiniEvent(loop)), CONFIG)

    async def main():
        conn = await engine.connect(PEER, 7)
        conn.write(b"ping")
        await conn.drain()
        reply = await conn.readexactly(4)
        await conn.shutdown()
        fake.peer_fin(conn.conn_id)
        rest = await conn.read()
        await conn.close()
        fake.finish_close(conn.conn_id)
        await conn.wait_closed()
        return reply, rest, str(conn.state)

    assert loop.run(main()) == (b"ping", b"", "RELEASED")
    assert fake.violations == []


def test_api_module_does_not_import_asyncio():
    import ast

    import toe.host.api as api_module
    tree = ast.parse(open(api_module.__file__).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert "asyncio" not in imported and "cocotb" not in imported


def test_key_register_writes():
    """The key writes target hdl/csr_map.py's key registers, little-endian words, the word
    that loads each key last (RFC 6528 s3: the ISN key; the lookup hash key)."""
    from toe.hdl.csr_map import REGISTERS, key_register_writes

    isn_key = bytes(range(16))
    hash_key = bytes(range(100, 112))
    writes = key_register_writes(isn_key, hash_key)
    addresses = [a for a, _ in writes]
    assert addresses[3] == REGISTERS["isn_key3"][0] and addresses[-1] == REGISTERS["hash_key2"][0]
    isn_words = dict(writes[:4])
    assert b"".join(isn_words[REGISTERS[f"isn_key{i}"][0]].to_bytes(4, "little")
                    for i in range(4)) == isn_key
    assert b"".join(v.to_bytes(4, "little") for _, v in writes[4:]) == hash_key
    with pytest.raises(ValueError):
        key_register_writes(bytes(15), hash_key)


def test_tx_writes_are_the_beats_unpacked():
    """``tx_writes_to_send`` (whole writes, for transports that pack beats themselves)
    hands over exactly what ``tx_beats_to_send`` would: the same bytes within the same
    credit, MSS-sized writes, and the end-of-stream marker as an empty write."""
    config = ToeConfig(mtu=100, tx_ring_bytes=256)  # MSS 60
    data = bytes(random.Random(4).randrange(256) for _ in range(300))
    beat_proto, beat_wire = make_proto(config)
    write_proto, _ = make_proto(config)
    for proto in (beat_proto, write_proto):
        open_active(proto, beat_wire, conn=1)
        proto.send(1, data)
        proto.shutdown(1)
    by_beats = beat_wire.writes(beat_proto.tx_beats_to_send())
    by_writes = write_proto.tx_writes_to_send()
    assert [len(d) for _, d in by_writes] == [60, 60, 60, 60, 16]  # 256 bytes of credit
    assert by_beats == [(c, d) for c, d in by_writes]
    beat_proto.event_received(beat_wire.event(EventKind.ACKED, conn=1, value=256))
    write_proto.event_received(beat_wire.event(EventKind.ACKED, conn=1, value=256))
    assert beat_wire.writes(beat_proto.tx_beats_to_send()) == [(1, data[256:]), (1, None)]
    assert write_proto.tx_writes_to_send() == [(1, data[256:]), (1, b"")]
    for proto in (beat_proto, write_proto):
        stats = proto.connection(1).stats
        assert (stats.bytes_sent, stats.tx_writes) == (300, 6)
        assert proto.connection(1).machine.send is SendSide.FIN_SENT and not proto.has_output()


def test_rx_data_runs_equal_beats():
    """``rx_data_received`` (runs of beats already unpacked) delivers and counts as
    the beats do: one delivery per run ending with ``last``, overrun beyond credit."""
    proto, wire = make_proto(rx_buffer=16)
    open_active(proto, wire, conn=2)
    proto.rx_data_received(2, b"abcdefghij", False)
    assert events(proto) == []
    proto.rx_data_received(2, b"klmnopqrst", True)
    assert events(proto) == [DataReceived(2, b"abcdefghijklmnopqrst")]
    stats = proto.connection(2).stats
    assert (stats.rx_deliveries, stats.rx_overrun, stats.bytes_received) == (1, 4, 20)
    proto.rx_data_received(9, b"nobody", True)  # no such connection: dropped, counted
    assert proto.dropped_rx_beats == 1


@both
def test_api_socket_options_send_set_option(kind):
    """``set_nodelay``, ``set_keepalive`` and ``set_congestion`` are SET_OPTION commands
    (hdl/host_if.py SocketOption): keep-alive times in timestamp-clock ticks of 1.024
    ms, the interval and count before the idle time that turns probing on; ``idle=None``
    turns it off; a count outside 1..15, or an algorithm the build lacks, is refused
    before anything is sent."""
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        cid = next(iter(fake.conns))
        fake.commands.clear()
        conn.set_nodelay()
        conn.set_keepalive(idle=60, interval=10, count=3)
        conn.set_keepalive(None)
        with pytest.raises(ValueError):
            conn.set_keepalive(count=16)
        conn.set_congestion("newreno")  # the build's only algorithm: index 0
        with pytest.raises(ValueError, match="not in this build"):
            conn.set_congestion("cubic")
        await conn.drain()  # hands the commands over (async transports)
        await settle()
        options = [(c[3], c[5]) for c in fake.commands if c[0] == CommandOp.SET_OPTION]
        assert all(c[1] == cid for c in fake.commands if c[0] == CommandOp.SET_OPTION)
        assert options == [(SocketOption.NODELAY.value, 1),
                           (SocketOption.KEEPALIVE_INTERVAL.value, 9766),
                           (SocketOption.KEEPALIVE_COUNT.value, 3),
                           (SocketOption.KEEPALIVE_IDLE.value, 58594),
                           (SocketOption.KEEPALIVE_IDLE.value, 0),
                           (SocketOption.CONGESTION.value, 0)]
    asyncio.run(main())


@both
def test_api_tcp_info_reads_every_field(kind):
    """``tcp_info()`` sends one GET_INFO per InfoField (hdl/host_if.py), each with its
    own tag, and gathers the INFO answers into a TcpInfo; a field that does not exist
    is refused before anything is sent."""
    async def main():
        engine, fake = setup(kind)
        conn = await engine.connect(PEER, 7)
        cid = next(iter(fake.conns))
        info = await conn.tcp_info()
        assert info.cwnd == 1000 * cid + InfoField.CWND.value
        assert info.retransmits == 1000 * cid + InfoField.RETRANSMITS.value
        assert info.options == 1000 * cid + InfoField.OPTIONS.value
        asks = [c for c in fake.commands if c[0] == CommandOp.GET_INFO]
        assert sorted(c[3] for c in asks) == [f.value for f in InfoField]
        assert len({c[2] for c in asks}) == len(InfoField)
        with pytest.raises(ValueError):
            engine.protocol.get_info(cid, 99)  # no such field: nothing is sent
        assert engine.protocol.pending_requests() == {} and fake.violations == []
    asyncio.run(main())
