"""The output routine of the TCP engine: what a connection sends when it is its turn in
the output queue (RFC 9293 s3.10.2 SEND, s3.8.6 windows, s3.8.6.2.2 window updates,
RFC 5681 s3 the congestion window).

Four registered steps, each ending in registers, so that no path chains more than two
or three 32-bit carry chains: (0) ``output_window``: the send window, min(SND.WND,
cwnd + limited transmit's dupacks * SMSS, RFC 3042), and whether the connection has
been idle longer than the RTO; (1) ``output_measure``: bytes queued and room in that
window, after an idle period in the restart window min(IW, cwnd) (RFC 5681 s4.1);
(2) ``output_length``: the segment length, at most SND.MSS; (3) ``output_send``: the
segment and the new SND.NXT.  A fast retransmission (``rexmit``,
:mod:`hdl.tcp.recovery`) goes first: the segment at SND.UNA again, outside cwnd,
SND.NXT unchanged, or a hole between SACKed ranges.  In a recovery with SACK, five
steps after (0), ``output_pipe`` .. ``output_pipe_window``, bound both by RFC 6675's
pipe instead of the flight and find its IsLost boundary (:mod:`hdl.tcp.scoreboard`);
the other paths skip them.  ``output_send`` then chooses by RFC 6675's NextSeg rules:
a lost hole, new data, a hole not yet lost, the rescue retransmission (which goes
through ``output_measure`` once more with its own start).
Retransmission after a timeout (:mod:`hdl.tcp.timers`) reuses the length step's
registers.
"""

from amaranth.hdl import Mux, Signal, signed

from ..proto import tcp
from . import scoreboard
from .congestion import initial_window
from .seq import seq_diff, seq_lt, seq_min
from .states import TcpState

__all__ = ["OutputRegisters", "add_output_steps"]

S = TcpState


class OutputRegisters:
    """The intermediate results of the output and retransmission steps."""

    def __init__(self, config):
        self.pipe = scoreboard.PipeRegisters(config)
        self.pipe_room = Signal()  # cwnd - pipe >= SMSS: a hole may go (RFC 6675 s5 (C))
        self.avail = Signal(32)  # bytes queued beyond SND.NXT (or SND.UNA)
        self.room = Signal(32)  # room in the peer's window beyond SND.NXT
        self.length = Signal(16)
        self.fin_left = Signal()  # the FIN is not sent yet
        self.update = Signal()  # a window update is due
        self.wnd = Signal(32)  # min(SND.WND, the congestion window)
        self.restart = Signal()  # idle longer than the RTO: the restart window applies
        self.restart_wnd = Signal(32)  # min(SND.WND, IW)
        self.iw = Signal(32)  # the initial window for this SND.MSS (RFC 6928)
        self.hole = Signal(32)  # where a retransmission starts (hdl/tcp/scoreboard.py)
        self.limit = Signal(32)  # ... where it must stop
        self.lost = Signal()  # ... whether that hole is lost (RFC 6675 IsLost)
        self.sacked_above = Signal()  # ... and whether a SACKed range lies above it
        self.new_ok = Signal()  # new data (or the FIN) waits and the peer's window allows
        self.rescue = Signal()  # this pass sends the rescue retransmission

    def add_length_step(self, e, name: str, then: str):
        """Step ``name``: the segment length, min(bytes, window room, SND.MSS), then
        ``then`` (shared by the output and the retransmission routines)."""
        with e.m.State(name):
            e.m.d.sync += [
                self.length.eq(seq_min(seq_min(self.avail, self.room), e.t.snd_mss)),
                self.update.eq(e.window_update_due()),  # rcv_wnd: set by the step before
            ]
            e.m.next = then


def add_output_steps(e, o, backoff):
    m, t = e.m, e.t

    with m.State("output_window"):
        limited = Mux(t.in_recovery, 0, Mux(t.dupacks == 3, 0, t.dupacks * t.snd_mss))
        cwnd = (t.cwnd + limited)[:32]
        m.d.sync += o.wnd.eq(seq_min(t.snd_wnd, cwnd))
        # RFC 5681 s4.1: nothing sent for longer than the RTO and nothing outstanding:
        # cwnd = min(IW, cwnd) before new data goes.
        iw = initial_window(t.snd_mss, e.cfg.initial_window)
        m.d.sync += [
            o.restart.eq((t.snd_una == t.snd_max) & (t.snd_end != t.snd_nxt)
                         & (seq_diff(e.now, t.sent_at) > t.rto) & (t.cwnd > iw)
                         & e.in_states(S.ESTABLISHED, S.CLOSE_WAIT)),
            o.restart_wnd.eq(seq_min(t.snd_wnd, iw)),
            o.iw.eq(iw),
        ]
        m.d.sync += o.rescue.eq(0)
        m.next = "output_measure"
        with m.If(t.sack_ok & t.in_recovery):
            m.next = "output_pipe"
        with m.Elif(t.rexmit):
            m.next = "output_hole"

    # RFC 6675 s5: in a recovery with SACK the windows come from the pipe.
    with m.State("output_pipe"):
        scoreboard.pipe_bounds(e, o.pipe)
        m.next = "output_pipe_sum"

    with m.State("output_pipe_sum"):
        scoreboard.pipe_lost(e, o.pipe)
        m.next = "output_pipe_count"

    with m.State("output_pipe_count"):
        scoreboard.pipe_boundary(e, o.pipe)
        m.next = "output_pipe_credit"

    with m.State("output_pipe_credit"):
        scoreboard.pipe_credit(e, o.pipe)
        m.next = "output_pipe_window"

    with m.State("output_pipe_window"):
        # cwnd + (FlightSize - pipe) beyond SND.UNA, i.e. cwnd - pipe beyond SND.NXT.
        allowed = Signal(signed(34))
        m.d.comb += allowed.eq(t.cwnd + o.pipe.credit)
        flight = seq_diff(t.snd_nxt, t.snd_una)
        m.d.sync += [
            o.wnd.eq(Mux(allowed < 0, 0, seq_min(t.snd_wnd, allowed[:32]))),
            o.pipe_room.eq(allowed >= flight + t.snd_mss),
        ]
        m.next = "output_measure"
        with m.If(t.rexmit):
            m.next = "output_hole"

    with m.State("output_hole"):
        scoreboard.hole_from(e, o)
        m.next = "output_hole_end"

    with m.State("output_hole_end"):
        scoreboard.hole_end(e, o)
        m.next = "output_measure"

    with m.State("output_measure"):
        # A retransmission: from the hole to ``o.limit`` (the next SACKed range, the
        # data's end or SND.MAX).
        avail = Mux(t.rexmit, seq_diff(o.limit, o.hole), seq_diff(t.snd_end, t.snd_nxt))
        wnd = Mux(o.restart, seq_min(o.restart_wnd, o.wnd), o.wnd)
        room = seq_diff((t.snd_una + wnd)[:32], t.snd_nxt)
        # RFC 6675 s4 NextSeg rule 2: unsent data that the peer's window takes, or the
        # FIN still to go.
        peer_room = seq_lt(t.snd_nxt, (t.snd_una + t.snd_wnd)[:32])
        fin_unsent = e.closing_sends_fin & t.fin_queued & ~seq_lt(t.snd_end, t.snd_max)
        m.d.sync += o.new_ok.eq(((t.snd_end != t.snd_nxt) & peer_room) | fin_unsent)
        with m.If(o.restart):
            m.d.sync += t.cwnd.eq(o.iw)
            e.count("tcp_cwnd_restarts")
        m.d.sync += [
            o.avail.eq(Mux(~avail[31], avail, 0)),
            o.fin_left.eq(~avail[31]),
            # A hole on a duplicate ACK in a recovery with SACK: only within the pipe.
            o.room.eq(Mux(t.rexmit, Mux(t.rexmit_dup & t.sack_ok & ~o.pipe_room, 0, 0xFFFF),
                          Mux(~room[31], room, 0))),
        ]
        e.measure_window()
        m.next = "output_length"

    o.add_length_step(e, "output_length", "output_send")

    with m.State("output_send"):
        m.next = "finish"
        # RFC 6675 s4 NextSeg: (1) a lost hole; (2) new data; (3) a hole below a SACKed
        # range that is not lost yet, if no new data may go; (4) once per recovery the
        # rescue retransmission, the last SMSS of unSACKed data.
        rule3 = o.sacked_above & ~o.new_ok
        rescue = (t.sack_ok & t.in_recovery & ~t.rescued & ~o.sacked_above & ~o.new_ok
                  & o.pipe_room & (o.length != 0))
        with m.If(t.rexmit & (o.lost | rule3 | o.rescue)):
            fast_retransmit(e, o)
        with m.Elif(t.rexmit & rescue):
            # The segment that ends at the limit (where unSACKed data ends): its
            # length again from the new start.
            with m.If(o.avail > t.snd_mss):
                m.d.sync += o.hole.eq((o.limit - t.snd_mss)[:32])
            m.d.sync += [o.rescue.eq(1), t.rescued.eq(1)]
            e.count("tcp_rescue_rexmits")
            m.next = "output_measure"
        with m.Elif(t.rexmit):
            # Nothing to resend now: new data, as the window allows.
            m.d.sync += [t.rexmit.eq(0), t.rexmit_dup.eq(0)]
            e.enqueue()
        with m.Else():
            send_new(e, o, backoff)


def fast_retransmit(e, o):
    """The segment at the hole again: at SND.UNA (RFC 5681 s3.2 step 3, RFC 6582 step
    5), or between SACKed ranges (RFC 6675, :mod:`hdl.tcp.scoreboard`), with the FIN
    if it was sent and this segment reaches it; then the output routine again for what
    the window allows."""
    m, t = e.m, e.t
    length = o.length
    fin_now = e.closing_sends_fin & t.fin_queued & seq_lt(t.snd_end, t.snd_max) & (
        (o.hole + length)[:32] == t.snd_end)
    m.d.sync += [t.rexmit.eq(0), t.rexmit_lost.eq(0)]
    with m.If((length != 0) | fin_now):
        e.send(tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0), o.hole, pos=o.hole, length=length)
        scoreboard.resent(e, o, length + fin_now)
        with m.If(t.rexmit_dup | o.rescue):
            m.d.sync += t.retransmits.eq(t.retransmits + 1)
        with m.If(t.rexmit_dup & ~o.rescue):
            e.count("tcp_sack_rexmits")
        # Karn (RFC 6298 s3): a segment sent twice is not timed.
        with m.If(t.rtt_active & seq_lt(o.hole, t.rtt_seq)):
            m.d.sync += t.rtt_active.eq(0)
    e.enqueue()


def send_new(e, o, backoff):
    """New data (or the FIN) as far as the windows allow, or a window update."""
    m, t = e.m, e.t
    data_pending = o.avail != 0
    length = o.length
    sending = e.in_states(S.ESTABLISHED, S.CLOSE_WAIT) | e.closing_sends_fin
    last = o.fin_left & (length == o.avail)  # this segment takes every byte
    fin_now = e.closing_sends_fin & t.fin_queued & last
    # Sender silly-window avoidance (RFC 9293 s3.8.6.2.1, MUST-38) with Nagle (SHLD-7,
    # RFC 896): send a full segment (SHLD-28); or every byte queued, if nothing is
    # unacknowledged, the Nagle algorithm is off (MUST-17) or the FIN goes with it; or
    # at least half the largest window the peer offered; and again what was sent
    # before a timeout.  Otherwise the text waits for an ACK, or for the timer (the
    # override timeout, s3.8.6.2.1 (4)) if nothing is outstanding.
    whole = length >= t.snd_mss
    idle = t.snd_nxt == t.snd_una
    half = length >= t.max_wnd[1:]
    resend = seq_lt(t.snd_nxt, t.snd_max)
    worth = whole | (last & (idle | t.nodelay | fin_now)) | half | resend
    with m.If(sending & (((length != 0) & worth) | (fin_now & ~data_pending))):
        e.send(tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0)
               | Mux((length != 0) & last, tcp.PSH, 0),
               t.snd_nxt, pos=t.snd_nxt, length=length,
               ect=t.ecn_ok & (length != 0) & (t.snd_nxt == t.snd_max))
        next_nxt = (t.snd_nxt + length + fin_now)[:32]
        m.d.sync += t.snd_nxt.eq(next_nxt)
        with m.If(length != 0):
            m.d.sync += t.sent_at.eq(e.now)  # for the restart after idle
        # SND.NXT never passes SND.MAX except by sending new data, and then
        # SND.NXT == SND.MAX before (RFC 6298 / Karn: time new data only).
        with m.If(t.snd_nxt == t.snd_max):
            m.d.sync += t.snd_max.eq(next_nxt)
            with m.If(~t.rtt_active):
                m.d.sync += [t.rtt_active.eq(1), t.rtt_seq.eq(next_nxt),
                             t.rtt_time.eq(e.now)]
        with m.Elif(seq_lt(t.snd_max, next_nxt)):
            m.d.sync += t.snd_max.eq(next_nxt)
        with m.If(~t.timer_on):
            e.start_timer(backoff.backed_off)  # RFC 6298 (5.1)
        with m.If((length != 0) & ~last & (o.room > length)):
            e.enqueue()
    with m.Elif(sending & data_pending & ~t.timer_on):
        # Zero window, or a window too small to be worth a segment: the timer will send
        # a probe (MUST-36) or what fits.
        e.start_timer(backoff.backed_off)
    with m.Elif(e.synchronized & (t.state != S.TIME_WAIT) & o.update):
        e.send_ack()  # window update
