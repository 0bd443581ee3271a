"""User calls: RFC 9293 s3.10.1-s3.10.6 as steps of the TCP engine.

The host's commands (:mod:`hdl.host_if`) and the two reports that stand for the RFC's
SEND and RECEIVE calls:

================================  ===================================================
RFC 9293                          engine step
================================  ===================================================
s3.10.1 OPEN (passive): LISTEN    ``cmd_decode`` (the listener table)
s3.10.1 OPEN (active): CONNECT    ``cmd_decode``, then :mod:`hdl.tcp.opening`
s3.10.2 SEND                      ``tx_written`` (the TX writer stored host bytes)
s3.10.3 RECEIVE                   ``cmd_on_tcb`` CREDIT, ``rx_delivered``
s3.10.4 CLOSE                     ``cmd_on_tcb`` SHUTDOWN and CLOSE, ``tx_written``
                                  (the end of the stream in band)
s3.10.5 ABORT                     ``cmd_on_tcb`` ABORT
s3.10.6 STATUS                    (the host reads counters and events instead)
================================  ===================================================
"""

from amaranth.hdl import Cat

from ..host_if import CommandOp, ErrorCode, EventKind, InfoField, SocketOption
from .congestion import algorithm_names
from .event_context import EventSlot
from .keepalive import rearm
from .rto import RTTVAR_FRAC_BITS, SRTT_FRAC_BITS
from .seq import seq_diff, seq_lt
from .states import SYNCHRONIZED, TcpState

__all__ = ["add_user_call_steps", "begin_close"]

S = TcpState


def begin_close(e):
    """CLOSE of RFC 9293 s3.10.4 (our SHUTDOWN): a FIN after the queued data."""
    m, t = e.m, e.t
    m.d.sync += [t.fin_queued.eq(1), e.do_limit.eq(1)]
    with m.Switch(t.state):
        with m.Case(S.ESTABLISHED):
            e.set_state(S.FIN_WAIT_1, S.ESTABLISHED, "s3.10.4 CLOSE, ESTABLISHED")
            e.enqueue()
        with m.Case(S.CLOSE_WAIT):
            e.set_state(S.LAST_ACK, S.CLOSE_WAIT, "s3.10.4 CLOSE, CLOSE-WAIT")
            e.enqueue()
        with m.Case(S.SYN_RECEIVED):
            # "If no SENDs have been issued ... form a FIN segment and send it, and
            # enter FIN-WAIT-1"; else after ESTABLISHED (the ACK step).
            with m.If(t.snd_end == t.snd_nxt):
                e.set_state(S.FIN_WAIT_1, S.SYN_RECEIVED, "s3.10.4 CLOSE, SYN-RECEIVED")
                e.enqueue()


def abort(e, code=None):
    """s3.10.5 ABORT: a reset in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2 and
    CLOSE-WAIT ("in CLOSING, LAST-ACK and TIME-WAIT ... delete the TCB"), then CLOSED;
    ``code``: also report RESET(code) to the host."""
    m, t = e.m, e.t
    with m.If(e.in_states(S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2,
                          S.CLOSE_WAIT)):
        e.send_reset()
    m.d.sync += [t.fin_queued.eq(1), e.do_limit.eq(1)]
    with m.If(t.state != S.CLOSED):
        e.to_closed((S.SYN_SENT, S.SYN_RECEIVED) + SYNCHRONIZED, "s3.10.5 ABORT")
        if code is not None:
            e.event(EventSlot.ENDING, EventKind.RESET, code)


def add_user_call_steps(e, listeners, ids, netmask, ip_addr):
    m, t, c = e.m, e.t, e.c

    with m.State("cmd_decode"):
        # Commands that need no TCB; the others go on to ``cmd_on_tcb``.
        match, match_index = listeners.match(c.port, "cmd_listener")
        free, free_index = listeners.free()
        m.d.sync += e.ev_listen.eq(1)
        m.next = "emit"
        with m.Switch(c.op):
            with m.Case(CommandOp.LISTEN):
                with m.If(c.port == 0):
                    e.error(ErrorCode.BAD_PORT)
                with m.Elif(match.any()):
                    e.error(ErrorCode.PORT_IN_USE)
                with m.Elif(~free.any()):
                    e.error(ErrorCode.NO_LISTENER_SLOT)
                with m.Else():
                    listeners.add(free_index, c.port, c.value[:16])
                    e.event(EventSlot.OPEN, EventKind.LISTENING)
                    # A listener is no TCB; the trace still shows CLOSED -> LISTEN.
                    m.d.sync += [e.trace_listen.eq(1), e.before.eq(S.CLOSED)]
                    e.set_state(S.LISTEN, S.CLOSED, "s3.10.1 OPEN, passive")
            with m.Case(CommandOp.UNLISTEN):
                with m.If(match.any()):
                    listeners.remove(match_index)
                    e.event(EventSlot.OPEN, EventKind.UNLISTENED)
                    m.d.sync += [e.trace_listen.eq(1), e.before.eq(S.LISTEN)]
                    e.set_state(S.CLOSED, S.LISTEN, "s3.10.4 CLOSE in LISTEN")
                with m.Else():
                    e.error(ErrorCode.NOT_LISTENING)
            with m.Case(CommandOp.CONNECT):
                # MUST-46: no OPEN to a broadcast or multicast address; RFC 1122
                # s3.2.1.3: 127/8 is never sent on a network; the engine's own address
                # is no peer.
                bad_address = ((c.addr == 0) | (c.addr[28:] == 0xE) | (c.addr[28:] == 0xF)
                               | ((c.addr | netmask) == 0xFFFF_FFFF)
                               | (c.addr[24:] == 127) | (c.addr == ip_addr))
                with m.If(bad_address):
                    e.error(ErrorCode.BAD_ADDRESS)
                with m.Elif((c.port == 0) | (c.value[:16] == 0)):
                    e.error(ErrorCode.BAD_PORT)
                with m.Elif(ids.available):
                    m.d.sync += e.cid.eq(ids.next_id)
                    m.d.comb += ids.take.eq(1)
                    m.next = "connect_tcb_read"
                with m.Else():
                    e.error(ErrorCode.NO_FREE_CONN)
            with m.Case(CommandOp.ACCEPT, CommandOp.SHUTDOWN, CommandOp.CLOSE,
                        CommandOp.ABORT, CommandOp.CREDIT, CommandOp.SET_OPTION,
                        CommandOp.GET_INFO):
                m.d.sync += e.ev_listen.eq(0)
                m.next = "tcb_read"
            with m.Default():
                e.error(ErrorCode.BAD_COMMAND)

    with m.State("cmd_on_tcb"):
        m.next = "finish"
        with m.If(~t.owned):
            e.error(ErrorCode.UNKNOWN_CONN)
        with m.Else():
            with m.Switch(c.op):
                with m.Case(CommandOp.ACCEPT):
                    with m.If(~t.passive | t.accepted):
                        e.error(ErrorCode.BAD_STATE)
                    with m.Else():
                        m.d.sync += t.accepted.eq(1)
                        listeners.free_place(t.listener)
                with m.Case(CommandOp.CREDIT):
                    with m.If(~t.host_closed):
                        # The credit is kept whether or not a delivery can start now
                        # (none may while 15 are outstanding); a delivery takes its
                        # length off (the later assignment wins).
                        m.d.sync += t.rcv_credit.eq(t.rcv_credit + c.value)
                        e.deliver_more(t.rcv_credit + c.value)
                with m.Case(CommandOp.SET_OPTION):
                    with m.Switch(c.port):
                        with m.Case(SocketOption.QUICKACK):
                            m.d.sync += t.quickack.eq(c.value[0])
                            with m.If(c.value[0] & t.ack_pending & e.synchronized):
                                e.send_ack()  # what is owed goes now
                        with m.Case(SocketOption.KEEPALIVE_IDLE):
                            m.d.sync += t.ka_idle.eq(c.value)
                            rearm(e, c.value)
                        with m.Case(SocketOption.KEEPALIVE_INTERVAL):
                            m.d.sync += t.ka_intvl.eq(c.value)
                        with m.Case(SocketOption.KEEPALIVE_COUNT):
                            with m.If((c.value == 0) | (c.value > 15)):
                                e.error(ErrorCode.BAD_OPTION)
                            with m.Else():
                                m.d.sync += t.ka_count.eq(c.value)
                        with m.Case(SocketOption.CONGESTION):
                            # The new algorithm starts from no state of its own; cwnd
                            # and ssthresh stay (as Linux's TCP_CONGESTION).
                            with m.If(c.value >= len(algorithm_names(e.cfg))):
                                e.error(ErrorCode.BAD_OPTION)
                            with m.Else():
                                m.d.sync += [t.cc_algo.eq(c.value), t.cc_state.eq(0)]
                        with m.Case(SocketOption.TTL):
                            with m.If((c.value == 0) | (c.value > 255)):
                                e.error(ErrorCode.BAD_OPTION)
                            with m.Else():
                                m.d.sync += t.ttl.eq(c.value)
                        with m.Case(SocketOption.DSCP):
                            with m.If(c.value > 63):
                                e.error(ErrorCode.BAD_OPTION)
                            with m.Else():
                                m.d.sync += t.dscp.eq(c.value)
                        with m.Case(SocketOption.NODELAY):
                            m.d.sync += t.nodelay.eq(c.value[0])
                            with m.If(c.value[0]):
                                e.enqueue()  # what Nagle held goes now
                        with m.Default():
                            e.error(ErrorCode.BAD_OPTION)
                with m.Case(CommandOp.GET_INFO):
                    answer_info(e)
                with m.Case(CommandOp.SHUTDOWN):
                    with m.If(t.fin_queued):
                        e.error(ErrorCode.BAD_STATE)
                    with m.Else():
                        begin_close(e)
                with m.Case(CommandOp.CLOSE):
                    with m.If(t.host_closed):
                        e.error(ErrorCode.BAD_STATE)
                    with m.Elif(e.unread & e.synchronized & (t.state != S.TIME_WAIT)):
                        # SHLD-3 (RFC 2525 s2.17): CLOSE with received data the host
                        # has not taken resets the connection, so the peer knows the
                        # data was lost.
                        e.send_reset()
                        m.d.sync += [t.host_closed.eq(1), t.fin_queued.eq(1),
                                     t.rcv_credit.eq(0), e.do_limit.eq(1)]
                        e.to_closed(SYNCHRONIZED[:-1], "s3.10.4 CLOSE with unread data: "
                                    "SHLD-3")
                        e.event(EventSlot.ENDING, EventKind.CLOSED, ErrorCode.UNREAD_DATA)
                    with m.Else():
                        m.d.sync += [t.host_closed.eq(1), t.rcv_credit.eq(0)]
                        # value bit 0: the end of the stream comes in-band on the TX
                        # stream (after the data still on its way).
                        with m.If(~t.fin_queued & ~c.value[0]):
                            begin_close(e)
                        with m.If(t.state == S.SYN_SENT):
                            # s3.10.4: CLOSE in SYN-SENT deletes the TCB.
                            e.to_closed(S.SYN_SENT, "s3.10.4 CLOSE, SYN-SENT")
                        with m.If(t.state == S.FIN_WAIT_2):
                            e.start_timer(e.cfg.fin_wait_2_us)  # see hdl/config.py
                with m.Case(CommandOp.ABORT):
                    m.d.sync += t.host_closed.eq(1)
                    abort(e)

    with m.State("tx_written"):
        m.next = "finish"
        w = e.w_info
        with m.If(w.unknown | ~t.owned):
            e.error(ErrorCode.UNKNOWN_CONN)
        with m.Else():
            with m.If(w.shut):
                e.error(ErrorCode.TX_AFTER_SHUTDOWN)
            with m.Elif(w.overflow & (t.state != S.CLOSED)):
                # Bytes beyond the send credit were discarded: the stream can never be
                # whole again, so the connection is reset (the TX writer stores nothing
                # more of it; hdl/host_if.py).
                abort(e, ErrorCode.TX_OVERFLOW)
            with m.If(seq_lt(t.snd_end, w.end)):
                m.d.sync += t.snd_end.eq(w.end)
                e.enqueue()
            with m.If(w.fin & ~t.fin_queued & ~w.overflow):
                begin_close(e)

    with m.State("rx_delivered"):
        m.next = "finish"
        m.d.sync += t.dlv_out.eq(t.dlv_out - 1)
        with m.If(t.host_closed & (t.dlv_out == 1)):
            m.d.sync += t.rcv_read.eq(t.rcv_dlv)  # and what was discarded since
        with m.Else():
            m.d.sync += t.rcv_read.eq(e.d_end)
        # RFC 9293 s3.8.6.2.2: announce the opened window once it grew by
        # min(RCV.BUFF / 2, MSS) beyond what was advertised.
        with m.If(e.synchronized & ~t.fin_received
                  & e.window_grew((e.d_end + e.cfg.rx_ring_bytes)[:32])):
            e.enqueue()


def answer_info(e):
    """``GET_INFO``: one field of the TCB in an INFO event (tag and conn of the
    command), or ERROR(BAD_OPTION) for a field that does not exist."""
    m, t, c = e.m, e.t, e.c
    values = {
        InfoField.CWND: t.cwnd,
        InfoField.SSTHRESH: t.ssthresh,
        InfoField.SRTT_US: t.srtt[SRTT_FRAC_BITS:],
        InfoField.RTTVAR_US: t.rttvar[RTTVAR_FRAC_BITS:],
        InfoField.RTO_US: t.rto,
        InfoField.FLIGHT: seq_diff(t.snd_max, t.snd_una),
        InfoField.SND_WND: t.snd_wnd,
        InfoField.RCV_WND: e.rcv_wnd_now,
        InfoField.RETRANSMITS: t.retransmits,
        InfoField.SND_MSS: t.snd_mss,
        InfoField.STATE: t.state.as_value(),
        InfoField.OPTIONS: Cat(t.ws_ok, t.ts_ok, t.sack_ok, 0, t.snd_shift, t.rcv_shift),
        InfoField.CONGESTION: t.cc_algo,
    }
    with m.Switch(c.port):
        for field, value in values.items():
            with m.Case(field):
                e.event(EventSlot.OPEN, EventKind.INFO, value=value)
        with m.Default():
            e.error(ErrorCode.BAD_OPTION)
