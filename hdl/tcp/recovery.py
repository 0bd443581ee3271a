"""Loss recovery and the congestion window, as steps of the TCP engine: what an ACK or
a timeout means for cwnd (RFC 5681 s3, RFC 6582 NewReno, RFC 3042 limited transmit).

The arrival and timer steps classify (``classify_ack``, ``on_timeout``, ``on_open``);
the rule for each class is :class:`~hdl.tcp.congestion.CongestionControl`'s, reached
through two steps: ``cwnd_update`` (the request, with the TCB's cwnd, ssthresh and the
algorithm's state) and ``cwnd_wait`` (the result written into the TCB), then the text
steps of the segment or the retransmission of the timeout.

Duplicate ACKs (RFC 5681 s2): data outstanding, no text, neither SYN nor FIN, SEG.ACK =
SND.UNA and the same window; with SACK, a window that changed does not matter when the
first SACK block reports octets not yet SACKed (RFC 6675 s2,
:func:`~hdl.tcp.scoreboard.note_first_block`).  The first two each let one new segment
beyond cwnd go (limited transmit: :mod:`hdl.tcp.output` adds ``dupacks`` * SMSS to
cwnd); the third, or with SACK an earlier one whose blocks make IsLost(SND.UNA) true
(RFC 6675 s5, step ``sack_lost``), starts fast retransmit if SEG.ACK is beyond
``recover`` (RFC 6582 s3.2 step 1; with SACK at or beyond it, RFC 6675 s5.1):
``recover`` = SND.MAX, the segment at SND.UNA is sent again by the output routine
(``rexmit``), and recovery lasts until an ACK covers ``recover``.  In recovery a
partial ACK sends the next segment at SND.UNA again at once (RFC 6582 s3.2 step 5).  A
timeout ends recovery and sets ``recover`` = SND.MAX (RFC 6582 s4).
"""

from amaranth.hdl import Mux, Signal

from . import scoreboard
from .congestion import CcEvent
from .event_context import EventSource
from .scoreboard import DUP_THRESH
from .seq import seq_diff, seq_le, seq_lt

__all__ = ["CongestionRegisters", "add_recovery_steps", "classify_ack", "on_timeout",
           "on_open"]


class CongestionRegisters:
    """The congestion event the current event raises (``on``), for ``cwnd_update``."""

    def __init__(self):
        self.on = Signal()
        self.event = Signal(CcEvent)
        self.acked = Signal(32)
        self.flight = Signal(32)
        self.repeat = Signal()
        self.syn_lost = Signal()


def _raise(e, event, acked=0, flight=0, repeat=0, syn_lost=0):
    r = e.cc
    e.m.d.sync += [r.on.eq(1), r.event.eq(event), r.acked.eq(acked), r.flight.eq(flight),
                   r.repeat.eq(repeat), r.syn_lost.eq(syn_lost)]
    e.m.next = "cwnd_update"


def on_open(e):
    """The connection is established: the initial window (RFC 6928, or one segment if a
    SYN was retransmitted, RFC 5681 s3.1)."""
    t = e.t
    e.m.d.sync += [t.dupacks.eq(0), t.in_recovery.eq(0), t.recover.eq(t.iss), t.rexmit.eq(0)]
    _raise(e, CcEvent.INIT, syn_lost=t.backoff != 0)


def on_timeout(e):
    """A retransmission timeout in a synchronized state (RFC 5681 s3.1, RFC 6582 s4);
    the SACK scoreboard is cleared (RFC 6675 s5.1)."""
    t = e.t
    e.m.d.sync += [t.dupacks.eq(0), t.in_recovery.eq(0), t.recover.eq(t.snd_max),
                   t.rexmit.eq(0), t.rexmit_dup.eq(0), t.high_rxt.eq(t.snd_una)]
    scoreboard.clear(e)
    _raise(e, CcEvent.RTO, flight=seq_diff(t.snd_max, t.snd_una), repeat=t.backoff != 0)


def _fast_retransmit(e):
    """Fast retransmit and the start of recovery (RFC 5681 s3.2 steps 2-3, RFC 6582
    s3.2 step 2, RFC 6675 s5 (1)-(3)): the segment at SND.UNA goes again."""
    m, t = e.m, e.t
    m.d.sync += [t.in_recovery.eq(1), t.recover.eq(t.snd_max), t.rexmit.eq(1),
                 t.rexmit_dup.eq(0), t.rexmit_lost.eq(0), t.rescued.eq(0),
                 t.high_rxt.eq(t.snd_una), t.retransmits.eq(t.retransmits + 1),
                 t.dupacks.eq(DUP_THRESH)]
    e.count("tcp_fast_retransmits")
    e.enqueue()
    _raise(e, CcEvent.LOSS, flight=seq_diff(t.snd_max, t.snd_una))


def classify_ack(e, ack, new_data):
    """In ``seg_check_ack``, an acceptable ACK ``ack``; ``new_data``: it acknowledges
    something new (SND.UNA < SEG.ACK)."""
    m, t, s = e.m, e.t, e.s
    acked = seq_diff(ack, t.snd_una)
    # RFC 3168 s6.1.2: an ECE reduces cwnd at most once per window (beyond ``recover``,
    # as a loss would), and the next new data says so with CWR.
    echo = t.ecn_ok & s.tcp_flags[6] & seq_lt(t.recover, ack)

    def ecn_reduce():
        m.d.sync += [t.recover.eq(t.snd_max), t.cwr_pending.eq(1)]
        e.count("tcp_ecn_reductions")
        _raise(e, CcEvent.ECE, flight=seq_diff(t.snd_max, ack))  # after this ACK

    with m.If(new_data):
        m.d.sync += t.dupacks.eq(0)
        with m.If(t.in_recovery & seq_lt(ack, t.recover)):
            # RFC 6582 s3.2 step 5: a partial ACK; the next hole goes at once.
            m.d.sync += [t.rexmit.eq(1), t.rexmit_dup.eq(0),
                         t.retransmits.eq(t.retransmits + 1)]
            e.enqueue()
            _raise(e, CcEvent.PARTIAL, acked=acked)
        with m.Elif(t.in_recovery):
            # Step 3: the full ACK ends recovery (and any hole still to resend).
            m.d.sync += [t.in_recovery.eq(0), t.rexmit.eq(0), t.rexmit_dup.eq(0)]
            _raise(e, CcEvent.EXIT, flight=seq_diff(t.snd_max, ack))
        with m.Elif(echo):
            ecn_reduce()
        with m.Else():
            _raise(e, CcEvent.ACK, acked=acked)
    with m.Else():
        # RFC 6582 s3.2 step 1: a new recovery only beyond ``recover``; with SACK,
        # RFC 6675 s5.1: once HighACK >= RecoveryPoint, so that a loss of the first
        # segment sent in a recovery is repaired without the timer.
        beyond = Mux(t.sack_ok, seq_le(t.recover, ack), seq_lt(t.recover, ack))
        duplicate = ((ack == t.snd_una) & (t.snd_max != t.snd_una)
                     & (s.tcp_payload_len == 0) & ~e.f_syn & ~e.f_fin
                     & ((e.seg_wnd == t.snd_wnd) | e.sb.first_new))
        with m.If(duplicate & t.in_recovery):
            # The inflated window (step 4), or with SACK the smaller pipe, may let
            # new data go.
            e.enqueue()
            with m.If(t.sack_ok & scoreboard.rexmit_lost(e)):
                # The segment at SND.UNA went again and that retransmission is lost:
                # once more, outside the pipe (hdl/tcp/scoreboard.py).
                m.d.sync += [t.rexmit.eq(1), t.rexmit_dup.eq(0), t.rexmit_lost.eq(1),
                             t.retransmits.eq(t.retransmits + 1)]
                e.count("tcp_lost_rexmits")
            with m.Elif(t.sack_ok & ~t.rexmit_lost):
                # RFC 6675 s5 (C): the next hole below a SACKed range goes first
                # (hdl/tcp/scoreboard.py; none: new data as the window allows).  Not
                # while the lost retransmission is still to go outside the pipe.
                m.d.sync += [t.rexmit.eq(1), t.rexmit_dup.eq(1)]
            _raise(e, CcEvent.DUPACK)
        with m.Elif(duplicate):
            with m.If(t.dupacks != 3):
                m.d.sync += t.dupacks.eq(t.dupacks + 1)
            with m.If((t.dupacks == DUP_THRESH - 1) & beyond):
                # The third: fast retransmit (RFC 5681 s3.2 steps 2-3).
                _fast_retransmit(e)
            with m.Elif(echo):
                ecn_reduce()
            with m.Elif(t.dupacks < DUP_THRESH - 1):
                e.enqueue()  # limited transmit (RFC 3042)
                with m.If(t.sack_ok & beyond):
                    # RFC 6675 s5: its SACK blocks may say SND.UNA is lost already.
                    m.d.sync += e.sb.check_lost.eq(1)


def add_recovery_steps(e, cc):
    """``cwnd_update`` and ``cwnd_wait`` (``cc``: the CongestionControl)."""
    m, t = e.m, e.t

    with m.State("sack_lost"):
        # After the SACK blocks of an early duplicate ACK: IsLost(SND.UNA) (RFC 6675
        # s5; hdl/tcp/scoreboard.py) starts recovery without waiting for the third.
        m.next = "seg_text"
        with m.If(e.sb.lost):
            _fast_retransmit(e)

    with m.State("cwnd_update"):
        req = cc.request
        m.d.comb += [
            req.valid.eq(1),
            req.p.event.eq(e.cc.event), req.p.acked.eq(e.cc.acked),
            req.p.flight.eq(e.cc.flight), req.p.repeat.eq(e.cc.repeat),
            req.p.syn_lost.eq(e.cc.syn_lost), req.p.sack.eq(t.sack_ok),
            req.p.smss.eq(t.snd_mss), req.p.cwnd.eq(t.cwnd), req.p.ssthresh.eq(t.ssthresh),
            req.p.state.eq(t.cc_state), req.p.algo.eq(t.cc_algo), req.p.now.eq(e.now),
            req.p.srtt_us.eq(t.srtt[3:]),
        ]
        with m.If(req.ready):
            m.next = "cwnd_wait"

    with m.State("cwnd_wait"):
        res = cc.result
        m.d.comb += res.ready.eq(1)
        with m.If(res.valid):
            m.d.sync += [t.cwnd.eq(res.p.cwnd), t.ssthresh.eq(res.p.ssthresh),
                         t.cc_state.eq(res.p.state), e.cc.on.eq(0)]
            with m.If(e.src == EventSource.TIMER):
                m.next = "retransmit_length"
            with m.Else():
                m.next = "seg_text"
