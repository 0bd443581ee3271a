"""The TCP connection engine: RFC 9293 s3.10 event processing over TCBs in block RAM.

One event is processed at a time, start to finish, so a TCB is never seen half updated:
the engine reads the connection's TCB into a register, runs the RFC's steps for the
event in a few clock cycles, emits what the event produces (a segment, a copy of
received bytes into the RX ring, a delivery to the host, host events) and writes the
TCB back.  The events are (RFC 9293 s3.10 calls them "user calls", "arriving segments"
and "timeouts"):

- a received segment (s3.10.7), after the socket pair was looked up in
  :class:`~hdl.tcp.conn_table.ConnectionLookup`; a SYN for a listening port opens a new
  connection (passive open, s3.10.7.2); everything else for no connection goes to
  :class:`~hdl.tcp.reset.TcpReset` (s3.10.7.1);
- a host command (s3.10.1 OPEN, s3.10.4 CLOSE as SHUTDOWN/CLOSE, s3.10.5 ABORT, and
  LISTEN, ACCEPT, CREDIT; see :mod:`hdl.host_if`);
- the TX writer reporting new bytes from the host (s3.10.2 SEND);
- the RX delivery engine reporting bytes handed to the host (s3.10.3 RECEIVE: the
  window opens);
- the output queue: a connection that may have something to send (data, FIN, a
  window update);
- the timer scan: each connection in turn, to expire its retransmission or TIME-WAIT
  timer (s3.10.8), all timers counting the microsecond time base.

The sources are served round robin, so no source starves another.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from ..host_if import CommandOp, ErrorCode, EventKind, command_layout, event_layout
from ..proto import ethernet, tcp
from ..rx.meta import rx_meta_layout
from .conn_table import ConnectionLookup, ConnTableError, ConnTableOp
from .isn import IsnGenerator
from .rto import RtoBackoff, RtoEstimator
from .tcb import (
    TcpState,
    copy_layout,
    delivered_layout,
    delivery_layout,
    segment_layout,
    tcb_layout,
    tx_limit_layout,
    written_layout,
)

__all__ = ["TcpEngine", "ENGINE_COUNTERS", "TRACE_SOURCES", "trace_layout"]

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
    "tcp_out_of_order",  # in-window segments beyond RCV.NXT: data dropped, ACK sent
    "tcp_backlog_drops",  # SYNs to a listener whose backlog is full (or no free id)
    "tcp_host_errors",  # ERROR events
    "tcp_listen_drops",  # segments to a listener without SYN, ACK or RST (s3.10.7.2)
]

_SOURCES = ("delivered", "written", "cmd", "seg", "output", "timer")
#: ``trace.source`` values, by name.
TRACE_SOURCES = _SOURCES

#: One processed event, for coverage: the state before and after, and what the event was
#: (the source; the segment's flags and whether it carried data; the command).
trace_layout = data.StructLayout({
    "valid": 1,
    "source": range(len(_SOURCES)),
    "before": TcpState,
    "after": TcpState,
    "flags": 8,
    "data": 1,
    "op": CommandOp,
})


def _diff(a, b):
    """``a - b`` modulo 2**32 (sequence-number arithmetic, RFC 9293 s3.4)."""
    return (a - b)[:32]


def _lt(a, b):
    """``a < b`` in sequence space (the 32-bit difference is negative)."""
    return _diff(a, b)[31]


def _le(a, b):
    return ~_lt(b, a)


def _min(a, b):
    return Mux(a < b, a, b)


class TcpEngine(wiring.Component):
    """Connection state machine, TCB memory, listeners, timers and the host protocol.

    Ports
    -----
    seg_in : In(stream)
        Valid TCP segments (:func:`rx_meta_layout`); taken when the segment is finished
        with, which releases its frame buffer words.
    reset_meta : Out(stream)
        Segments for no connection, to :class:`TcpReset` (RST by s3.10.7.1).
    cmd : In(stream), evt : Out(stream)
        Host commands and events (:mod:`hdl.host_if`).
    segment : Out(stream)
        Segments to send (:func:`segment_layout`) to the transmitter.
    copy : Out(stream)
        Accepted payload to copy from the frame buffer to the RX ring; the transfer is
        the end of the copy.
    delivery : Out(stream), delivered : In(stream)
        RX ring bytes to hand to the host; the report that they were.
    written : In(stream)
        The TX writer's report of host bytes stored in the TX ring.
    limit_we, limit_addr, limit_data : Out
        The TX writer's view of each connection (:func:`tx_limit_layout`).
    arp_lookup : Out(stream), arp_result : In(stream)
        Next-hop MAC of an active open.
    now : In
        Microseconds since reset.
    mac_addr, ip_addr, netmask : In
    isn_key, isn_key_we, hash_key, hash_key_we : In
        Secret keys of the ISN function and the lookup hash (write-only).
    counters : Out
        One strobe per :data:`ENGINE_COUNTERS` entry.
    trace : Out
        :data:`trace_layout`, valid for a cycle after each event: what happened to which
        state (for the state-coverage report of the tests; unused in a build).
    """

    def __init__(self, config: ToeConfig, buffer_ptr_bits: int):
        self.config = config
        self._ptr_bits = buffer_ptr_bits
        super().__init__({
            "seg_in": In(stream.Signature(rx_meta_layout(buffer_ptr_bits))),
            "reset_meta": Out(stream.Signature(rx_meta_layout(buffer_ptr_bits))),
            "cmd": In(stream.Signature(command_layout(config))),
            "evt": Out(stream.Signature(event_layout(config))),
            "segment": Out(stream.Signature(segment_layout(config))),
            "copy": Out(stream.Signature(copy_layout(config, buffer_ptr_bits))),
            "delivery": Out(stream.Signature(delivery_layout(config))),
            "delivered": In(stream.Signature(delivered_layout(config))),
            "written": In(stream.Signature(written_layout(config))),
            "limit_we": Out(1),
            "limit_addr": Out(config.conn_bits),
            "limit_data": Out(tx_limit_layout()),
            "arp_lookup": Out(stream.Signature(data.StructLayout({"ip": 32}))),
            "arp_result": In(stream.Signature(data.StructLayout({"ok": 1, "mac": 48}))),
            "now": In(32),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "netmask": In(32),
            "isn_key": In(128),
            "isn_key_we": In(1),
            "hash_key": In(96),
            "hash_key_we": In(1),
            "counters": Out(len(ENGINE_COUNTERS)),
            "trace": Out(trace_layout),
        })
        #: The TCBs, one per connection id (a testbench may read or preload them).
        self.tcb_memory = memory.Memory(shape=tcb_layout(config), depth=config.connections,
                                        init=[])

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n = cfg.connections
        tx_ring = cfg.tx_ring_bytes
        rx_ring = cfg.rx_ring_bytes
        two_msl = 2 * cfg.msl_us
        strobe = {name: Signal(name=f"count_{name}") for name in ENGINE_COUNTERS}
        m.d.comb += self.counters.eq(Cat(strobe[name] for name in ENGINE_COUNTERS))

        # --- Blocks ------------------------------------------------------------------
        m.submodules.lookup = lookup = ConnectionLookup(n)
        m.submodules.isn = isn = IsnGenerator()
        m.submodules.rtt = rtt = RtoEstimator(cfg.rto_min_us, cfg.rto_max_us,
                                              cfg.rto_initial_us)
        m.submodules.backoff = backoff = RtoBackoff(cfg.rto_max_us)
        m.d.comb += [
            isn.now_us.eq(self.now),
            isn.key.eq(self.isn_key), isn.key_we.eq(self.isn_key_we),
            lookup.key.eq(self.hash_key), lookup.key_we.eq(self.hash_key_we),
        ]

        m.submodules.tcbs = tcbs = self.tcb_memory
        tcb_wr = tcbs.write_port()
        tcb_rd = tcbs.read_port(transparent_for=(tcb_wr,))

        # Free connection ids: ids never used yet come from ``fresh``; released ids
        # queue in ``free``.
        m.submodules.free = free = SyncFIFOBuffered(width=cfg.conn_bits, depth=n)
        fresh = Signal(range(n + 1))
        id_available = free.r_rdy | (fresh < n)
        next_id = Mux(free.r_rdy, free.r_data, fresh)

        # Connections that may have something to send; each at most once
        # (``output_queued`` in the TCB).
        m.submodules.output_queue = oq = SyncFIFOBuffered(width=cfg.conn_bits, depth=n)

        # Listeners (LISTEN state, RFC 9293 s3.10.7.2), a few registers each.
        nl = cfg.listeners
        l_valid = Array(Signal(name=f"listen{i}_valid") for i in range(nl))
        l_port = Array(Signal(16, name=f"listen{i}_port") for i in range(nl))
        l_backlog = Array(Signal(16, name=f"listen{i}_backlog") for i in range(nl))
        l_pending = Array(Signal(16, name=f"listen{i}_pending") for i in range(nl))

        # --- Working registers ---------------------------------------------------------
        t = Signal(tcb_layout(cfg))  # the TCB being processed
        cid = Signal(cfg.conn_bits)
        s = Signal(rx_meta_layout(self._ptr_bits))  # the segment being processed
        c = Signal(command_layout(cfg))  # the command being processed
        src = Signal(range(len(_SOURCES)))
        last_src = Signal(range(len(_SOURCES)))
        w_info = Signal(written_layout(cfg))
        d_end = Signal(32)
        scan = Signal(cfg.conn_bits)
        listener = Signal(range(nl))  # matched/free listener
        l_hit = Signal()
        write_tcb = Signal()
        before = Signal(TcpState)  # the state when the event started (for ``trace``)
        trace_listen = Signal()  # a LISTEN/UNLISTEN: no TCB, still a transition
        emitted = Signal()  # a segment was sent for this event

        # What the event produces.
        do_seg = Signal()
        seg = Signal(data.StructLayout({
            "flags": 8, "seq": 32, "pos": 32, "len": 16, "mss": 1}))
        do_copy = Signal()
        cp = Signal(data.StructLayout({"offset": 16, "length": 16, "pos": 32}))
        do_dlv = Signal()
        do_delete = Signal()
        del_wait = Signal()
        do_limit = Signal()
        do_enqueue = Signal()
        do_free = Signal()
        do_take = Signal()  # finish the segment (release its frame)
        ev_slot = data.StructLayout({"on": 1, "kind": EventKind, "code": ErrorCode,
                                     "value": 32})
        # Emitted in order: open/error, ACKED, PEER_FIN, close/reset/timeout, RELEASED.
        ev = [Signal(ev_slot, name=f"ev{i}") for i in range(5)]
        ev_listen = Signal()  # events 0 carry the command's port and tag

        # --- Sequence-space views of the TCB and the segment -------------------------
        flags = s.tcp_flags
        f_fin, f_syn, f_rst = flags[0], flags[1], flags[2]
        f_ack = flags[4]
        seg_len = Signal(17)
        m.d.comb += seg_len.eq(s.tcp_payload_len + f_syn + f_fin)
        data_seq = Signal(32)  # the sequence number of the first byte of text
        m.d.comb += data_seq.eq(s.tcp_seq + f_syn)
        payload_at = Signal(16)
        m.d.comb += payload_at.eq(ethernet.HEADER_BYTES + (s.ip_ihl << 2) + (s.tcp_doff << 2))

        rcv_data_end = (t.rcv_nxt - t.fin_received)[:32]  # the FIN is no byte to deliver
        rx_used = _diff(t.rcv_nxt, t.rcv_read)
        # Received bytes never handed to the delivery engine.  (Bytes handed over but not
        # yet reported delivered may be in the host's hands already: not counted.)
        unread = rcv_data_end != t.rcv_dlv
        rx_free = Signal(18)
        m.d.comb += rx_free.eq(rx_ring - rx_used)
        rcv_wnd = Signal(16)
        m.d.comb += rcv_wnd.eq(_min(rx_free, 0xFFFF))
        peer_mss = Mux(s.tcp_options.mss_valid, _min(s.tcp_options.mss, cfg.mss),
                       tcp.DEFAULT_MSS)

        expired = ~_lt(self.now, t.deadline)
        m.d.comb += [backoff.rto.eq(t.rto), backoff.shift.eq(t.backoff)]

        synchronized = Signal()
        m.d.comb += synchronized.eq(
            (t.state == TcpState.ESTABLISHED) | (t.state == TcpState.FIN_WAIT_1)
            | (t.state == TcpState.FIN_WAIT_2) | (t.state == TcpState.CLOSE_WAIT)
            | (t.state == TcpState.CLOSING) | (t.state == TcpState.LAST_ACK)
            | (t.state == TcpState.TIME_WAIT))
        closing_sends_fin = ((t.state == TcpState.FIN_WAIT_1) | (t.state == TcpState.CLOSING)
                             | (t.state == TcpState.LAST_ACK))

        # Challenge ACK budget (RFC 5961 s7), shared by all connections, per second.
        budget = Signal(range(cfg.challenge_acks_per_s + 1), init=cfg.challenge_acks_per_s)
        budget_since = Signal(32)
        with m.If(_diff(self.now, budget_since) >= 1_000_000):
            m.d.sync += [budget.eq(cfg.challenge_acks_per_s), budget_since.eq(self.now)]

        # --- Helpers that queue the event's products -----------------------------------
        def send(flags_value, seq, pos=0, length=0, mss=0):
            """Queue a segment; its ACK field is the event's final RCV.NXT (at EMIT)."""
            return [
                do_seg.eq(1),
                seg.flags.eq(flags_value),
                seg.seq.eq(seq),
                seg.pos.eq(pos),
                seg.len.eq(length),
                seg.mss.eq(mss),
            ]

        def send_ack():
            """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
            return send(tcp.ACK_FLAG, t.snd_nxt)

        def challenge_ack():
            """RFC 5961 s3.2, s4.2, s5.2: an ACK for RCV.NXT, rate limited (s7)."""
            with m.If(budget != 0):
                m.d.sync += send_ack()
                m.d.sync += budget.eq(budget - 1)
                m.d.comb += strobe["tcp_challenge_acks"].eq(1)
            with m.Else():
                m.d.comb += strobe["tcp_challenge_limited"].eq(1)

        def event(slot, kind, code=ErrorCode.NONE, value=0):
            return [ev[slot].on.eq(1), ev[slot].kind.eq(kind), ev[slot].code.eq(code),
                    ev[slot].value.eq(value)]

        def error(code):
            m.d.comb += strobe["tcp_host_errors"].eq(1)
            return event(0, EventKind.ERROR, code)

        def start_timer(us):
            return [t.timer_on.eq(1), t.deadline.eq((self.now + us)[:32])]

        def to_closed():
            """Enter CLOSED: the socket pair leaves the lookup table."""
            return [t.state.eq(TcpState.CLOSED), t.timer_on.eq(0), do_delete.eq(1),
                    t.rcv_credit.eq(0)]

        def begin_close():
            """CLOSE of RFC 9293 s3.10.4 (our SHUTDOWN): FIN after the queued data."""
            m.d.sync += [t.fin_queued.eq(1), do_limit.eq(1)]
            with m.Switch(t.state):
                with m.Case(TcpState.ESTABLISHED):
                    m.d.sync += t.state.eq(TcpState.FIN_WAIT_1)
                    enqueue()
                with m.Case(TcpState.CLOSE_WAIT):
                    m.d.sync += t.state.eq(TcpState.LAST_ACK)
                    enqueue()
                with m.Case(TcpState.SYN_RECEIVED):
                    # "If no SENDs have been issued ... form a FIN segment and send
                    # it, and enter FIN-WAIT-1"; else after ESTABLISHED (ACK step).
                    with m.If(t.snd_end == t.snd_nxt):
                        m.d.sync += t.state.eq(TcpState.FIN_WAIT_1)
                        enqueue()

        def syn_rto_floor():
            """RFC 6298 (5.7): after a SYN timed out, RTO starts data at 3 s at least."""
            floor = min(3_000_000, cfg.rto_max_us)
            with m.If((t.backoff != 0) & (t.rto < floor)):
                m.d.sync += t.rto.eq(floor)

        def enqueue():
            with m.If(~t.output_queued):
                m.d.sync += [do_enqueue.eq(1), t.output_queued.eq(1)]

        def deliver_more(credit):
            """Hand more received bytes to the host if it has credit (RFC 9293 s3.10.3)."""
            pending = _diff(rcv_data_end, t.rcv_dlv)
            length = _min(pending, credit)
            with m.If((pending != 0) & (credit != 0) & (t.dlv_out != 15)):
                m.d.sync += [
                    do_dlv.eq(1),
                    dlv.pos.eq(t.rcv_dlv),
                    dlv.length.eq(length),
                    t.rcv_dlv.eq(t.rcv_dlv + length),
                    t.rcv_credit.eq(credit - length),
                    t.dlv_out.eq(t.dlv_out + 1),
                ]

        dlv = Signal(delivery_layout(cfg))
        # The output routine's intermediate results (one cycle each).
        o_avail = Signal(32)
        o_room = Signal(32)
        o_length = Signal(16)
        o_fin_left = Signal()
        o_update = Signal()

        def request_lookup(op, remote_ip, remote_port, local_port):
            m.d.comb += [
                lookup.request.valid.eq(1),
                lookup.request.p.op.eq(op),
                lookup.request.p.tuple.remote_ip.eq(remote_ip),
                lookup.request.p.tuple.remote_port.eq(remote_port),
                lookup.request.p.tuple.local_port.eq(local_port),
            ]

        def emit_event(slot):
            m.d.comb += [self.evt.p.kind.eq(slot.kind), self.evt.p.code.eq(slot.code),
                         self.evt.p.value.eq(slot.value)]
            with m.If(self.evt.ready):
                m.d.sync += slot.on.eq(0)

        # --- Source selection (round robin) ------------------------------------------
        valid = Signal(len(_SOURCES))
        m.d.comb += valid.eq(Cat(
            self.delivered.valid, self.written.valid, self.cmd.valid, self.seg_in.valid,
            oq.r_rdy, ~lookup.clearing))
        pick = Signal(range(len(_SOURCES)))
        pick_any = Signal()
        with m.Switch(last_src):
            for last in range(len(_SOURCES)):
                with m.Case(last):
                    order = [(last + 1 + k) % len(_SOURCES) for k in range(len(_SOURCES))]
                    for k in reversed(order):
                        with m.If(valid[k]):
                            m.d.comb += [pick.eq(k), pick_any.eq(1)]

        # --- The event FSM -------------------------------------------------------------
        m.d.comb += [
            tcb_rd.addr.eq(cid),
            tcb_rd.en.eq(1),
            tcb_wr.addr.eq(cid),
            tcb_wr.data.eq(t),
        ]
        new_tcb_fields = [
            t.state.eq(TcpState.CLOSED), t.host_closed.eq(0), t.accepted.eq(0),
            t.fin_queued.eq(0), t.fin_received.eq(0), t.rcv_credit.eq(0),
            t.rtt_valid.eq(0), t.backoff.eq(0), t.snd_wnd.eq(0), t.rto.eq(rtt.initial_rto),
            t.srtt.eq(0), t.rttvar.eq(0), t.dlv_out.eq(0), t.timer_on.eq(0),
        ]

        m.d.sync += self.trace.valid.eq(0)
        with m.FSM(name="engine", init="CLEAR") as fsm:
            with m.State("CLEAR"):
                # Block RAM keeps its contents through a reset: empty every TCB first.
                m.d.comb += [tcb_wr.addr.eq(scan), tcb_wr.data.eq(0), tcb_wr.en.eq(1),
                             self.limit_we.eq(1), self.limit_data.eq(0)]
                m.d.sync += scan.eq(scan + 1)
                with m.If(scan == n - 1):
                    m.next = "IDLE"

            with m.State("IDLE"):
                m.d.sync += [
                    do_seg.eq(0), do_copy.eq(0), do_dlv.eq(0), do_delete.eq(0),
                    del_wait.eq(0), do_limit.eq(0), do_enqueue.eq(0), do_free.eq(0),
                    do_take.eq(0), write_tcb.eq(0), ev_listen.eq(0), trace_listen.eq(0),
                    emitted.eq(0),
                ] + [e.on.eq(0) for e in ev]
                with m.If(pick_any):
                    m.d.sync += [src.eq(pick), last_src.eq(pick)]
                    with m.Switch(pick):
                        with m.Case(0):
                            m.d.comb += self.delivered.ready.eq(1)
                            m.d.sync += [cid.eq(self.delivered.p.conn),
                                         d_end.eq(self.delivered.p.end)]
                            m.next = "READ"
                        with m.Case(1):
                            m.d.comb += self.written.ready.eq(1)
                            m.d.sync += [cid.eq(self.written.p.conn), w_info.eq(self.written.p)]
                            m.next = "READ"
                        with m.Case(2):
                            m.d.comb += self.cmd.ready.eq(1)
                            m.d.sync += [c.eq(self.cmd.p), cid.eq(self.cmd.p.conn)]
                            m.next = "COMMAND"
                        with m.Case(3):
                            m.d.sync += [s.eq(self.seg_in.p), do_take.eq(1)]
                            m.next = "LOOKUP"
                        with m.Case(4):
                            m.d.comb += oq.r_en.eq(1)
                            m.d.sync += cid.eq(oq.r_data)
                            m.next = "READ"
                        with m.Case(5):
                            m.d.sync += [cid.eq(scan), scan.eq(scan + 1)]
                            m.next = "READ"

            with m.State("READ"):
                m.next = "LOAD"

            with m.State("LOAD"):
                m.d.sync += [t.eq(tcb_rd.data), write_tcb.eq(1), before.eq(tcb_rd.data.state)]
                with m.Switch(src):
                    with m.Case(0):
                        m.next = "DELIVERED"
                    with m.Case(1):
                        m.next = "WRITTEN"
                    with m.Case(2):
                        m.next = "COMMAND_TCB"
                    with m.Case(3):
                        m.next = "SEGMENT"
                    with m.Case(4):
                        m.d.sync += t.output_queued.eq(0)
                        m.next = "OUTPUT"
                    with m.Case(5):
                        m.next = "TIMER"

            # ---------------- Host commands ----------------
            with m.State("COMMAND"):
                port_match = Signal(nl)
                free_slot = Signal(nl)
                m.d.comb += [
                    port_match.eq(Cat(l_valid[i] & (l_port[i] == c.port) for i in range(nl))),
                    free_slot.eq(Cat(~l_valid[i] for i in range(nl))),
                ]
                match_index = Signal(range(nl))
                free_index = Signal(range(nl))
                for i in reversed(range(nl)):
                    with m.If(port_match[i]):
                        m.d.comb += match_index.eq(i)
                    with m.If(free_slot[i]):
                        m.d.comb += free_index.eq(i)
                m.d.sync += ev_listen.eq(1)
                m.next = "EMIT"
                with m.Switch(c.op):
                    with m.Case(CommandOp.LISTEN):
                        with m.If(c.port == 0):
                            m.d.sync += error(ErrorCode.BAD_PORT)
                        with m.Elif(port_match.any()):
                            m.d.sync += error(ErrorCode.PORT_IN_USE)
                        with m.Elif(~free_slot.any()):
                            m.d.sync += error(ErrorCode.NO_LISTENER_SLOT)
                        with m.Else():
                            m.d.sync += [
                                l_valid[free_index].eq(1), l_port[free_index].eq(c.port),
                                l_backlog[free_index].eq(c.value[:16]),
                                l_pending[free_index].eq(0),
                            ]
                            m.d.sync += event(0, EventKind.LISTENING)
                            m.d.sync += [trace_listen.eq(1), before.eq(TcpState.CLOSED),
                                         t.state.eq(TcpState.LISTEN)]
                    with m.Case(CommandOp.UNLISTEN):
                        with m.If(port_match.any()):
                            m.d.sync += l_valid[match_index].eq(0)
                            m.d.sync += event(0, EventKind.UNLISTENED)
                            m.d.sync += [trace_listen.eq(1), before.eq(TcpState.LISTEN),
                                         t.state.eq(TcpState.CLOSED)]
                        with m.Else():
                            m.d.sync += error(ErrorCode.NOT_LISTENING)
                    with m.Case(CommandOp.CONNECT):
                        # MUST-46: no OPEN to a broadcast or multicast address.
                        bad_address = ((c.addr == 0) | (c.addr[28:] == 0xE)
                                       | (c.addr[28:] == 0xF)
                                       | ((c.addr | self.netmask) == 0xFFFF_FFFF))
                        # RFC 1122 s3.2.1.3: 127/8 is never sent on a network, and
                        # the engine's own address is no peer.
                        bad_address |= (c.addr[24:] == 127) | (c.addr == self.ip_addr)
                        with m.If(bad_address):
                            m.d.sync += error(ErrorCode.BAD_ADDRESS)
                        with m.Elif((c.port == 0) | (c.value[:16] == 0)):
                            m.d.sync += error(ErrorCode.BAD_PORT)
                        with m.Elif(id_available):
                            m.d.sync += cid.eq(next_id)
                            with m.If(free.r_rdy):
                                m.d.comb += free.r_en.eq(1)
                            with m.Else():
                                m.d.sync += fresh.eq(fresh + 1)
                            m.next = "CONNECT_READ"
                        with m.Else():
                            m.d.sync += error(ErrorCode.NO_FREE_CONN)
                    with m.Case(CommandOp.ACCEPT, CommandOp.SHUTDOWN, CommandOp.CLOSE,
                                CommandOp.ABORT, CommandOp.CREDIT):
                        m.d.sync += ev_listen.eq(0)
                        m.next = "READ"
                    with m.Default():
                        m.d.sync += error(ErrorCode.BAD_COMMAND)

            with m.State("CONNECT_READ"):
                m.next = "CONNECT_LOAD"

            with m.State("CONNECT_LOAD"):
                # Keep the id's generation bits; everything else starts afresh.
                m.d.sync += t.eq(tcb_rd.data)
                m.d.sync += new_tcb_fields
                m.d.sync += [
                    before.eq(TcpState.CLOSED),
                    t.remote_ip.eq(c.addr), t.remote_port.eq(c.port),
                    t.local_port.eq(c.value[:16]), t.passive.eq(0),
                    t.rcv_nxt.eq(0), t.rcv_read.eq(0), t.rcv_dlv.eq(0), t.rcv_adv.eq(0),
                    write_tcb.eq(1), ev_listen.eq(0),
                ]
                m.next = "CONNECT_ARP"

            with m.State("CONNECT_ARP"):
                m.d.comb += [self.arp_lookup.valid.eq(1), self.arp_lookup.p.ip.eq(t.remote_ip)]
                with m.If(self.arp_lookup.ready):
                    m.next = "CONNECT_ARP_WAIT"

            with m.State("CONNECT_ARP_WAIT"):
                m.d.comb += self.arp_result.ready.eq(1)
                with m.If(self.arp_result.valid):
                    m.d.sync += t.remote_mac.eq(self.arp_result.p.mac)
                    with m.If(self.arp_result.p.ok):
                        m.next = "OPEN_INSERT"
                    with m.Else():
                        m.d.sync += [do_free.eq(1)] + error(ErrorCode.NO_ROUTE)
                        m.next = "EMIT"

            # An open (active or passive): the socket pair into the lookup table, then
            # the ISN, then the SYN or SYN-ACK.
            with m.State("OPEN_INSERT"):
                request_lookup(ConnTableOp.INSERT, t.remote_ip, t.remote_port, t.local_port)
                m.d.comb += lookup.request.p.conn_id.eq(cid)
                with m.If(lookup.request.ready):
                    m.next = "OPEN_INSERTED"

            with m.State("OPEN_INSERTED"):
                m.d.comb += lookup.response.ready.eq(1)
                with m.If(lookup.response.valid):
                    with m.If(lookup.response.p.ok):
                        m.next = "OPEN_ISN"
                    with m.Else():
                        m.d.sync += do_free.eq(1)
                        with m.If(t.passive):
                            m.d.comb += strobe["tcp_backlog_drops"].eq(1)
                        with m.Elif(lookup.response.p.error == ConnTableError.DUPLICATE):
                            m.d.sync += error(ErrorCode.PORT_IN_USE)
                        with m.Else():
                            m.d.sync += error(ErrorCode.TABLE_FULL)
                        m.next = "EMIT"

            with m.State("OPEN_ISN"):
                m.d.comb += [
                    isn.request.valid.eq(1),
                    isn.request.p.local_ip.eq(self.ip_addr),
                    isn.request.p.local_port.eq(t.local_port),
                    isn.request.p.remote_ip.eq(t.remote_ip),
                    isn.request.p.remote_port.eq(t.remote_port),
                ]
                with m.If(isn.request.ready):
                    m.next = "OPEN_ISN_WAIT"

            with m.State("OPEN_ISN_WAIT"):
                m.d.comb += isn.response.ready.eq(1)
                iss = isn.response.p.isn
                with m.If(isn.response.valid):
                    m.d.sync += [
                        t.iss.eq(iss), t.snd_una.eq(iss),
                        t.snd_nxt.eq(iss + 1), t.snd_max.eq(iss + 1), t.snd_end.eq(iss + 1),
                        t.rtt_active.eq(1), t.rtt_seq.eq(iss + 1), t.rtt_time.eq(self.now),
                        t.tx_gen.eq(~t.tx_gen), do_limit.eq(1),
                    ] + start_timer(t.rto)
                    with m.If(t.passive):
                        m.d.sync += [
                            t.state.eq(TcpState.SYN_RECEIVED),
                            l_pending[t.listener].eq(l_pending[t.listener] + 1),
                        ]
                        m.d.sync += send(tcp.SYN | tcp.ACK_FLAG, iss, mss=1)
                        m.d.comb += strobe["tcp_passive_opens"].eq(1)
                    with m.Else():
                        m.d.sync += [
                            t.state.eq(TcpState.SYN_SENT), t.owned.eq(1),
                            t.rcv_nxt.eq(0),
                        ]
                        m.d.sync += send(tcp.SYN, iss, mss=1)
                        m.d.sync += event(0, EventKind.CONNECTING)
                        m.d.comb += strobe["tcp_active_opens"].eq(1)
                    m.next = "FINISH"

            with m.State("COMMAND_TCB"):
                m.next = "FINISH"
                with m.If(~t.owned):
                    m.d.sync += error(ErrorCode.UNKNOWN_CONN)
                with m.Else():
                    with m.Switch(c.op):
                        with m.Case(CommandOp.ACCEPT):
                            with m.If(~t.passive | t.accepted):
                                m.d.sync += error(ErrorCode.BAD_STATE)
                            with m.Else():
                                m.d.sync += t.accepted.eq(1)
                                with m.If(l_pending[t.listener] != 0):
                                    m.d.sync += l_pending[t.listener].eq(
                                        l_pending[t.listener] - 1)
                        with m.Case(CommandOp.CREDIT):
                            with m.If(~t.host_closed):
                                # The credit is kept whether or not a delivery can start
                                # now (none may while 15 are outstanding); a delivery
                                # takes its length off (the later assignment wins).
                                m.d.sync += t.rcv_credit.eq(t.rcv_credit + c.value)
                                deliver_more(t.rcv_credit + c.value)
                        with m.Case(CommandOp.SHUTDOWN):
                            with m.If(t.fin_queued):
                                m.d.sync += error(ErrorCode.BAD_STATE)
                            with m.Else():
                                begin_close()
                        with m.Case(CommandOp.CLOSE):
                            with m.If(t.host_closed):
                                m.d.sync += error(ErrorCode.BAD_STATE)
                            with m.Elif(unread & synchronized
                                        & (t.state != TcpState.TIME_WAIT)):
                                # SHLD-3 (RFC 2525 s2.17): CLOSE with received data the
                                # host has not taken resets the connection, so the peer
                                # knows the data was lost.
                                m.d.sync += send(tcp.RST | tcp.ACK_FLAG, t.snd_nxt)
                                m.d.comb += strobe["tcp_rst_out"].eq(1)
                                m.d.sync += [t.host_closed.eq(1), t.fin_queued.eq(1),
                                             t.rcv_credit.eq(0), do_limit.eq(1)]
                                m.d.sync += to_closed()
                                m.d.sync += event(3, EventKind.CLOSED, ErrorCode.UNREAD_DATA)
                            with m.Else():
                                m.d.sync += [t.host_closed.eq(1), t.rcv_credit.eq(0)]
                                # value bit 0: the end of the stream comes in-band on
                                # the TX stream (after the data still on its way).
                                with m.If(~t.fin_queued & ~c.value[0]):
                                    begin_close()
                                with m.If(t.state == TcpState.SYN_SENT):
                                    # s3.10.4: CLOSE in SYN-SENT deletes the TCB.
                                    m.d.sync += to_closed()
                        with m.Case(CommandOp.ABORT):
                            # s3.10.5: RST in the synchronized states and SYN-RECEIVED.
                            with m.If(synchronized | (t.state == TcpState.SYN_RECEIVED)):
                                with m.If(t.state != TcpState.TIME_WAIT):
                                    m.d.sync += send(tcp.RST | tcp.ACK_FLAG, t.snd_nxt)
                                    m.d.comb += strobe["tcp_rst_out"].eq(1)
                            m.d.sync += [t.host_closed.eq(1), t.fin_queued.eq(1),
                                         do_limit.eq(1)]
                            with m.If(t.state != TcpState.CLOSED):
                                m.d.sync += to_closed()

            # ---------------- TX writer and RX delivery reports ----------------
            with m.State("WRITTEN"):
                m.next = "FINISH"
                with m.If(w_info.unknown | ~t.owned):
                    m.d.sync += error(ErrorCode.UNKNOWN_CONN)
                with m.Else():
                    with m.If(w_info.shut):
                        m.d.sync += error(ErrorCode.TX_AFTER_SHUTDOWN)
                    with m.Elif(w_info.overflow & (t.state != TcpState.CLOSED)):
                        # Bytes beyond the send credit were discarded: the stream can
                        # never be whole again, so the connection is reset (the TX
                        # writer stores nothing more of it; hdl/host_if.py).
                        with m.If(synchronized | (t.state == TcpState.SYN_RECEIVED)):
                            with m.If(t.state != TcpState.TIME_WAIT):
                                m.d.sync += send(tcp.RST | tcp.ACK_FLAG, t.snd_nxt)
                                m.d.comb += strobe["tcp_rst_out"].eq(1)
                        m.d.sync += [t.fin_queued.eq(1), do_limit.eq(1)]
                        m.d.sync += to_closed()
                        m.d.sync += event(3, EventKind.RESET, ErrorCode.TX_OVERFLOW)
                    with m.If(_lt(t.snd_end, w_info.end)):
                        m.d.sync += t.snd_end.eq(w_info.end)
                        enqueue()
                    with m.If(w_info.fin & ~t.fin_queued & ~w_info.overflow):
                        begin_close()

            with m.State("DELIVERED"):
                m.next = "FINISH"
                m.d.sync += t.dlv_out.eq(t.dlv_out - 1)
                with m.If(t.host_closed & (t.dlv_out == 1)):
                    m.d.sync += t.rcv_read.eq(t.rcv_dlv)  # and what was discarded since
                with m.Else():
                    m.d.sync += t.rcv_read.eq(d_end)
                # RFC 9293 s3.8.6.2.2: announce the opened window once it grew by
                # min(RCV.BUFF / 2, MSS) beyond what was advertised.
                new_edge = (d_end + rx_ring)[:32]
                with m.If(synchronized & ~t.fin_received
                          & (_diff(new_edge, t.rcv_adv) >= min(rx_ring // 2, cfg.mss))
                          & ~_diff(new_edge, t.rcv_adv)[31]):
                    enqueue()

            # ---------------- Output (s3.10.2 SEND, s3.8.6 windows) ----------------
            with m.State("OUTPUT"):
                # Three cycles, each ending in registers, so that no path chains more
                # than two 32-bit carry chains: (1) bytes queued and window room,
                # (2) the segment length, (3) the segment and the new SND.NXT.
                avail = _diff(t.snd_end, t.snd_nxt)
                room = _diff((t.snd_una + t.snd_wnd)[:32], t.snd_nxt)
                new_edge = (t.rcv_nxt + rcv_wnd)[:32]
                m.d.sync += [
                    o_avail.eq(Mux(~avail[31], avail, 0)),
                    o_fin_left.eq(~avail[31]),  # the FIN is not sent yet
                    o_room.eq(Mux(~room[31], room, 0)),
                    o_update.eq((_diff(new_edge, t.rcv_adv) >= min(rx_ring // 2, cfg.mss))
                                & ~_diff(new_edge, t.rcv_adv)[31]),
                ]
                m.next = "OUTPUT_LENGTH"

            with m.State("OUTPUT_LENGTH"):
                m.d.sync += o_length.eq(_min(_min(o_avail, o_room), t.snd_mss))
                m.next = "OUTPUT_SEND"

            with m.State("OUTPUT_SEND"):
                m.next = "FINISH"
                data_pending = o_avail != 0
                room_ok = o_room != 0
                length = o_length
                sending = ((t.state == TcpState.ESTABLISHED) | (t.state == TcpState.CLOSE_WAIT)
                           | closing_sends_fin)
                last = o_fin_left & (length == o_avail)  # this segment takes every byte
                fin_now = closing_sends_fin & t.fin_queued & last
                with m.If(sending & ((length != 0) | (fin_now & ~data_pending))):
                    m.d.sync += send(
                        tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0)
                        | Mux((length != 0) & last, tcp.PSH, 0),
                        t.snd_nxt, pos=t.snd_nxt, length=length)
                    next_nxt = (t.snd_nxt + length + fin_now)[:32]
                    m.d.sync += t.snd_nxt.eq(next_nxt)
                    # SND.NXT never passes SND.MAX except by sending new data, and then
                    # SND.NXT == SND.MAX before (RFC 6298 / Karn: time new data only).
                    with m.If(t.snd_nxt == t.snd_max):
                        m.d.sync += t.snd_max.eq(next_nxt)
                        with m.If(~t.rtt_active):
                            m.d.sync += [t.rtt_active.eq(1), t.rtt_seq.eq(next_nxt),
                                         t.rtt_time.eq(self.now)]
                    with m.Elif(_lt(t.snd_max, next_nxt)):
                        m.d.sync += t.snd_max.eq(next_nxt)
                    with m.If(~t.timer_on):
                        m.d.sync += start_timer(backoff.backed_off)  # RFC 6298 (5.1)
                    with m.If((length != 0) & ~last & (o_room > length)):
                        enqueue()
                with m.Elif(sending & data_pending & ~room_ok & ~t.timer_on):
                    # Zero window: the timer will send a probe (MUST-36).
                    m.d.sync += start_timer(backoff.backed_off)
                with m.Elif(synchronized & (t.state != TcpState.TIME_WAIT) & o_update):
                    m.d.sync += send_ack()  # window update

            # ---------------- Timers (s3.10.8) ----------------
            with m.State("TIMER"):
                m.next = "FINISH"
                with m.If(t.timer_on & expired):
                    with m.If(t.state == TcpState.TIME_WAIT):
                        m.d.sync += to_closed()
                        m.d.sync += event(3, EventKind.CLOSED)
                    with m.Elif(t.state == TcpState.CLOSED):
                        m.d.sync += t.timer_on.eq(0)
                    with m.Else():
                        syn_phase = ((t.state == TcpState.SYN_SENT)
                                     | (t.state == TcpState.SYN_RECEIVED))
                        limit_r2 = Mux(syn_phase, cfg.r2_syn_retries, cfg.r2_retries)
                        with m.If(t.backoff >= limit_r2):
                            # R2: give up (MUST-20..23).
                            m.d.sync += to_closed()
                            m.d.comb += strobe["tcp_timeouts"].eq(1)
                            with m.If(t.owned):
                                m.d.sync += event(3, EventKind.TIMEOUT)
                            with m.If(t.passive & ~t.accepted):
                                m.d.sync += l_pending[t.listener].eq(
                                    Mux(l_pending[t.listener] != 0,
                                        l_pending[t.listener] - 1, 0))
                        with m.Else():
                            m.d.sync += [t.backoff.eq(t.backoff + 1), t.rtt_active.eq(0)]
                            m.d.comb += strobe["tcp_retransmits"].eq(1)
                            with m.If(t.backoff + 1 == cfg.r1_retries):
                                m.d.comb += strobe["tcp_r1"].eq(1)
                            m.d.sync += [
                                o_avail.eq(_diff(t.snd_end, t.snd_una)),  # outstanding
                                o_room.eq(Mux(t.snd_wnd == 0, 1, t.snd_wnd)),  # or a probe
                            ]
                            m.next = "RETRANSMIT_LENGTH"

            with m.State("RETRANSMIT_LENGTH"):
                m.d.sync += o_length.eq(_min(_min(o_avail, o_room), t.snd_mss))
                m.next = "RETRANSMIT"

            with m.State("RETRANSMIT"):
                m.next = "FINISH"
                # RFC 6298 (5.5)-(5.6): back off, restart the timer, resend the earliest
                # unacknowledged segment.  Go back N: SND.NXT returns to SND.UNA and the
                # output routine sends the rest.
                m.d.sync += start_timer(backoff.backed_off)
                with m.Switch(t.state):
                    with m.Case(TcpState.SYN_SENT):
                        m.d.sync += send(tcp.SYN, t.iss, mss=1)
                    with m.Case(TcpState.SYN_RECEIVED):
                        m.d.sync += send(tcp.SYN | tcp.ACK_FLAG, t.iss, mss=1)
                    with m.Default():
                        with m.If(t.snd_una == t.iss):
                            # Our SYN is still unacknowledged (CLOSE in SYN-RECEIVED).
                            m.d.sync += send(tcp.SYN | tcp.ACK_FLAG, t.iss, mss=1)
                        with m.Else():
                            length = o_length
                            fin_only = t.fin_queued & (o_avail == 0)
                            last = length == o_avail  # up to the end of the queued data
                            fin_now = closing_sends_fin & t.fin_queued & last
                            next_nxt = (t.snd_una + length + fin_now)[:32]
                            with m.If((length != 0) | fin_only):
                                m.d.sync += send(
                                    tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0),
                                    t.snd_una, pos=t.snd_una, length=length)
                                m.d.sync += t.snd_nxt.eq(next_nxt)
                                with m.If(_lt(t.snd_max, next_nxt)):
                                    # A zero-window probe sends a byte never sent before.
                                    m.d.sync += t.snd_max.eq(next_nxt)
                                with m.If(~last):
                                    enqueue()
                            with m.Else():
                                m.d.sync += t.timer_on.eq(0)

            # ---------------- Segment arrival (s3.10.7) ----------------
            with m.State("LOOKUP"):
                request_lookup(ConnTableOp.LOOKUP, s.ip_src, s.tcp_sport, s.tcp_dport)
                with m.If(lookup.request.ready):
                    m.next = "LOOKUP_WAIT"

            with m.State("LOOKUP_WAIT"):
                m.d.comb += lookup.response.ready.eq(1)
                hits = Cat(l_valid[i] & (l_port[i] == s.tcp_dport) for i in range(nl))
                for i in reversed(range(nl)):
                    with m.If(hits[i]):
                        m.d.sync += listener.eq(i)
                m.d.sync += l_hit.eq(hits.any())
                with m.If(lookup.response.valid):
                    with m.If(lookup.response.p.found):
                        m.d.sync += cid.eq(lookup.response.p.conn_id)
                        m.next = "READ"
                    with m.Else():
                        m.next = "NO_CONNECTION"

            with m.State("NO_CONNECTION"):
                # s3.10.7.2 LISTEN: first an RST is ignored (the reset handler never
                # answers one), second an ACK is answered with a reset, third a SYN
                # opens a connection, fourth anything else is dropped.
                with m.If(l_hit & ~f_rst & ~f_ack & ~f_syn):
                    m.d.comb += strobe["tcp_listen_drops"].eq(1)
                    m.next = "EMIT"
                with m.Elif(l_hit & f_syn & ~f_rst & ~f_ack):
                    with m.If((l_pending[listener] < l_backlog[listener]) & id_available):
                        m.d.sync += cid.eq(next_id)
                        with m.If(free.r_rdy):
                            m.d.comb += free.r_en.eq(1)
                        with m.Else():
                            m.d.sync += fresh.eq(fresh + 1)
                        m.next = "PASSIVE_READ"
                    with m.Else():
                        m.d.comb += strobe["tcp_backlog_drops"].eq(1)
                        m.next = "EMIT"
                with m.Else():
                    m.next = "TO_RESET"

            with m.State("TO_RESET"):
                m.d.comb += [self.reset_meta.valid.eq(1), self.reset_meta.p.eq(s)]
                with m.If(self.reset_meta.ready):
                    m.next = "EMIT"

            with m.State("PASSIVE_READ"):
                m.next = "PASSIVE_LOAD"

            with m.State("PASSIVE_LOAD"):
                m.d.sync += t.eq(tcb_rd.data)
                m.d.sync += new_tcb_fields
                m.d.sync += [
                    write_tcb.eq(1), before.eq(TcpState.LISTEN),
                    t.owned.eq(0), t.passive.eq(1), t.listener.eq(listener),
                    t.remote_mac.eq(s.eth_src), t.remote_ip.eq(s.ip_src),
                    t.remote_port.eq(s.tcp_sport), t.local_port.eq(s.tcp_dport),
                    t.irs.eq(s.tcp_seq), t.rcv_nxt.eq(s.tcp_seq + 1),
                    t.rcv_read.eq(s.tcp_seq + 1), t.rcv_dlv.eq(s.tcp_seq + 1),
                    t.rcv_adv.eq(s.tcp_seq + 1),
                    t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),
                    t.snd_mss.eq(peer_mss),
                ]
                m.next = "OPEN_INSERT"

            with m.State("SEGMENT"):
                with m.If(t.state == TcpState.SYN_SENT):
                    m.next = "SYN_SENT"
                with m.Elif(t.state == TcpState.CLOSED):
                    # A stale table entry cannot exist (CLOSED deletes it); answer as
                    # for no connection.
                    m.d.sync += write_tcb.eq(0)
                    m.next = "TO_RESET"
                with m.Else():
                    m.next = "CHECK_SEQ"

            with m.State("SYN_SENT"):
                # s3.10.7.3.
                m.next = "FINISH"
                ack_ok = (s.tcp_ack == t.snd_nxt)  # SND.UNA < SEG.ACK =< SND.NXT, SND.UNA=ISS
                with m.If(f_ack & ~ack_ok):
                    with m.If(~f_rst):
                        m.d.sync += write_tcb.eq(0)
                        m.next = "TO_RESET"  # <SEQ=SEG.ACK><CTL=RST>
                with m.Elif(f_rst):
                    with m.If(f_ack):
                        # "error: connection reset" -- the peer refused (RFC 5961 s3).
                        m.d.sync += to_closed()
                        m.d.sync += event(3, EventKind.RESET, ErrorCode.REFUSED)
                        m.d.comb += strobe["tcp_resets_in"].eq(1)
                with m.Elif(f_syn):
                    m.d.sync += [
                        t.irs.eq(s.tcp_seq), t.rcv_nxt.eq(s.tcp_seq + 1),
                        t.rcv_read.eq(s.tcp_seq + 1), t.rcv_dlv.eq(s.tcp_seq + 1),
                        t.rcv_adv.eq(s.tcp_seq + 1),
                        t.snd_mss.eq(peer_mss),
                        t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),
                        t.snd_wl2.eq(s.tcp_ack),
                    ]
                    with m.If(f_ack):
                        m.d.sync += [
                            t.state.eq(TcpState.ESTABLISHED), t.snd_una.eq(s.tcp_ack),
                            t.timer_on.eq(0), t.backoff.eq(0),
                        ]
                        syn_rto_floor()
                        m.d.sync += send(tcp.ACK_FLAG, t.snd_nxt)
                        m.d.sync += event(0, EventKind.ESTABLISHED)
                        m.d.comb += strobe["tcp_established"].eq(1)
                        # "If there are other controls or text in the segment, then
                        # continue processing at the sixth step" (s3.10.7.3).
                        m.next = "TEXT"
                        with m.If(t.rtt_active):
                            m.next = "RTT_SAMPLE"
                    with m.Else():
                        # Simultaneous open (s3.5 figure 8): SYN-RECEIVED, not passive.
                        m.d.sync += [t.state.eq(TcpState.SYN_RECEIVED), t.rtt_active.eq(0)]
                        m.d.sync += send(tcp.SYN | tcp.ACK_FLAG, t.iss,
                                         mss=1)

            with m.State("CHECK_SEQ"):
                # s3.10.7.4 first: the acceptability test, on the window we advertise.
                seq_end = (s.tcp_seq + seg_len - 1)[:32]
                wnd_end = (t.rcv_nxt + rcv_wnd)[:32]
                start_in = _le(t.rcv_nxt, s.tcp_seq) & _lt(s.tcp_seq, wnd_end)
                end_in = _le(t.rcv_nxt, seq_end) & _lt(seq_end, wnd_end)
                acceptable = Mux(seg_len == 0,
                                 Mux(rcv_wnd == 0, s.tcp_seq == t.rcv_nxt, start_in),
                                 (rcv_wnd != 0) & (start_in | end_in))
                m.next = "FINISH"
                with m.If((t.state == TcpState.SYN_RECEIVED) & f_syn & ~f_rst & ~f_ack
                          & (s.tcp_seq == t.irs)):
                    # The peer retransmitted its SYN: our SYN-ACK was lost.
                    m.d.sync += send(tcp.SYN | tcp.ACK_FLAG, t.iss, mss=1)
                with m.Elif((t.state == TcpState.SYN_RECEIVED) & ~t.passive & f_syn & f_ack
                            & ~f_rst & (s.tcp_seq == t.irs)):
                    # Simultaneous open (s3.5 figure 8, line 5): the peer's SYN-ACK
                    # acknowledges our SYN.  Its SYN is the one already received; the
                    # ACK completes the open (fifth step), as in Linux and FreeBSD.
                    m.next = "ACK"
                with m.Elif(~acceptable):
                    m.d.comb += strobe["tcp_bad_seq"].eq(1)
                    with m.If(~f_rst):
                        m.d.sync += send_ack()
                        with m.If((t.state == TcpState.TIME_WAIT) & f_fin):
                            # MUST-13: a retransmitted FIN restarts the 2 MSL wait.
                            m.d.sync += start_timer(two_msl)
                with m.Elif(f_rst):
                    m.next = "RST"
                with m.Elif(f_syn):
                    m.next = "SYN"
                with m.Elif(~f_ack):
                    pass  # "if the ACK bit is off, drop the segment and return"
                with m.Else():
                    m.next = "ACK"

            with m.State("RST"):
                # RFC 5961 s3.2: reset only at exactly RCV.NXT, else a challenge ACK.
                m.next = "FINISH"
                with m.If(s.tcp_seq == t.rcv_nxt):
                    m.d.comb += strobe["tcp_resets_in"].eq(1)
                    m.d.sync += to_closed()
                    with m.If((t.state == TcpState.SYN_RECEIVED) & t.passive):
                        # MUST-10/11: back to LISTEN; the listener never lost its state.
                        m.d.sync += l_pending[t.listener].eq(
                            Mux(l_pending[t.listener] != 0, l_pending[t.listener] - 1, 0))
                    with m.Elif(t.state == TcpState.SYN_RECEIVED):
                        m.d.sync += event(3, EventKind.RESET, ErrorCode.REFUSED)
                    with m.Elif(t.owned):
                        m.d.sync += event(3, EventKind.RESET, ErrorCode.RESET)
                with m.Else():
                    challenge_ack()

            with m.State("SYN"):
                # RFC 5961 s4.2 / RFC 9293 s3.10.7.4 fourth.
                m.next = "FINISH"
                with m.If((t.state == TcpState.SYN_RECEIVED) & t.passive):
                    m.d.sync += to_closed()
                    m.d.sync += l_pending[t.listener].eq(
                        Mux(l_pending[t.listener] != 0, l_pending[t.listener] - 1, 0))
                with m.Else():
                    challenge_ack()

            with m.State("ACK"):
                # s3.10.7.4 fifth, with RFC 5961 s5.2.
                m.next = "TEXT"
                ack = s.tcp_ack
                with m.If(t.state == TcpState.SYN_RECEIVED):
                    with m.If(_lt(t.snd_una, ack) & _le(ack, t.snd_max)):
                        m.d.sync += [
                            t.state.eq(Mux(t.fin_queued, TcpState.FIN_WAIT_1,
                                           TcpState.ESTABLISHED)),
                            t.snd_una.eq(ack), t.timer_on.eq(0), t.backoff.eq(0),
                            t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),
                            t.snd_wl2.eq(ack), t.owned.eq(1),
                        ]
                        syn_rto_floor()
                        m.d.comb += strobe["tcp_established"].eq(1)
                        m.d.sync += event(0, Mux(t.passive, EventKind.ACCEPTED,
                                                 EventKind.ESTABLISHED))
                        with m.If(t.fin_queued):
                            enqueue()
                        with m.If(t.rtt_active):
                            m.next = "RTT_SAMPLE"
                    with m.Else():
                        m.d.sync += write_tcb.eq(0)
                        m.next = "TO_RESET"  # <SEQ=SEG.ACK><CTL=RST>
                with m.Elif(_lt(t.snd_max, ack)):
                    # Acknowledges something not yet sent: ACK and drop.
                    m.d.sync += send_ack()
                    m.next = "FINISH"
                with m.Elif(_lt(ack, (t.snd_una - 0xFFFF)[:32])):
                    # RFC 5961 s5.2: older than SND.UNA - MAX.SND.WND.
                    challenge_ack()
                    m.next = "FINISH"
                with m.Else():
                    with m.If(_lt(t.snd_una, ack)):
                        data_from = Mux(_lt(t.snd_una, t.iss + 1), t.iss + 1, t.snd_una)[:32]
                        data_to = Mux(_lt(t.snd_end, ack), t.snd_end, ack)
                        acked = _diff(data_to, data_from)
                        m.d.sync += [t.snd_una.eq(ack), t.backoff.eq(0), do_limit.eq(1)]
                        with m.If(~acked[31] & (acked != 0)):
                            m.d.sync += event(1, EventKind.ACKED, value=acked)
                        with m.If(_lt(t.snd_nxt, ack)):
                            m.d.sync += t.snd_nxt.eq(ack)
                        # RFC 6298 (5.2), (5.3).
                        with m.If(ack == t.snd_max):
                            m.d.sync += t.timer_on.eq(0)
                        with m.Else():
                            m.d.sync += start_timer(t.rto)
                        with m.If(_diff(t.snd_end, ack) != 0):
                            enqueue()
                        with m.If(t.rtt_active & _le(t.rtt_seq, ack)):
                            m.next = "RTT_SAMPLE"
                    with m.If((ack == t.snd_una) & (s.tcp_window == 0)
                              & (t.backoff > cfg.r1_retries)):
                        # The peer answers our zero-window probes: it is alive
                        # (RFC 9293 s3.8.6.1: no abort while probes are acknowledged).
                        m.d.sync += t.backoff.eq(cfg.r1_retries)
                    # Window update (s3.10.7.4, SND.WL1/SND.WL2 rule).
                    with m.If(_lt(t.snd_wl1, s.tcp_seq)
                              | ((t.snd_wl1 == s.tcp_seq) & _le(t.snd_wl2, ack))):
                        m.d.sync += [t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),
                                     t.snd_wl2.eq(ack)]
                        with m.If((s.tcp_window > t.snd_wnd) & (t.snd_end != t.snd_nxt)):
                            enqueue()

            with m.State("RTT_SAMPLE"):
                m.d.comb += [
                    rtt.sample.valid.eq(1),
                    rtt.sample.p.rtt_us.eq(_diff(self.now, t.rtt_time)),
                    rtt.sample.p.srtt.eq(t.srtt),
                    rtt.sample.p.rttvar.eq(t.rttvar),
                    rtt.sample.p.first.eq(~t.rtt_valid),
                ]
                with m.If(rtt.sample.ready):
                    m.next = "RTT_WAIT"

            with m.State("RTT_WAIT"):
                m.d.comb += rtt.estimate.ready.eq(1)
                with m.If(rtt.estimate.valid):
                    m.d.sync += [
                        t.srtt.eq(rtt.estimate.p.srtt), t.rttvar.eq(rtt.estimate.p.rttvar),
                        t.rto.eq(rtt.estimate.p.rto), t.rtt_valid.eq(1), t.rtt_active.eq(0),
                    ]
                    with m.If(t.timer_on):
                        m.d.sync += start_timer(rtt.estimate.p.rto)
                    m.next = "TEXT"

            with m.State("TEXT"):
                # Our FIN acknowledged? (s3.10.7.4 fifth, per state.)
                fin_acked = t.fin_queued & (t.snd_una == (t.snd_end + 1)[:32])
                with m.Switch(t.state):
                    with m.Case(TcpState.FIN_WAIT_1):
                        with m.If(fin_acked):
                            m.d.sync += t.state.eq(TcpState.FIN_WAIT_2)
                    with m.Case(TcpState.CLOSING):
                        with m.If(fin_acked):
                            m.d.sync += [t.state.eq(TcpState.TIME_WAIT)] + start_timer(two_msl)
                    with m.Case(TcpState.LAST_ACK):
                        with m.If(fin_acked):
                            m.d.sync += to_closed()
                            m.d.sync += event(3, EventKind.CLOSED)
                # Seventh: segment text, in order only.  The text of a SYN-ACK starts
                # after the SYN (SEG.SEQ + 1).
                trim = _diff(t.rcv_nxt, data_seq)  # bytes already received
                in_order = ~trim[31]
                fresh_bytes = Signal(17)
                m.d.comb += fresh_bytes.eq(Mux(in_order & (trim < s.tcp_payload_len),
                                               s.tcp_payload_len - trim, 0))
                take = _min(fresh_bytes, rx_free)[:16]
                receiving = ((t.state == TcpState.ESTABLISHED)
                             | (t.state == TcpState.FIN_WAIT_1)
                             | (t.state == TcpState.FIN_WAIT_2))
                m.next = "FIN"
                with m.If(receiving & (s.tcp_payload_len != 0)):
                    with m.If(~in_order):
                        m.d.comb += strobe["tcp_out_of_order"].eq(1)
                        m.d.sync += send_ack()
                    with m.Elif(take != 0):
                        m.d.sync += [t.rcv_nxt.eq(t.rcv_nxt + take)]
                        with m.If(t.host_closed):
                            # Nobody reads any more: the bytes are consumed.
                            m.d.sync += t.rcv_dlv.eq(t.rcv_nxt + take)
                            with m.If(t.dlv_out == 0):
                                m.d.sync += t.rcv_read.eq(t.rcv_nxt + take)
                        with m.Else():
                            m.d.sync += [
                                do_copy.eq(1),
                                cp.offset.eq(payload_at + trim),
                                cp.length.eq(take),
                                cp.pos.eq(t.rcv_nxt),
                            ]
                        m.d.sync += send_ack()
                    with m.Else():
                        m.d.sync += send_ack()  # duplicate or no room: ACK RCV.NXT

            with m.State("FIN"):
                # Eighth: the FIN, if every byte before it has been received.
                m.next = "FINISH"
                fin_seq = (data_seq + s.tcp_payload_len)[:32]
                with m.If(f_fin & (fin_seq == t.rcv_nxt) & (t.state != TcpState.CLOSED)
                          & ~t.fin_received):
                    m.d.sync += [t.rcv_nxt.eq(t.rcv_nxt + 1), t.fin_received.eq(1)]
                    m.d.sync += send(tcp.ACK_FLAG, t.snd_nxt)
                    m.d.sync += event(2, EventKind.PEER_FIN,
                                      value=_diff(t.rcv_nxt, t.irs + 1))
                    fin_acked = t.fin_queued & (t.snd_una == (t.snd_end + 1)[:32])
                    with m.Switch(t.state):
                        with m.Case(TcpState.SYN_RECEIVED, TcpState.ESTABLISHED):
                            m.d.sync += t.state.eq(TcpState.CLOSE_WAIT)
                        with m.Case(TcpState.FIN_WAIT_1):
                            with m.If(fin_acked):
                                m.d.sync += [t.state.eq(TcpState.TIME_WAIT)] + start_timer(
                                    two_msl)
                            with m.Else():
                                m.d.sync += t.state.eq(TcpState.CLOSING)
                        with m.Case(TcpState.FIN_WAIT_2):
                            m.d.sync += [t.state.eq(TcpState.TIME_WAIT)] + start_timer(two_msl)
                with m.Elif(f_fin & (t.state == TcpState.TIME_WAIT)):
                    m.d.sync += send_ack()
                    m.d.sync += start_timer(two_msl)  # MUST-13

            # ---------------- Common tail ----------------
            with m.State("FINISH"):
                # Deliveries, and the release of an id nobody needs any more.
                with m.If(~do_dlv & ~t.host_closed & t.owned):
                    deliver_more(t.rcv_credit)
                no_delivery = t.dlv_out == 0
                with m.If(write_tcb & (t.state == TcpState.CLOSED)
                          & (t.host_closed | ~t.owned) & (t.owned | t.passive | t.host_closed)
                          & no_delivery & ~do_free):
                    m.d.sync += [do_free.eq(1), do_limit.eq(1), t.owned.eq(0),
                                 t.passive.eq(0), t.host_closed.eq(0)]
                    with m.If(t.owned):
                        m.d.sync += event(4, EventKind.RELEASED)
                m.next = "EMIT"

            with m.State("EMIT"):
                # One product per cycle, in order; the TCB is written last.
                with m.If(do_delete):
                    request_lookup(ConnTableOp.DELETE, t.remote_ip, t.remote_port, t.local_port)
                    with m.If(lookup.request.ready):
                        m.d.sync += [do_delete.eq(0), del_wait.eq(1)]
                with m.Elif(del_wait):
                    m.d.comb += lookup.response.ready.eq(1)
                    with m.If(lookup.response.valid):
                        m.d.sync += del_wait.eq(0)
                with m.Elif(do_seg):
                    m.d.comb += [
                        self.segment.valid.eq(1),
                        self.segment.p.conn.eq(cid),
                        self.segment.p.eth_dst.eq(t.remote_mac),
                        self.segment.p.ip_dst.eq(t.remote_ip),
                        self.segment.p.sport.eq(t.local_port),
                        self.segment.p.dport.eq(t.remote_port),
                        self.segment.p.seq.eq(seg.seq),
                        # The ACK field is always the final RCV.NXT of the event.
                        self.segment.p.ack.eq(Mux(seg.flags & tcp.ACK_FLAG, t.rcv_nxt, 0)),
                        self.segment.p.flags.eq(seg.flags),
                        self.segment.p.window.eq(Mux(seg.flags & tcp.RST, 0, rcv_wnd)),
                        self.segment.p.mss_option.eq(seg.mss),
                        self.segment.p.mss.eq(cfg.mss),
                        self.segment.p.payload_pos.eq(seg.pos),
                        self.segment.p.payload_len.eq(seg.len),
                    ]
                    with m.If(self.segment.ready):
                        m.d.sync += [do_seg.eq(0), emitted.eq(1)]
                        with m.If(seg.flags & tcp.ACK_FLAG):
                            m.d.sync += t.rcv_adv.eq(t.rcv_nxt + rcv_wnd)
                with m.Elif(do_copy):
                    m.d.comb += [
                        self.copy.valid.eq(1),
                        self.copy.p.conn.eq(cid),
                        self.copy.p.buf_start.eq(s.buf_start),
                        self.copy.p.offset.eq(cp.offset),
                        self.copy.p.length.eq(cp.length),
                        self.copy.p.ring_pos.eq(cp.pos),
                    ]
                    with m.If(self.copy.ready):
                        m.d.sync += do_copy.eq(0)
                with m.Elif(do_dlv):
                    m.d.comb += [self.delivery.valid.eq(1), self.delivery.p.eq(dlv)]
                    m.d.comb += self.delivery.p.conn.eq(cid)
                    with m.If(self.delivery.ready):
                        m.d.sync += do_dlv.eq(0)
                with m.Elif(Cat(e.on for e in ev).any()):
                    m.d.comb += [
                        self.evt.valid.eq(1),
                        self.evt.p.conn.eq(cid),
                        self.evt.p.tag.eq(c.tag),
                        self.evt.p.port.eq(Mux(ev_listen, c.port, t.local_port)),
                        self.evt.p.remote_port.eq(t.remote_port),
                        self.evt.p.addr.eq(t.remote_ip),
                    ]
                    with m.If(ev[0].on):
                        emit_event(ev[0])
                    for e in ev[1:]:
                        with m.Elif(e.on):
                            emit_event(e)
                with m.Else():
                    m.next = "WRITE"

            with m.State("WRITE"):
                m.d.comb += tcb_wr.en.eq(write_tcb)
                m.d.sync += [
                    # Timer scans and output checks that change nothing are not traced.
                    self.trace.valid.eq(
                        trace_listen | write_tcb & (emitted | (before != t.state)
                                                    | ((src != 4) & (src != 5)))),
                    self.trace.source.eq(src),
                    self.trace.before.eq(before),
                    self.trace.after.eq(t.state),
                    self.trace.flags.eq(s.tcp_flags),
                    self.trace.data.eq(s.tcp_payload_len != 0),
                    self.trace.op.eq(c.op),
                ]
                with m.If(do_limit & write_tcb):
                    m.d.comb += [
                        self.limit_we.eq(1),
                        self.limit_data.limit.eq(
                            Mux(_lt(t.snd_una, t.iss + 1), t.iss + 1, t.snd_una) + tx_ring),
                        self.limit_data.gen.eq(t.tx_gen),
                        self.limit_data.open.eq(t.owned | t.passive),
                        self.limit_data.shut.eq(t.fin_queued),
                    ]
                with m.If(do_enqueue):
                    m.d.comb += [oq.w_en.eq(1), oq.w_data.eq(cid)]
                with m.If(do_free):
                    m.d.comb += [free.w_en.eq(1), free.w_data.eq(cid)]
                with m.If(do_take):
                    m.d.comb += self.seg_in.ready.eq(1)
                m.next = "IDLE"

        m.d.comb += self.limit_addr.eq(Mux(fsm.ongoing("CLEAR"), scan, cid))
        return m
