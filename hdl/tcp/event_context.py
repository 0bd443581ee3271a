"""What every step of the TCP engine shares while it processes one event.

The engine (:mod:`hdl.tcp.engine`) handles one event at a time: the TCB of the event's
connection is loaded into the register ``t``, the event's steps change ``t`` and queue
what the event produces, and the common tail (:mod:`hdl.tcp.emission`) sends the
products in a fixed order and writes ``t`` back.  :class:`EventContext` holds those
working registers, the product registers and the helpers through which the steps of
every handler module (:mod:`hdl.tcp.arrival`, :mod:`hdl.tcp.user_calls`,
:mod:`hdl.tcp.output`, :mod:`hdl.tcp.timers`) change them, so that a rule is written
once: sending a segment, raising a host event, starting the connection timer, and
every change of the TCP state (:meth:`EventContext.set_state`).
"""

import enum as py_enum

from amaranth.hdl import Cat, Const, Mux, Signal
from amaranth.lib import data, enum

from ..host_if import CommandOp, ErrorCode, EventKind, command_layout
from ..proto import ethernet, tcp
from ..rx.meta import rx_meta_layout
from .congestion import SSTHRESH_MAX
from .seq import seq_diff, seq_lt, seq_min
from .states import SYNCHRONIZED, TcpState
from .tcb import delivery_layout, tcb_layout, written_layout

__all__ = ["EventSource", "EventSlot", "EventContext", "ENGINE_COUNTERS", "TRACE_SOURCES",
           "trace_layout", "TS_TICK_BITS", "TS_RECENT_MAX_AGE"]

#: The timestamp clock ticks every 2**TS_TICK_BITS microseconds (1.024 ms).
TS_TICK_BITS = 10
#: RFC 7323 s5.5: TS.Recent older than 24 days is invalid.  Its age is kept in units of
#: 2**16 ticks (67 s): 24 days are this many units.
TS_RECENT_MAX_AGE = (24 * 86_400 * 1_000_000 >> TS_TICK_BITS) >> 16


class EventSource(enum.Enum, shape=3):
    """Where an event comes from; the engine serves the sources round robin, in this
    order (RFC 9293 s3.10: user calls, arriving segments, timeouts)."""

    DELIVERED = 0  # the RX delivery engine handed bytes to the host (s3.10.3 RECEIVE)
    WRITTEN = 1  # the TX writer stored host bytes (s3.10.2 SEND)
    COMMAND = 2  # a host command (s3.10.1 OPEN, s3.10.4 CLOSE, s3.10.5 ABORT, ...)
    SEGMENT = 3  # a received segment (s3.10.7)
    OUTPUT = 4  # a connection in the output queue may have something to send
    TIMER = 5  # the timer scan reached a connection (s3.10.8)


#: ``trace.source`` values, by name (:data:`EventSource` order).
TRACE_SOURCES = ("delivered", "written", "cmd", "seg", "output", "timer")


class EventSlot(py_enum.IntEnum):
    """The host events one engine event can raise, in the order they are emitted."""

    OPEN = 0  # LISTENING, UNLISTENED, CONNECTING, ESTABLISHED, ACCEPTED, or ERROR
    ACKED = 1
    PEER_FIN = 2
    ENDING = 3  # CLOSED, RESET or TIMEOUT
    RELEASED = 4


#: Event counters of the engine (strobes on ``counters``), in this order.
ENGINE_COUNTERS = [
    "tcp_active_opens",  # CONNECT sent a SYN
    "tcp_passive_opens",  # a SYN to a listening port was answered
    "tcp_established",  # connections that reached ESTABLISHED
    "tcp_retransmits",  # segments sent again after a timeout
    "tcp_r1",  # retransmissions that reached R1 (RFC 9293 s3.8.3)
    "tcp_timeouts",  # connections aborted at R2
    "tcp_resets_in",  # connections reset by an acceptable RST
    "tcp_rst_out",  # RSTs sent by ABORT
    "tcp_challenge_acks",  # RFC 5961 challenge ACKs sent
    "tcp_challenge_limited",  # challenge ACKs suppressed by the rate limit
    "tcp_bad_seq",  # segments failing the acceptability test (ACK sent unless RST)
    "tcp_out_of_order",  # in-window segments beyond RCV.NXT: text held, duplicate ACK sent
    "tcp_backlog_drops",  # SYNs to a listener whose backlog is full (or no free id)
    "tcp_host_errors",  # ERROR events
    "tcp_listen_drops",  # segments to a listener without SYN, ACK or RST (s3.10.7.2)
    "tcp_ooo_dropped",  # out-of-order text not held: every reassembly interval in use
    "tcp_paws_drops",  # RFC 7323 s5: an old timestamp (ACK sent), or none where agreed
    "tcp_delayed_acks",  # ACKs sent when the delayed-ACK time ran out
    "tcp_sack_acks",  # ACKs that carried SACK blocks (RFC 2018)
    "tcp_dsack_acks",  # of those, ACKs reporting a duplicate in a D-SACK block (RFC 2883)
    "tcp_fast_retransmits",  # third duplicate ACKs that started fast retransmit
    "tcp_keepalive_probes",  # keep-alive probes sent
    "tcp_keepalive_timeouts",  # connections reset after unanswered keep-alive probes
    "tcp_ecn_ce",  # segments that arrived marked CE (RFC 3168), echoed with ECE
    "tcp_ecn_reductions",  # ECEs that reduced cwnd (at most once per window)
    "tcp_cwnd_restarts",  # restarts from min(IW, cwnd) after an idle period (RFC 5681 s4.1)
    "tcp_sack_dropped",  # SACK blocks the scoreboard had no place for
    "tcp_sack_rexmits",  # holes between SACKed ranges resent on duplicate ACKs (RFC 6675)
    "tcp_cookies_sent",  # SYN-ACKs with a SYN cookie, no state kept (RFC 4987 s3.6)
    "tcp_cookies_accepted",  # ACKs with a valid cookie: connections rebuilt
    "tcp_cookies_invalid",  # ACKs to a listener with no valid cookie (answered by RST)
    "tcp_cookie_overflows",  # valid cookies dropped: accept queue full or no free id
    "tcp_oow_limited",  # challenge or out-of-window ACKs not sent: per-connection limit
    # ICMP errors about our segments (hdl/tcp/icmp_errors.py).
    "tcp_icmp_no_conn",  # for no connection: dropped
    "tcp_icmp_bad_seq",  # quoting a sequence number not in flight (RFC 5927 s4.1): dropped
    "tcp_icmp_soft",  # soft errors (and hard ones in synchronized states): reported
    "tcp_icmp_aborts",  # hard errors that ended an opening connection (SHLD-26)
    "tcp_icmp_pmtu",  # fragmentation needed that lowered SND.MSS (RFC 1191)
    "tcp_lost_rexmits",  # retransmissions at SND.UNA found lost from SACK blocks, resent
    "tcp_rescue_rexmits",  # RFC 6675 rescue retransmissions (NextSeg rule 4)
]

#: One processed event, for coverage: the state before and after, and what the event was
#: (the source; the segment's flags and whether it carried data; the command).
trace_layout = data.StructLayout({
    "valid": 1,
    "source": range(len(TRACE_SOURCES)),
    "before": TcpState,
    "after": TcpState,
    "flags": 8,
    "data": 1,
    "op": CommandOp,
    "icmp": 1,  # the segment event was an ICMP error (hdl/tcp/icmp_errors.py)
})

_event_slot_layout = data.StructLayout({"on": 1, "kind": EventKind, "code": ErrorCode,
                                        "value": 32})


class EventContext:
    """The registers of the event in progress and the helpers that change them.

    Working registers: ``t`` (the TCB), ``cid`` (its connection id), ``s`` (the segment,
    :func:`rx_meta_layout`), ``c`` (the command), ``src`` (:class:`EventSource`),
    ``before`` (the TCP state when the event started), ``write_tcb``.

    Products, sent by the common tail in this order: a lookup-table delete, a segment
    (``do_seg``/``seg``), a copy of received text into the RX ring (``do_copy``/``cp``),
    a delivery to the host (``do_dlv``/``dlv``), the host events (``ev[slot]``), then the
    TCB write with the TX writer's limit (``do_limit``), the output queue
    (``do_enqueue``), the release of the id (``do_free``) and of the segment's frame
    (``do_take``).

    ``transitions`` lists, at elaboration, every TCP state change the steps can make as
    ``(from_states, to_state, reference)``: the engine's test compares it with the
    transition table of :mod:`hdl.tcp.states`.
    """

    def __init__(self, m, config, buffer_ptr_bits, now, ts_now, strobes, lookup):
        self.m = m
        self.cfg = config
        self.now = now
        self.ts_now = ts_now  # the timestamp clock (RFC 7323 s5.4), 2**TS_TICK_BITS us a tick
        #: Receiver SWS avoidance (RFC 9293 s3.8.6.2.2): the right edge of the window
        #: moves in steps of at least min(RCV.BUFF / 2, MSS).
        self.sws_step = min(config.rx_ring_bytes // 2, config.mss)
        self.strobes = strobes
        self.lookup = lookup
        self.transitions: list[tuple[tuple[TcpState, ...], TcpState, str]] = []
        cfg = config

        self.t = Signal(tcb_layout(cfg))
        self.cid = Signal(cfg.conn_bits)
        self.s = Signal(rx_meta_layout(buffer_ptr_bits))
        self.c = Signal(command_layout(cfg))
        self.src = Signal(EventSource)
        self.before = Signal(TcpState)
        self.write_tcb = Signal()
        self.w_info = Signal(written_layout(cfg))  # the TX writer's report
        self.d_end = Signal(32)  # the delivery engine's report: the ring is free up to here
        self.trace_listen = Signal()  # a LISTEN/UNLISTEN: no TCB, still a transition
        self.emitted = Signal()  # a segment was sent for this event
        self.listener = Signal(range(cfg.listeners))  # the listener a SYN matched
        self.l_hit = Signal()  # a listener matched
        # SYN cookies (hdl/tcp/syn_cookie.py): a stateless SYN-ACK is being sent (its
        # TSval carries the options); a connection was rebuilt from a cookie's ACK.
        self.cookie_syn = Signal()
        self.cookie_open = Signal()
        self.cookie_mss = Signal(3)
        self.cookie_period = Signal(5)
        self.cookies_recent = Signal()  # set by the opening steps: check ACKs for cookies
        # Set by the engine: the TCB memory's read data and write enable, the port
        # for segments that find no connection.
        self.tcb_rd_data = None
        self.tcb_wr_en = None
        self.reset_meta = None
        self.copy_port = None

        self.do_seg = Signal()
        self.seg = Signal(data.StructLayout({
            "flags": 8, "seq": 32, "pos": 32, "len": 16, "syn_options": 1, "ect": 1}))
        # The window and SACK blocks of the segment, prepared by the emission steps.
        ring_bits = (cfg.rx_ring_bytes).bit_length()
        self.w_space = Signal(ring_bits + 1)
        self.w_kept = Signal(32)
        self.w_field = Signal(16)
        self.sack_n = Signal(3)
        self.sack = Signal(data.ArrayLayout(data.StructLayout({"left": 32, "right": 32}),
                                            tcp.MAX_SACK_BLOCKS))
        # RFC 2883: the duplicate text this segment carried, reported as the first SACK
        # block of its ACK (a D-SACK block).
        self.dsack = Signal(data.StructLayout({"on": 1, "left": 32, "right": 32}))
        # RFC 7323 s5.5: TS.Recent is older than 24 days (set in ``seg_dispatch``).
        self.ts_stale = Signal()
        self.rtt_by_ts = Signal()  # the RTT sample comes from a timestamp echo
        self.rtt_ticks = Signal(32)  # that sample, in timestamp ticks
        self.do_copy = Signal()
        self.cp = Signal(data.StructLayout({"offset": 16, "length": 16, "pos": 32}))
        self.do_dlv = Signal()
        self.dlv = Signal(delivery_layout(cfg))
        self.do_delete = Signal()
        self.del_wait = Signal()
        self.do_limit = Signal()
        self.do_enqueue = Signal()
        self.do_free = Signal()
        self.do_take = Signal()
        self.ev = [Signal(_event_slot_layout, name=f"ev_{slot.name.lower()}")
                   for slot in EventSlot]
        self.ev_listen = Signal()  # the OPEN slot carries the command's port and tag

        # Views of the TCB and the segment used by several handlers.
        t, s = self.t, self.s
        flags = s.tcp_flags
        self.f_fin, self.f_syn, self.f_rst, self.f_ack = flags[0], flags[1], flags[2], flags[4]
        self.seg_len = Signal(17)  # SEG.LEN: text, SYN and FIN
        # The sequence number of the first byte of text (SEG.SEQ, + 1 after a SYN): a
        # register, set with ``s`` (:meth:`load_segment`), so that no step adds it.
        self.data_seq = Signal(32)
        self.payload_at = Signal(16)  # the frame offset of the first byte of text
        self.rx_free = Signal(ring_bits + 1)
        # The largest window that could be advertised now: the ring's free space, at
        # most 65,535 << our shift (``rcv_wnd_now``); ``rcv_wnd`` is it registered by
        # :meth:`measure_window`, for the steps after (the acceptability test).
        self.rcv_wnd_now = Signal(ring_bits + 1)
        self.rcv_wnd = Signal(ring_bits + 1)
        self.synchronized = Signal()
        self.rcv_data_end = (t.rcv_nxt - t.fin_received)[:32]  # the FIN is no byte
        m.d.comb += [
            self.seg_len.eq(s.tcp_payload_len + self.f_syn + self.f_fin),
            self.payload_at.eq(ethernet.HEADER_BYTES + (s.ip_ihl << 2) + (s.tcp_doff << 2)),
            self.rx_free.eq(cfg.rx_ring_bytes - seq_diff(t.rcv_nxt, t.rcv_read)),
            self.rcv_wnd_now.eq(seq_min(self.rx_free, self.scale_up(Const(0xFFFF, 16)))),
            self.synchronized.eq(self.in_states(*SYNCHRONIZED)),
        ]
        self.closing_sends_fin = self.in_states(TcpState.FIN_WAIT_1, TcpState.CLOSING,
                                                TcpState.LAST_ACK)
        # Received bytes never handed to the delivery engine.  (Bytes handed over but
        # not yet reported delivered may be in the host's hands already: not counted.)
        self.unread = self.rcv_data_end != t.rcv_dlv
        self.peer_mss = Mux(s.tcp_options.mss_valid, seq_min(s.tcp_options.mss, cfg.mss),
                            tcp.DEFAULT_MSS)
        # Registered by the arrival steps (``seg_dispatch``) from the TCB and the
        # segment: SEG.WND of a segment without SYN, scaled (RFC 7323 s2.3), and the
        # oldest acceptable ACK, SND.UNA - MAX.SND.WND (RFC 5961 s5.2; MAX.SND.WND here
        # the largest window the peer's shift can express).
        self.seg_wnd = Signal(32)
        self.ack_floor = Signal(32)
        self.fin_acked = t.fin_queued & (t.snd_una == (t.snd_end + 1)[:32])

    def scale_up(self, value):
        """``value`` << our window shift, which is 0 or ``rcv_wscale`` (RFC 7323 s2.2):
        a choice of two wirings, not a shifter."""
        k = self.cfg.rcv_wscale
        return Mux(self.t.rcv_shift != 0, value << k, value) if k else value

    def scale_down(self, value):
        """``value`` >> our window shift."""
        k = self.cfg.rcv_wscale
        return Mux(self.t.rcv_shift != 0, value >> k, value) if k else value

    def measure_window(self):
        """Register ``rcv_wnd`` from the TCB now (for the steps that follow)."""
        self.m.d.sync += self.rcv_wnd.eq(self.rcv_wnd_now)

    def load_segment(self, record):
        """Take the segment ``record`` (:func:`rx_meta_layout`) for this event."""
        self.m.d.sync += [self.s.eq(record), self.do_take.eq(1),
                          self.data_seq.eq(record.tcp_seq + record.tcp_flags[1])]

    # -- state ---------------------------------------------------------------------------

    def in_states(self, *states):
        """The TCB's state is one of ``states``."""
        return Cat(self.t.state == state for state in states).any()

    def set_state(self, to: TcpState, frm, reference: str):
        """Every TCP state change goes through here: ``t.state = to``, declared as a
        transition from each of ``frm`` (a state or a tuple of states, the states in
        which this statement can run) for the table check."""
        frm = frm if isinstance(frm, tuple) else (frm,)
        self.transitions.append((frm, to, reference))
        self.m.d.sync += self.t.state.eq(to)

    def to_closed(self, frm, reference: str):
        """Enter CLOSED: the socket pair leaves the lookup table, the timer stops."""
        self.set_state(TcpState.CLOSED, frm, reference)
        t = self.t
        self.m.d.sync += [t.timer_on.eq(0), self.do_delete.eq(1), t.rcv_credit.eq(0)]

    # -- products ------------------------------------------------------------------------

    def count(self, name: str):
        """Strobe the engine counter ``name`` (:data:`ENGINE_COUNTERS`) this cycle."""
        self.m.d.comb += self.strobes[name].eq(1)

    def send(self, flags, seq, pos=0, length=0, syn_options=0, ect=0):
        """Queue a segment; its ACK field is the event's final RCV.NXT (at emission).
        ``syn_options``: a SYN or SYN-ACK, with MSS and the options of the TCB's
        ``ws_ok``, ``ts_ok``, ``sack_ok`` (and ECE/CWR if ``ecn_ok``).  ``ect``: new
        data, ECN-capable (RFC 3168 s6.1.5: never a retransmission)."""
        seg = self.seg
        self.m.d.sync += [self.do_seg.eq(1), seg.flags.eq(flags), seg.seq.eq(seq),
                          seg.pos.eq(pos), seg.len.eq(length),
                          seg.syn_options.eq(syn_options), seg.ect.eq(ect)]

    def send_ack(self):
        """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
        self.send(tcp.ACK_FLAG, self.t.snd_nxt)

    def report_duplicate(self, left, right):
        """RFC 2883 s4: the ACK of this segment reports the duplicate text
        ``[left, right)`` in a D-SACK block, if SACK is agreed."""
        t = self.t
        self.m.d.sync += [self.dsack.on.eq(t.sack_ok), self.dsack.left.eq(left),
                          self.dsack.right.eq(right)]

    def take_ts_recent(self, ts_val):
        """TS.Recent = ``ts_val`` (RFC 7323 s4.3), stamped with the time."""
        t = self.t
        self.m.d.sync += [t.ts_recent.eq(ts_val), t.ts_recent_at.eq(self.ts_now[16:])]

    def send_reset(self):
        """<SEQ=SND.NXT><CTL=RST,ACK> (s3.10.5 ABORT), counted."""
        self.send(tcp.RST | tcp.ACK_FLAG, self.t.snd_nxt)
        self.count("tcp_rst_out")

    def event(self, slot: EventSlot, kind, code=ErrorCode.NONE, value=0):
        e = self.ev[slot]
        self.m.d.sync += [e.on.eq(1), e.kind.eq(kind), e.code.eq(code), e.value.eq(value)]

    def error(self, code):
        """An ERROR event for the host (a refused command or TX data), counted."""
        self.count("tcp_host_errors")
        self.event(EventSlot.OPEN, EventKind.ERROR, code)

    def start_timer(self, us):
        t = self.t
        self.m.d.sync += [t.timer_on.eq(1), t.deadline.eq((self.now + us)[:32])]

    def enqueue(self):
        """Put the connection in the output queue (once)."""
        t = self.t
        with self.m.If(~t.output_queued):
            self.m.d.sync += [self.do_enqueue.eq(1), t.output_queued.eq(1)]

    def deliver_more(self, credit):
        """Hand more received bytes to the host if it has credit (RFC 9293 s3.10.3)."""
        t, dlv = self.t, self.dlv
        pending = seq_diff(self.rcv_data_end, t.rcv_dlv)
        length = seq_min(pending, credit)
        with self.m.If((pending != 0) & (credit != 0) & (t.dlv_out != 15)):
            self.m.d.sync += [
                self.do_dlv.eq(1),
                dlv.pos.eq(t.rcv_dlv),
                dlv.length.eq(length),
                t.rcv_dlv.eq(t.rcv_dlv + length),
                t.rcv_credit.eq(credit - length),
                t.dlv_out.eq(t.dlv_out + 1),
            ]

    def agree_options(self, passive=False):
        """The options of the SYN ``s`` against those the TCB offers (``ws_ok``,
        ``ts_ok``, ``sack_ok``), or for a ``passive`` open those the build supports:
        what both sent is on (RFC 7323 s2.2 and s3.2, RFC 2018 s2).  SND.MSS leaves room
        for the timestamps every segment then carries (RFC 6691)."""
        t, cfg, o = self.t, self.cfg, self.s.tcp_options
        ws_offer, ts_offer, sack_offer = ((cfg.window_scaling, cfg.timestamps, cfg.sack)
                                          if passive else (t.ws_ok, t.ts_ok, t.sack_ok))
        ws = ws_offer & o.wscale_valid
        ts = ts_offer & o.ts_valid
        # RFC 3168 s6.1.1: an ECN-setup SYN has ECE and CWR, an ECN-setup SYN-ACK ECE
        # alone.
        ece, cwr = self.s.tcp_flags[6], self.s.tcp_flags[7]
        ecn = (cfg.ecn & ece & cwr) if passive else (t.ecn_ok & ece & ~cwr)
        self.m.d.sync += [
            t.ws_ok.eq(ws),
            t.snd_shift.eq(Mux(ws, o.wscale, 0)),
            t.rcv_shift.eq(Mux(ws, cfg.rcv_wscale, 0)),
            t.ts_ok.eq(ts),
            t.ts_recent.eq(o.ts_val), t.ts_recent_at.eq(self.ts_now[16:]),
            t.sack_ok.eq(sack_offer & o.sack_permitted),
            t.ecn_ok.eq(ecn), t.ece_pending.eq(0), t.cwr_pending.eq(0),
            t.snd_mss.eq(Mux(ts & (self.peer_mss > 2 * tcp.TS_OPTION_BYTES),
                             self.peer_mss - tcp.TS_OPTION_BYTES, self.peer_mss)),
        ]

    def offer_options(self):
        """A new connection offers every option the build supports."""
        t, cfg = self.t, self.cfg
        self.m.d.sync += [t.ws_ok.eq(cfg.window_scaling), t.ts_ok.eq(cfg.timestamps),
                          t.sack_ok.eq(cfg.sack), t.ecn_ok.eq(cfg.ecn),
                          t.ece_pending.eq(0), t.cwr_pending.eq(0),
                          t.snd_shift.eq(0), t.rcv_shift.eq(0),
                          t.ts_recent.eq(0)]

    def issue_copy(self):
        """Offer the copy request ``cp`` to the RX copier this cycle; true when taken."""
        port, s = self.copy_port, self.s
        self.m.d.comb += [
            port.valid.eq(1), port.p.conn.eq(self.cid), port.p.buf_start.eq(s.buf_start),
            port.p.offset.eq(self.cp.offset), port.p.length.eq(self.cp.length),
            port.p.ring_pos.eq(self.cp.pos),
        ]
        return port.ready

    def request_lookup(self, op, remote_ip, remote_port, local_port):
        """Drive a request to the socket-pair lookup table this cycle."""
        req = self.lookup.request
        self.m.d.comb += [
            req.valid.eq(1), req.p.op.eq(op), req.p.tuple.remote_ip.eq(remote_ip),
            req.p.tuple.remote_port.eq(remote_port), req.p.tuple.local_port.eq(local_port),
        ]

    def syn_rto_floor(self):
        """RFC 6298 (5.7): after a SYN timed out, RTO starts data at 3 s at least."""
        t = self.t
        floor = min(3_000_000, self.cfg.rto_max_us)
        with self.m.If((t.backoff != 0) & (t.rto < floor)):
            self.m.d.sync += t.rto.eq(floor)

    def window_grew(self, new_edge):
        """The right edge ``new_edge`` is min(RCV.BUFF / 2, MSS) or more beyond the one
        last advertised (RFC 9293 s3.8.6.2.2: when to send a window update)."""
        grown = seq_diff(new_edge, self.t.rcv_adv)
        return (grown >= self.sws_step) & ~grown[31]

    def window_update_due(self):
        """A window update is worth a segment of its own: the right edge can move by
        min(RCV.BUFF / 2, MSS) (s3.8.6.2.2) and the window the peer has now is at most
        half the one it would get (as Linux's ``__tcp_cleanup_rbuf``), so that a host
        that reads as fast as text arrives does not add an ACK per read to the ACKs
        of the text (delayed ACKs, SHLD-18)."""
        t = self.t
        left = seq_diff(t.rcv_adv, t.rcv_nxt)
        small = left[31] | ((left << 1) <= self.rcv_wnd)
        return self.window_grew((t.rcv_nxt + self.rcv_wnd)[:32]) & small

    def reset_tcb(self, initial_rto):
        """The fields a new connection starts from (the id's generation bits stay).  A
        free id's TCB is CLOSED already: no state change."""
        from . import keepalive as ka
        t = self.t
        self.m.d.sync += [
            t.state.eq(TcpState.CLOSED), t.rto.eq(initial_rto),
            t.host_closed.eq(0), t.accepted.eq(0),
            t.fin_queued.eq(0), t.fin_received.eq(0), t.rcv_credit.eq(0),
            t.rtt_valid.eq(0), t.backoff.eq(0), t.snd_wnd.eq(0),
            t.srtt.eq(0), t.rttvar.eq(0), t.dlv_out.eq(0), t.timer_on.eq(0),
            t.ooo.eq(0), t.fin_held.eq(0), t.ack_pending.eq(0), t.quickack.eq(0),
            *(t.sack_rank[i].eq(i) for i in range(self.cfg.reassembly_intervals)),
            t.nodelay.eq(0), t.max_wnd.eq(0),
            t.ka_idle.eq(0), t.ka_probes.eq(0), t.ka_intvl.eq(ka.ticks(ka.DEFAULT_INTERVAL_S)),
            t.ka_count.eq(ka.DEFAULT_COUNT),
            # Until the handshake sets the initial window (hdl/tcp/recovery.py).
            t.cwnd.eq(self.cfg.initial_window * tcp.DEFAULT_MSS),
            t.ssthresh.eq(SSTHRESH_MAX), t.in_recovery.eq(0), t.dupacks.eq(0),
            t.rexmit.eq(0), t.retransmits.eq(0), t.cc_algo.eq(0), t.cc_state.eq(0),
            t.sb.eq(0), t.high_rxt.eq(0), t.rexmit_dup.eq(0), t.rexmit_lost.eq(0),
            t.rescued.eq(0), t.oow_sent.eq(0), t.ttl.eq(self.cfg.ip_ttl),
            t.dscp.eq(self.cfg.ip_dscp),
            t.icmp_reported.eq(0),
        ]
        self.offer_options()

    def ack_in_window(self, ack):
        """SND.UNA < SEG.ACK =< SND.MAX."""
        t = self.t
        return seq_lt(t.snd_una, ack) & ~seq_lt(t.snd_max, ack)
