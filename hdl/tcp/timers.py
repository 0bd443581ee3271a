"""Timeouts: RFC 9293 s3.10.8 as steps of the TCP engine.

The timer scan visits every connection in turn (one event each); a connection has one
timer (``timer_on``, ``deadline`` against the microsecond time base), which is
the retransmission timer of RFC 6298 in the states that send, and the 2 MSL timer in
TIME-WAIT (MUST-13).

- The delayed ACK (``ack_pending``, ``ack_due``; RFC 9293 MUST-40): sent when due, on
  its own deadline beside the connection timer.
- TIME-WAIT expiry: delete the TCB (CLOSED), tell the host.
- FIN-WAIT-2 expiry of a connection the host has closed (``fin_wait_2_us``): delete the
  TCB, TIMEOUT to the host.
- Retransmission expiry: at R2 give up (MUST-20..23: SYN R2 for an open, data R2
  otherwise) and tell the host TIMEOUT; else back off (RFC 6298 (5.5)), restart the
  timer (5.6) and resend the earliest unacknowledged segment (5.4), go back N: SND.NXT
  returns to SND.UNA and the output routine sends the rest.  A zero window gets a probe
  of one byte (MUST-36, s3.8.6.1).
"""

from amaranth.hdl import Mux

from ..host_if import EventKind
from ..proto import tcp
from .event_context import EventSlot
from .keepalive import keepalive_due, probe_or_give_up
from .recovery import on_timeout
from .seq import seq_diff, seq_lt
from .states import TcpState

__all__ = ["add_timer_steps"]

S = TcpState


def add_timer_steps(e, o, backoff, listeners):
    m, cfg, t = e.m, e.cfg, e.t
    expired = ~seq_lt(e.now, t.deadline)

    def retransmit():
        """The retransmission timer expired: R2, or back off and send again."""
        syn_phase = e.in_states(S.SYN_SENT, S.SYN_RECEIVED)
        half_open = (t.state == S.SYN_RECEIVED) & t.passive
        limit_r2 = Mux(half_open, cfg.r2_synack_retries,
                       Mux(syn_phase, cfg.r2_syn_retries, cfg.r2_retries))
        with m.If(t.backoff >= limit_r2):
            # R2: give up (MUST-20..23).
            # (Nothing is outstanding in FIN-WAIT-2: no timer runs there.)
            e.to_closed((S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1,
                         S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK),
                        "s3.8.3 R2, s3.10.8 user timeout")
            e.count("tcp_timeouts")
            with m.If(t.owned):
                e.event(EventSlot.ENDING, EventKind.TIMEOUT)
            with m.If(half_open):
                listeners.half_open_done(t.listener)
            with m.Elif(t.passive & ~t.accepted):
                listeners.free_place(t.listener)
        with m.Else():
            m.d.sync += [t.backoff.eq(t.backoff + 1), t.rtt_active.eq(0),
                         t.retransmits.eq(t.retransmits + 1)]
            e.count("tcp_retransmits")
            with m.If(t.backoff + 1 == cfg.r1_retries):
                e.count("tcp_r1")
            m.d.sync += [
                o.avail.eq(seq_diff(t.snd_end, t.snd_una)),  # outstanding
                o.room.eq(Mux(t.snd_wnd == 0, 1, t.snd_wnd)),  # or a probe
            ]
            m.next = "retransmit_length"
            with m.If(e.synchronized):
                on_timeout(e)  # cwnd = 1 SMSS first (hdl/tcp/recovery.py)

    with m.State("timer_check"):
        m.next = "finish"
        with m.If(t.timer_on & expired):
            with m.If(t.state == S.TIME_WAIT):
                e.to_closed(S.TIME_WAIT, "s3.10.8 time-wait timeout")
                e.event(EventSlot.ENDING, EventKind.CLOSED)
            with m.Elif(t.state == S.CLOSED):
                m.d.sync += t.timer_on.eq(0)
            with m.Elif(t.state == S.FIN_WAIT_2):
                # The host closed and the peer never sent its FIN (hdl/config.py,
                # fin_wait_2_us): delete the TCB so the id is released.
                e.to_closed(S.FIN_WAIT_2, "FIN-WAIT-2 timeout of a closed connection")
                e.event(EventSlot.ENDING, EventKind.TIMEOUT)
            with m.Else():
                retransmit()
        with m.Elif(t.ack_pending & ~seq_lt(e.now, t.ack_due) & e.synchronized):
            # The delayed ACK is due (MUST-40).
            e.send_ack()
            e.count("tcp_delayed_acks")
        with m.Elif(keepalive_due(e)):
            probe_or_give_up(e)  # hdl/tcp/keepalive.py

    o.add_length_step(e, "retransmit_length", "retransmit_send")

    with m.State("retransmit_send"):
        m.next = "finish"
        e.start_timer(backoff.backed_off)
        with m.Switch(t.state):
            with m.Case(S.SYN_SENT):
                e.send(tcp.SYN, t.iss, syn_options=1)
            with m.Case(S.SYN_RECEIVED):
                e.send(tcp.SYN | tcp.ACK_FLAG, t.iss, syn_options=1)
            with m.Default():
                with m.If(t.snd_una == t.iss):
                    # Our SYN is still unacknowledged (CLOSE in SYN-RECEIVED).
                    e.send(tcp.SYN | tcp.ACK_FLAG, t.iss, syn_options=1)
                with m.Else():
                    length = o.length
                    fin_only = t.fin_queued & (o.avail == 0)
                    last = length == o.avail  # up to the end of the queued data
                    fin_now = e.closing_sends_fin & t.fin_queued & last
                    next_nxt = (t.snd_una + length + fin_now)[:32]
                    with m.If((length != 0) | fin_only):
                        e.send(tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0),
                               t.snd_una, pos=t.snd_una, length=length)
                        m.d.sync += t.snd_nxt.eq(next_nxt)
                        with m.If(seq_lt(t.snd_max, next_nxt)):
                            # A zero-window probe sends a byte never sent before.
                            m.d.sync += t.snd_max.eq(next_nxt)
                        with m.If(~last):
                            e.enqueue()
                    with m.Else():
                        m.d.sync += t.timer_on.eq(0)
