"""The driver's connection machine (host/connection.py): its transition tables, the
exceptions of each ending, and the machine as the protocol core drives it."""

from __future__ import annotations

import errno
import itertools

import pytest
from test_host_protocol import PEER, events, make_proto, open_active

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.host.connection import (
    TRANSITIONS,
    ConnectionMachine,
    ConnState,
    Ending,
    EngineError,
    IllegalTransition,
    Opening,
    ReceiveSide,
    Release,
    SendSide,
    ending_exception,
)

ENUMS = (Opening, SendSide, ReceiveSide, Release, Ending)


# ====================================================================== endings


@pytest.mark.parametrize(("ending", "kind", "code"), [
    (Ending.RESET, ConnectionResetError, errno.ECONNRESET),
    (Ending.REFUSED, ConnectionRefusedError, errno.ECONNREFUSED),
    (Ending.TIMED_OUT, TimeoutError, errno.ETIMEDOUT),
    (Ending.ABORTED, OSError, errno.EBADF),
])
def test_each_ending_maps_to_its_exception(ending, kind, code):
    exc = ending_exception(ending, 3)
    assert type(exc) is kind and exc.errno == code and "connection 3" in str(exc)


def test_failed_maps_to_the_engine_error():
    exc = ending_exception(Ending.FAILED, 3, ErrorCode.TX_OVERFLOW)
    assert isinstance(exc, EngineError) and exc.code == ErrorCode.TX_OVERFLOW
    assert exc.errno == errno.ENOBUFS


@pytest.mark.parametrize("ending", [Ending.NOT_ENDED, Ending.CLOSED])
def test_no_exception_while_open_or_after_a_clean_close(ending):
    assert ending_exception(ending, 3) is None


def test_every_ending_is_mapped():
    for ending in Ending:
        code = ErrorCode.RESET if ending is Ending.FAILED else None
        ending_exception(ending, 0, code)  # no ValueError


def test_machine_exception_follows_its_ending():
    m = ConnectionMachine(Opening.CONNECTING)
    assert m.exception(1) is None
    m.end(Ending.TIMED_OUT)
    assert isinstance(m.exception(1), TimeoutError)


# ====================================================================== transitions


def test_tables_cover_every_state():
    for kind in ENUMS:
        assert set(TRANSITIONS[kind]) == set(kind)
        for targets in TRANSITIONS[kind].values():
            assert all(isinstance(t, kind) for t in targets)


@pytest.mark.parametrize("kind", ENUMS)
def test_moves_obey_the_table(kind):
    """From every state to every state: allowed exactly when the table says so."""
    field = {Opening: "opening", SendSide: "send", ReceiveSide: "receive",
             Release: "release", Ending: "ending"}[kind]
    for now, to in itertools.product(kind, kind):
        m = ConnectionMachine(Opening.CONNECTING)
        setattr(m, field, now)
        if to in TRANSITIONS[kind][now]:
            m._move(to)
            assert getattr(m, field) is to
        else:
            with pytest.raises(IllegalTransition):
                m._move(to)
            assert getattr(m, field) is now


def test_a_connection_starts_connecting_or_queued():
    for opening in (Opening.CONNECTED, Opening.ACCEPTED, Opening.UNCLAIMED):
        with pytest.raises(IllegalTransition):
            ConnectionMachine(opening)


def test_an_ending_is_set_once():
    m = ConnectionMachine(Opening.CONNECTING)
    m.end(Ending.RESET)
    for ending in Ending:
        with pytest.raises(IllegalTransition):
            m.end(ending, ErrorCode.RESET if ending is Ending.FAILED else None)
    assert m.ending is Ending.RESET and m.dead


def test_failed_and_only_failed_carries_a_code():
    m = ConnectionMachine(Opening.CONNECTING)
    with pytest.raises(IllegalTransition):
        m.end(Ending.FAILED)
    with pytest.raises(IllegalTransition):
        m.end(Ending.RESET, ErrorCode.RESET)
    with pytest.raises(IllegalTransition):
        m.end(Ending.NOT_ENDED)
    m.end(Ending.FAILED, ErrorCode.UNKNOWN_CONN)
    assert m.code == ErrorCode.UNKNOWN_CONN and m.dead


def test_illegal_moves_are_rejected():
    m = ConnectionMachine(Opening.CONNECTING)
    with pytest.raises(IllegalTransition):
        m.accept()  # an active open has no accept queue
    with pytest.raises(IllegalTransition):
        m.send_fin()  # no shutdown requested
    with pytest.raises(IllegalTransition):
        m.send_close()  # nobody let go of the id
    with pytest.raises(IllegalTransition):
        m.send_abort()
    with pytest.raises(IllegalTransition):
        m.deliver_eof()  # no PEER_FIN
    m.see_peer_fin(10)
    with pytest.raises(IllegalTransition):
        m.see_peer_fin(10)
    m.establish()
    with pytest.raises(IllegalTransition):
        m.establish()
    m.request_release()
    m.send_abort()
    with pytest.raises(IllegalTransition):
        m.request_shutdown()  # the stream ended with ABORT
    with pytest.raises(IllegalTransition):
        m.send_abort()
    m.engine_released()
    with pytest.raises(IllegalTransition):
        m.engine_released()
    with pytest.raises(IllegalTransition):
        m.request_release()


def test_idempotent_requests():
    m = ConnectionMachine(Opening.QUEUED)
    m.request_shutdown()
    m.request_shutdown()
    assert m.send is SendSide.SHUTDOWN_REQUESTED
    m.send_fin()
    m.request_shutdown()  # shutdown() after the FIN went out: nothing to do
    assert m.send is SendSide.FIN_SENT
    m.request_release()
    m.send_close()
    m.request_release()  # abort() after close(): the hold is already given up
    assert m.release is Release.SENT
    m.send_abort()  # ABORT after CLOSE
    assert (m.send, m.release) == (SendSide.ABORT_SENT, Release.SENT)


def test_queued_passive_open():
    m = ConnectionMachine(Opening.QUEUED)
    assert m.established
    m.unclaim()
    with pytest.raises(IllegalTransition):
        m.accept()


# ====================================================================== in the core


def test_the_machine_through_an_active_close():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    m = proto.connection(1).machine
    assert (m.opening, m.send, m.receive, m.release, m.ending) == (
        Opening.CONNECTED, SendSide.OPEN, ReceiveSide.OPEN, Release.HELD, Ending.NOT_ENDED)
    proto.send(1, b"abc")
    proto.shutdown(1)
    assert m.send is SendSide.SHUTDOWN_REQUESTED
    proto.tx_beats_to_send()
    assert m.send is SendSide.FIN_SENT
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=2))
    assert m.receive is ReceiveSide.PEER_FIN and m.peer_fin_len == 2
    for beat in wire.beats(1, b"hi"):
        proto.rx_beat_received(beat)
    assert m.receive is ReceiveSide.EOF
    proto.event_received(wire.event(EventKind.CLOSED, conn=1))
    assert m.ending is Ending.CLOSED and not m.dead
    proto.close(1)
    assert m.release is Release.SENT
    proto.event_received(wire.event(EventKind.RELEASED, conn=1))
    assert m.released


def test_passive_open_accepted_then_reset():
    proto, wire = make_proto()
    tag = proto.listen(80)
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    proto.event_received(wire.event(EventKind.ACCEPTED, conn=3, port=80, addr=1,
                                    remote_port=9))
    m = proto.connection(3).machine
    assert m.opening is Opening.QUEUED
    assert proto.accept(80) == 3
    assert m.opening is Opening.ACCEPTED
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=3))
    assert m.ending is Ending.RESET and proto.connection(3).state == ConnState.CLOSED
    with pytest.raises(ConnectionResetError):
        proto.send(3, b"x")
    proto.close(3)
    assert (m.send, m.release) == (SendSide.ABORT_SENT, Release.SENT)


def test_reset_while_queued_is_accepted_and_released_by_the_core():
    proto, wire = make_proto()
    tag = proto.listen(80)
    proto.event_received(wire.event(EventKind.LISTENING, tag=tag, port=80))
    proto.event_received(wire.event(EventKind.ACCEPTED, conn=3, port=80, addr=1,
                                    remote_port=9))
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=3))
    m = proto.connection(3).machine
    assert (m.opening, m.send, m.release) == (
        Opening.ACCEPTED, SendSide.ABORT_SENT, Release.SENT)
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ACCEPT, 3), (CommandOp.ABORT, 3)]


def test_engine_events_that_do_not_fit_are_counted_not_raised():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    before = proto.unknown_events
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=1))  # a second one
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=0))
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=5))  # a second one
    assert proto.unknown_events == before + 2
    assert proto.connection(1).machine.peer_fin_len == 0
    assert proto.commands_to_send() == []  # no second grant


def test_abort_crossing_a_reset_keeps_the_first_ending():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.abort(1)
    m = proto.connection(1).machine
    assert m.ending is Ending.ABORTED
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.RESET, conn=1))
    assert m.ending is Ending.ABORTED
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]
    with pytest.raises(OSError) as info:
        proto.send(1, b"x")
    assert info.value.errno == errno.EBADF


def test_abort_after_the_close_handshake_keeps_closed():
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.shutdown(1)
    proto.tx_beats_to_send()
    proto.event_received(wire.event(EventKind.PEER_FIN, conn=1, value=0))
    proto.event_received(wire.event(EventKind.CLOSED, conn=1))
    proto.abort(1)
    m = proto.connection(1).machine
    assert m.ending is Ending.CLOSED and m.send is SendSide.ABORT_SENT
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 1)]


def test_cancelled_connect_is_released_when_the_id_comes():
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.cancel_connect(tag)
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    m = proto.connection(2).machine
    assert (m.opening, m.send, m.release) == (
        Opening.CONNECTING, SendSide.ABORT_SENT, Release.SENT)
    proto.event_received(wire.event(EventKind.ESTABLISHED, conn=2))
    assert m.opening is Opening.CONNECTED
    assert [type(e).__name__ for e in events(proto)] == ["Connecting"]  # no Connected
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 2)]
