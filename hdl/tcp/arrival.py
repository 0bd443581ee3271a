"""Segment arrival: RFC 9293 s3.10.7 as steps of the TCP engine.

Index of the RFC's steps and the engine's steps that carry them out:

=====================================  ==============================================
RFC 9293                               engine step
=====================================  ==============================================
socket pair lookup                     ``seg_lookup``, ``seg_lookup_wait``
s3.9.2.2 ICMP errors                   ``icmp_check`` (:mod:`hdl.tcp.icmp_errors`)
s3.10.7.1 CLOSED (no connection)       ``seg_no_conn`` -> ``seg_to_reset`` (TcpReset)
s3.10.7.2 LISTEN                       ``seg_no_conn`` (first..fourth), then the
                                       passive open of :mod:`hdl.tcp.opening`
s3.10.7.3 SYN-SENT                     ``seg_in_syn_sent``
s3.10.7.4 first, sequence number       ``seg_check_seq``
s3.10.7.4 second, RST bit              ``seg_check_rst``
s3.10.7.4 third, security              (no security compartments)
s3.10.7.4 fourth, SYN bit              ``seg_check_syn``
s3.10.7.4 fifth, ACK field             ``seg_check_ack``, ``rtt_sample``, ``rtt_wait``
s3.10.7.4 sixth, URG bit               (urgent data is not supported)
s3.10.7.4 seventh, segment text        ``seg_text`` (and the FIN-acked state changes
                                       of the fifth step) .. ``seg_text_store``, with
                                       reassembly (:mod:`hdl.tcp.reassembly`)
s3.10.7.4 eighth, FIN bit              ``seg_fin``
=====================================  ==============================================

RFC 5961 (s3.2 RST, s4.2 SYN, s5.2 ACK) replaces parts of the second, fourth and fifth
steps: a challenge ACK instead of acting on a segment that could be blind.
"""

from amaranth.hdl import Const, Mux, Signal

from ..host_if import ErrorCode, EventKind
from ..proto import ipv4, tcp
from ..rx.meta import Verdict
from .conn_table import ConnTableOp
from .event_context import TS_RECENT_MAX_AGE, TS_TICK_BITS, EventSlot
from .keepalive import rearm
from .reassembly import add_text_steps
from .recovery import classify_ack, on_open
from .scoreboard import begin_merge, note_first_block
from .seq import seq_diff, seq_le, seq_lt
from .states import SYNCHRONIZED, TcpState

__all__ = ["add_arrival_steps"]

S = TcpState


def add_arrival_steps(e, lookup, listeners, ids, rtt, challenge_ack, oow_ack):
    """The steps of segment arrival, into the engine's FSM (``e``: the EventContext)."""
    m, cfg, t, s = e.m, e.cfg, e.t, e.s
    f_fin, f_syn, f_rst, f_ack = e.f_fin, e.f_syn, e.f_rst, e.f_ack
    two_msl = 2 * cfg.msl_us

    def ts_rtt():
        """RFC 7323 s4.1: an ACK of new data echoing a timestamp measures the round trip
        of the segment that carried it, retransmitted or not (RFC 6298 s3 allows it)."""
        o = s.tcp_options
        # (Not the ACK of a SYN cookie: its TSecr echoes a TSval whose low bits were
        # options, not time.)
        echoed = t.ts_ok & o.ts_valid & (o.ts_ecr != 0) & ~e.cookie_open
        m.d.sync += [e.rtt_by_ts.eq(echoed), e.rtt_ticks.eq(seq_diff(e.ts_now, o.ts_ecr))]
        return echoed

    with m.State("seg_lookup"):
        e.request_lookup(ConnTableOp.LOOKUP, s.ip_src, s.tcp_sport, s.tcp_dport)
        with m.If(lookup.request.ready):
            m.next = "seg_lookup_wait"

    with m.State("seg_lookup_wait"):
        m.d.comb += lookup.response.ready.eq(1)
        hits, index = listeners.match(s.tcp_dport, "seg_listener")
        m.d.sync += [e.listener.eq(index), e.l_hit.eq(hits.any())]
        with m.If(lookup.response.valid):
            with m.If(lookup.response.p.found):
                m.d.sync += e.cid.eq(lookup.response.p.conn_id)
                m.next = "tcb_read"
            with m.Elif(s.verdict == Verdict.ICMP_ERROR):
                e.count("tcp_icmp_no_conn")  # never answered (RFC 1122 s3.2.2)
                m.next = "emit"
            with m.Else():
                m.next = "seg_no_conn"

    with m.State("seg_no_conn"):
        # s3.10.7.2 LISTEN: first an RST is ignored (the reset handler never answers
        # one), second an ACK is answered with a reset, third a SYN opens a connection,
        # fourth anything else is dropped.  No listener: s3.10.7.1, a reset.  RFC 4987
        # s3.6: a SYN the listener cannot hold half-open gets a SYN cookie, and an ACK
        # may return one (hdl/tcp/syn_cookie.py); a full accept queue drops SYNs, as
        # Linux does.
        room = listeners.has_room(e.listener)
        with m.If(e.l_hit & ~f_rst & ~f_ack & ~f_syn):
            e.count("tcp_listen_drops")
            m.next = "emit"
        with m.Elif(e.l_hit & f_syn & ~f_rst & ~f_ack):
            with m.If(room & ids.available & listeners.has_half_open_room(e.listener)
                      & (cfg.syn_cookies != "always")):
                m.d.sync += e.cid.eq(ids.next_id)
                m.d.comb += ids.take.eq(1)
                m.next = "passive_tcb_read"
            with m.Elif(room & (cfg.syn_cookies != "off")):
                m.next = "cookie_synack_load"
            with m.Else():
                e.count("tcp_backlog_drops")
                m.next = "emit"
        with m.Elif(e.l_hit & f_ack & ~f_syn & ~f_rst & e.cookies_recent):
            m.next = "cookie_check_ask"
        with m.Else():
            m.next = "seg_to_reset"

    with m.State("seg_to_reset"):
        m.d.comb += [e.reset_meta.valid.eq(1), e.reset_meta.p.eq(s)]
        with m.If(e.reset_meta.ready):
            m.next = "emit"

    # Comparisons of the segment with the TCB that the later steps need, registered
    # here so that no step chains them after its own (seg_check_seq, seg_check_ack).
    ts_old = Signal()  # SEG.TSval < TS.Recent
    upto_ack_sent = Signal()  # SEG.SEQ =< Last.ACK.sent

    with m.State("seg_dispatch"):
        age = (e.ts_now[16:] - t.ts_recent_at)[:16]
        o = s.tcp_options
        e.measure_window()
        m.d.sync += [
            e.ts_stale.eq(age > TS_RECENT_MAX_AGE),
            ts_old.eq(seq_lt(o.ts_val, t.ts_recent)),
            upto_ack_sent.eq(seq_le(s.tcp_seq, t.ack_sent)),
            e.seg_wnd.eq(s.tcp_window << t.snd_shift),
            e.ack_floor.eq(t.snd_una - (Const(0xFFFF, 16) << t.snd_shift)),
        ]
        with m.If(s.verdict == Verdict.ICMP_ERROR):
            m.next = "icmp_check"  # hdl/tcp/icmp_errors.py
        with m.Elif(t.state == S.SYN_SENT):
            m.next = "seg_in_syn_sent"
        with m.Elif(t.state == S.CLOSED):
            # A stale table entry cannot exist (CLOSED deletes it); answer as for no
            # connection.
            m.d.sync += e.write_tcb.eq(0)
            m.next = "seg_to_reset"
        with m.Else():
            m.next = "seg_check_seq"

    with m.State("seg_in_syn_sent"):
        # s3.10.7.3.
        m.next = "finish"
        ack_ok = s.tcp_ack == t.snd_nxt  # SND.UNA < SEG.ACK =< SND.NXT, SND.UNA = ISS
        with m.If(f_ack & ~ack_ok):
            with m.If(~f_rst):
                m.d.sync += e.write_tcb.eq(0)
                m.next = "seg_to_reset"  # <SEQ=SEG.ACK><CTL=RST>
        with m.Elif(f_rst):
            with m.If(f_ack):
                # "error: connection reset" -- the peer refused (RFC 5961 s3).
                e.to_closed(S.SYN_SENT, "s3.10.7.3 second: RST with acceptable ACK")
                e.event(EventSlot.ENDING, EventKind.RESET, ErrorCode.REFUSED)
                e.count("tcp_resets_in")
        with m.Elif(f_syn):
            m.d.sync += [
                t.irs.eq(s.tcp_seq), t.rcv_nxt.eq(s.tcp_seq + 1),
                t.rcv_read.eq(s.tcp_seq + 1), t.rcv_dlv.eq(s.tcp_seq + 1),
                t.rcv_adv.eq(s.tcp_seq + 1),
                t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),  # not scaled
                t.max_wnd.eq(s.tcp_window),
                t.snd_wl2.eq(s.tcp_ack),
            ]
            e.agree_options()
            with m.If(f_ack):
                with m.If(t.fin_queued):
                    # SHUTDOWN came during SYN-SENT: the FIN goes out now.
                    e.set_state(S.FIN_WAIT_1, S.SYN_SENT,
                                "s3.10.7.3 fourth, with a CLOSE queued (s3.10.4)")
                    e.enqueue()
                with m.Else():
                    e.set_state(S.ESTABLISHED, S.SYN_SENT, "s3.10.7.3 fourth: SYN-ACK")
                m.d.sync += [t.snd_una.eq(s.tcp_ack), t.timer_on.eq(0), t.backoff.eq(0),
                             t.icmp_reported.eq(0)]
                e.syn_rto_floor()
                e.send_ack()
                e.event(EventSlot.OPEN, EventKind.ESTABLISHED)
                e.count("tcp_established")
                # "If there are other controls or text in the segment, then continue
                # processing at the sixth step" (s3.10.7.3).
                m.next = "seg_text"
                on_open(e)
                with m.If(t.rtt_active | ts_rtt()):
                    m.next = "rtt_sample"
            with m.Else():
                # Simultaneous open (s3.5 figure 8): SYN-RECEIVED, not passive.
                e.set_state(S.SYN_RECEIVED, S.SYN_SENT, "s3.10.7.3 fourth: SYN, figure 8")
                m.d.sync += t.rtt_active.eq(0)
                e.send(tcp.SYN | tcp.ACK_FLAG, t.iss, syn_options=1)

    with m.State("seg_check_seq"):
        # s3.10.7.4 first: the acceptability test, on the window we advertise.
        rcv_wnd = e.rcv_wnd
        seq_end = (s.tcp_seq + e.seg_len - 1)[:32]
        wnd_end = (t.rcv_nxt + rcv_wnd)[:32]
        start_in = seq_le(t.rcv_nxt, s.tcp_seq) & seq_lt(s.tcp_seq, wnd_end)
        end_in = seq_le(t.rcv_nxt, seq_end) & seq_lt(seq_end, wnd_end)
        acceptable = Mux(e.seg_len == 0,
                         Mux(rcv_wnd == 0, s.tcp_seq == t.rcv_nxt, start_in),
                         (rcv_wnd != 0) & (start_in | end_in))
        # RFC 7323 s5.3: PAWS before the acceptability test; R3, TS.Recent follows an
        # acceptable segment's TSval by the rule of s4.3.
        o = s.tcp_options
        # s5.5: after 24 days idle TS.Recent is invalid and an older TSval no reason
        # to drop the segment.
        paws_reject = t.ts_ok & ~f_rst & (~o.ts_valid | (ts_old & ~e.ts_stale))
        note_first_block(e)  # for seg_check_ack's duplicate ACKs (hdl/tcp/recovery.py)
        with m.If(acceptable & ~paws_reject & t.ts_ok & o.ts_valid & upto_ack_sent):
            e.take_ts_recent(o.ts_val)
        m.next = "finish"
        with m.If((t.state == S.SYN_RECEIVED) & f_syn & ~f_rst & ~f_ack
                  & (s.tcp_seq == t.irs)):
            # The peer retransmitted its SYN: our SYN-ACK was lost.
            e.send(tcp.SYN | tcp.ACK_FLAG, t.iss, syn_options=1)
        with m.Elif((t.state == S.SYN_RECEIVED) & ~t.passive & f_syn & f_ack & ~f_rst
                    & (s.tcp_seq == t.irs)):
            # Simultaneous open (s3.5 figure 8, line 5): the peer's SYN-ACK acknowledges
            # our SYN.  Its SYN is the one already received; the ACK completes the open
            # (fifth step), as in Linux and FreeBSD.
            m.next = "seg_check_ack"
        with m.Elif(paws_reject):
            # RFC 7323 s5.3 R1: an old duplicate: ACK (unless RST) and drop.  s3.2: once
            # timestamps are agreed, a non-RST segment without one is dropped silently.
            e.count("tcp_paws_drops")
            with m.If(o.ts_valid):
                oow_ack()
        with m.Elif(~acceptable):
            e.count("tcp_bad_seq")
            with m.If(~f_rst):
                oow_ack()
                # RFC 2883 s4.1.1: text wholly below RCV.NXT was received before.
                data_end = (e.data_seq + s.tcp_payload_len)[:32]
                with m.If((s.tcp_payload_len != 0) & seq_le(data_end, t.rcv_nxt)):
                    e.report_duplicate(e.data_seq, data_end)
                with m.If((t.state == S.TIME_WAIT) & f_fin):
                    # MUST-13: a retransmitted FIN restarts the 2 MSL wait.
                    e.start_timer(two_msl)
        with m.Elif(f_rst):
            m.next = "seg_check_rst"
        with m.Elif(f_syn):
            m.next = "seg_check_syn"
        with m.Elif(~f_ack):
            pass  # "if the ACK bit is off, drop the segment and return"
        with m.Else():
            m.next = "seg_check_ack"

    with m.State("seg_check_rst"):
        # s3.10.7.4 second, with RFC 5961 s3.2: reset only at exactly RCV.NXT, else a
        # challenge ACK.
        m.next = "finish"
        with m.If(s.tcp_seq == t.rcv_nxt):
            e.count("tcp_resets_in")
            e.to_closed((S.SYN_RECEIVED,) + SYNCHRONIZED, "s3.10.7.4 second, RFC 5961 s3.2")
            with m.If((t.state == S.SYN_RECEIVED) & t.passive):
                # MUST-10/11: back to LISTEN; the listener never lost its state.
                listeners.half_open_done(t.listener)
            with m.Elif(t.state == S.SYN_RECEIVED):
                e.event(EventSlot.ENDING, EventKind.RESET, ErrorCode.REFUSED)
            with m.Elif(t.owned):
                e.event(EventSlot.ENDING, EventKind.RESET, ErrorCode.RESET)
        with m.Else():
            challenge_ack()

    with m.State("seg_check_syn"):
        # s3.10.7.4 fourth, with RFC 5961 s4.2.
        m.next = "finish"
        with m.If((t.state == S.SYN_RECEIVED) & t.passive):
            e.to_closed(S.SYN_RECEIVED, "s3.10.7.4 fourth: SYN in SYN-RECEIVED of a passive "
                        "open, back to LISTEN")
            listeners.half_open_done(t.listener)
        with m.Else():
            challenge_ack()

    with m.State("seg_check_ack"):
        # s3.10.7.4 fifth, with RFC 5961 s5.2.
        m.next = "seg_text"
        ack = s.tcp_ack
        by_ts = ts_rtt()
        with m.If(t.state == S.SYN_RECEIVED):
            with m.If(e.ack_in_window(ack)):
                with m.If(t.fin_queued):
                    e.set_state(S.FIN_WAIT_1, S.SYN_RECEIVED,
                                "s3.10.7.4 fifth, with a CLOSE queued (s3.10.4)")
                    e.enqueue()
                with m.Else():
                    e.set_state(S.ESTABLISHED, S.SYN_RECEIVED, "s3.10.7.4 fifth")
                m.d.sync += [
                    t.snd_una.eq(ack), t.timer_on.eq(0), t.backoff.eq(0),
                    t.snd_wnd.eq(e.seg_wnd), t.snd_wl1.eq(s.tcp_seq),
                    t.max_wnd.eq(Mux(e.seg_wnd > t.max_wnd, e.seg_wnd, t.max_wnd)),
                    t.snd_wl2.eq(ack), t.owned.eq(1),
                ]
                e.syn_rto_floor()
                e.count("tcp_established")
                with m.If(t.passive):
                    listeners.established(t.listener)
                e.event(EventSlot.OPEN,
                        Mux(t.passive, EventKind.ACCEPTED, EventKind.ESTABLISHED))
                on_open(e)
                with m.If(t.rtt_active | by_ts):
                    m.next = "rtt_sample"
            with m.Else():
                m.d.sync += e.write_tcb.eq(0)
                m.next = "seg_to_reset"  # <SEQ=SEG.ACK><CTL=RST>
        with m.Elif(seq_lt(t.snd_max, ack)):
            # Acknowledges something not yet sent: ACK and drop.
            oow_ack()
            m.next = "finish"
        with m.Elif(seq_lt(ack, e.ack_floor)):
            # RFC 5961 s5.2: older than SND.UNA - MAX.SND.WND (here the largest window
            # the peer's shift can express).
            challenge_ack()
            m.next = "finish"
        with m.Else():
            classify_ack(e, ack, seq_lt(t.snd_una, ack))  # congestion (hdl/tcp/recovery.py)
            rearm(e)  # keep-alives (hdl/tcp/keepalive.py)
            with m.If(t.ecn_ok):
                # RFC 3168 s6.1.3: ECE on our ACKs from a CE mark until the peer's CWR
                # (a CE in the segment with the CWR starts it again).
                with m.If(s.tcp_flags[7]):
                    m.d.sync += t.ece_pending.eq(0)
                with m.If(s.ip_ecn == ipv4.CE):
                    m.d.sync += t.ece_pending.eq(1)
                    e.count("tcp_ecn_ce")
            with m.If(seq_lt(t.snd_una, ack)):
                data_from = Mux(seq_lt(t.snd_una, t.iss + 1), t.iss + 1, t.snd_una)[:32]
                data_to = Mux(seq_lt(t.snd_end, ack), t.snd_end, ack)
                acked = seq_diff(data_to, data_from)
                m.d.sync += [t.snd_una.eq(ack), t.backoff.eq(0), e.do_limit.eq(1),
                             t.icmp_reported.eq(0)]
                with m.If(~acked[31] & (acked != 0)):
                    e.event(EventSlot.ACKED, EventKind.ACKED, value=acked)
                with m.If(seq_lt(t.snd_nxt, ack)):
                    m.d.sync += t.snd_nxt.eq(ack)
                # RFC 6298 (5.2), (5.3).
                with m.If(ack == t.snd_max):
                    m.d.sync += t.timer_on.eq(0)
                with m.Else():
                    e.start_timer(t.rto)
                with m.If(seq_diff(t.snd_end, ack) != 0):
                    e.enqueue()
                with m.If((t.rtt_active & seq_le(t.rtt_seq, ack)) | by_ts):
                    m.next = "rtt_sample"
            # The SACK blocks into the scoreboard first (hdl/tcp/scoreboard.py).
            begin_merge(e, seq_lt(t.snd_una, ack)
                        & ((t.rtt_active & seq_le(t.rtt_seq, ack)) | by_ts))
            with m.If((ack == t.snd_una) & (s.tcp_window == 0)
                      & (t.backoff > cfg.r1_retries)):
                # The peer answers our zero-window probes: it is alive (RFC 9293
                # s3.8.6.1: no abort while probes are acknowledged).
                m.d.sync += t.backoff.eq(cfg.r1_retries)
            # Window update (s3.10.7.4, SND.WL1/SND.WL2 rule).
            with m.If(seq_lt(t.snd_wl1, s.tcp_seq)
                      | ((t.snd_wl1 == s.tcp_seq) & seq_le(t.snd_wl2, ack))):
                m.d.sync += [t.snd_wnd.eq(e.seg_wnd), t.snd_wl1.eq(s.tcp_seq),
                             t.snd_wl2.eq(ack)]
                with m.If(e.seg_wnd > t.max_wnd):
                    m.d.sync += t.max_wnd.eq(e.seg_wnd)
                with m.If((e.seg_wnd > t.snd_wnd) & (t.snd_end != t.snd_nxt)):
                    e.enqueue()

    with m.State("rtt_sample"):
        # Timestamp ticks to microseconds; a sample beyond 2**22 ticks (71 minutes)
        # saturates.
        ts_rtt_us = Mux(e.rtt_ticks[32 - TS_TICK_BITS:].any(), (1 << 32) - 1,
                        e.rtt_ticks[:32 - TS_TICK_BITS] << TS_TICK_BITS)
        m.d.comb += [
            rtt.sample.valid.eq(1),
            rtt.sample.p.rtt_us.eq(Mux(e.rtt_by_ts, ts_rtt_us, seq_diff(e.now, t.rtt_time))),
            rtt.sample.p.srtt.eq(t.srtt),
            rtt.sample.p.rttvar.eq(t.rttvar),
            rtt.sample.p.first.eq(~t.rtt_valid),
        ]
        with m.If(rtt.sample.ready):
            m.next = "rtt_wait"

    with m.State("rtt_wait"):
        m.d.comb += rtt.estimate.ready.eq(1)
        with m.If(rtt.estimate.valid):
            m.d.sync += [
                t.srtt.eq(rtt.estimate.p.srtt), t.rttvar.eq(rtt.estimate.p.rttvar),
                t.rto.eq(rtt.estimate.p.rto), t.rtt_valid.eq(1), t.rtt_active.eq(0),
            ]
            with m.If(t.timer_on):
                e.start_timer(rtt.estimate.p.rto)
            m.next = "seg_text"
            with m.If(e.cc.on):
                m.next = "cwnd_update"

    def fin_acked_steps():
        # Our FIN acknowledged? (s3.10.7.4 fifth, per state.)
        with m.Switch(t.state):
            with m.Case(S.FIN_WAIT_1):
                with m.If(e.fin_acked):
                    e.set_state(S.FIN_WAIT_2, S.FIN_WAIT_1, "s3.10.7.4 fifth, FIN-WAIT-1")
                    with m.If(t.host_closed):
                        e.start_timer(cfg.fin_wait_2_us)  # nobody waits for the FIN
            with m.Case(S.CLOSING):
                with m.If(e.fin_acked):
                    e.set_state(S.TIME_WAIT, S.CLOSING, "s3.10.7.4 fifth, CLOSING")
                    e.start_timer(two_msl)
            with m.Case(S.LAST_ACK):
                with m.If(e.fin_acked):
                    e.to_closed(S.LAST_ACK, "s3.10.7.4 fifth, LAST-ACK")
                    e.event(EventSlot.ENDING, EventKind.CLOSED)

    # Seventh: the segment text, with reassembly (hdl/tcp/reassembly.py).
    add_text_steps(e, fin_acked_steps)

    with m.State("seg_fin"):
        # Eighth: the FIN, if every byte before it has been received.
        m.next = "finish"
        # A FIN beyond a hole was remembered; it counts once RCV.NXT reaches it.
        fin_seq = (e.data_seq + s.tcp_payload_len)[:32]
        fin_now = (f_fin & (fin_seq == t.rcv_nxt)) | (t.fin_held & (t.fin_at == t.rcv_nxt))
        text_whole = (e.text.text & e.text.whole) | (s.tcp_payload_len == 0)
        with m.If(f_fin & ~fin_now & text_whole & ~t.fin_received
                  & e.in_states(S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2)
                  & seq_lt(t.rcv_nxt, fin_seq)):
            m.d.sync += [t.fin_held.eq(1), t.fin_at.eq(fin_seq)]
        with m.If(fin_now & (t.state != S.CLOSED) & ~t.fin_received):
            m.d.sync += [t.rcv_nxt.eq(t.rcv_nxt + 1), t.fin_received.eq(1), t.fin_held.eq(0)]
            e.send_ack()
            e.event(EventSlot.PEER_FIN, EventKind.PEER_FIN, value=seq_diff(t.rcv_nxt, t.irs + 1))
            with m.Switch(t.state):
                with m.Case(S.ESTABLISHED):
                    e.set_state(S.CLOSE_WAIT, S.ESTABLISHED, "s3.10.7.4 eighth")
                with m.Case(S.FIN_WAIT_1):
                    # Our FIN is not acknowledged (the fifth step would have moved the
                    # connection to FIN-WAIT-2, and TIME-WAIT follows from there).
                    e.set_state(S.CLOSING, S.FIN_WAIT_1, "s3.10.7.4 eighth")
                with m.Case(S.FIN_WAIT_2):
                    e.set_state(S.TIME_WAIT, S.FIN_WAIT_2, "s3.10.7.4 eighth")
                    e.start_timer(two_msl)
        with m.Elif(f_fin & (t.state == S.TIME_WAIT)):
            e.send_ack()
            e.start_timer(two_msl)  # MUST-13

