"""The TCP connection engine: RFC 9293 s3.10 event processing over TCBs in block RAM.

One event is processed at a time, start to finish, so a TCB is never seen half updated:
the engine reads the connection's TCB into a register, runs the RFC's steps for the
event in a few clock cycles, emits what the event produces (a segment, a copy of
received bytes into the RX ring, a delivery to the host, host events) and writes the
TCB back.  The events (:class:`~hdl.tcp.event_context.EventSource`; RFC 9293 s3.10 calls
them "user calls", "arriving segments" and "timeouts") are served round robin, so no
source starves another:

- a received segment (s3.10.7), after the socket pair was looked up in
  :class:`~hdl.tcp.conn_table.ConnectionLookup`: :mod:`hdl.tcp.arrival`; a SYN for a
  listening port opens a new connection (:mod:`hdl.tcp.opening`); everything else for
  no connection goes to :class:`~hdl.tcp.reset.TcpReset` (s3.10.7.1);
- a host command (s3.10.1 OPEN, s3.10.4 CLOSE as SHUTDOWN/CLOSE, s3.10.5 ABORT, and
  LISTEN, ACCEPT, CREDIT; see :mod:`hdl.host_if`), the TX writer reporting new bytes
  from the host (s3.10.2 SEND) and the RX delivery engine reporting bytes handed to the
  host (s3.10.3 RECEIVE): :mod:`hdl.tcp.user_calls`;
- the output queue, a connection that may have something to send (data, FIN, a window
  update): :mod:`hdl.tcp.output`;
- the timer scan, each connection in turn (s3.10.8): :mod:`hdl.tcp.timers`;
- an ICMP error about a connection's segments (s3.9.2.2), which comes in with the
  segments and is looked up as one: :mod:`hdl.tcp.icmp_errors`.

This module holds the ports, the blocks and the TCB memory, picks the next event and
loads its TCB; :mod:`hdl.tcp.emission` is the common tail.  Every step shares the
registers and helpers of :class:`~hdl.tcp.event_context.EventContext`; every TCP state
change goes through its ``set_state``, declared against the table of
:mod:`hdl.tcp.states`.  docs/architecture.md says how a per-connection feature is added.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from ..host_if import command_layout, event_layout
from ..rx.meta import rx_meta_layout
from .arrival import add_arrival_steps
from .congestion import CongestionControl
from .conn_ids import ConnIdAllocator
from .conn_table import ConnectionLookup
from .emission import add_emission_steps
from .event_context import (
    ENGINE_COUNTERS,
    TRACE_SOURCES,
    TS_TICK_BITS,
    EventContext,
    EventSource,
    trace_layout,
)
from .icmp_errors import add_icmp_error_steps
from .isn import IsnGenerator
from .listeners import ListenerTable
from .opening import add_opening_steps
from .output import OutputRegisters, add_output_steps
from .recovery import CongestionRegisters, add_recovery_steps
from .rto import RtoBackoff, RtoEstimator
from .scoreboard import ScoreboardRegisters, add_scoreboard_steps
from .seq import seq_diff
from .tcb import (
    copy_layout,
    delivered_layout,
    delivery_layout,
    segment_layout,
    tcb_layout,
    tx_limit_layout,
    written_layout,
)
from .timers import add_timer_steps
from .user_calls import add_user_call_steps

__all__ = ["TcpEngine", "ENGINE_COUNTERS", "TRACE_SOURCES", "trace_layout"]

#: The step that follows ``tcb_load`` for each source.
_HANDLER_STEP = {
    EventSource.DELIVERED: "rx_delivered",
    EventSource.WRITTEN: "tx_written",
    EventSource.COMMAND: "cmd_on_tcb",
    EventSource.SEGMENT: "seg_dispatch",
    EventSource.OUTPUT: "output_window",
    EventSource.TIMER: "timer_check",
}


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
        strobes = {name: Signal(name=f"count_{name}") for name in ENGINE_COUNTERS}
        m.d.comb += self.counters.eq(Cat(strobes[name] for name in ENGINE_COUNTERS))

        # --- Blocks ------------------------------------------------------------------
        m.submodules.lookup = lookup = ConnectionLookup(n)
        m.submodules.isn = isn = IsnGenerator()
        m.submodules.rtt = rtt = RtoEstimator(cfg.rto_min_us, cfg.rto_max_us,
                                              cfg.rto_initial_us)
        m.submodules.backoff = backoff = RtoBackoff(cfg.rto_max_us)
        m.submodules.congestion = cc = CongestionControl(cfg)
        m.submodules.ids = ids = ConnIdAllocator(n)
        # Connections that may have something to send; each at most once
        # (``output_queued`` in the TCB).
        m.submodules.output_queue = oq = SyncFIFOBuffered(width=cfg.conn_bits, depth=n)
        m.d.comb += [
            isn.now_us.eq(self.now),
            isn.key.eq(self.isn_key), isn.key_we.eq(self.isn_key_we),
            lookup.key.eq(self.hash_key), lookup.key_we.eq(self.hash_key_we),
        ]
        m.submodules.tcbs = tcbs = self.tcb_memory
        tcb_wr = tcbs.write_port()
        tcb_rd = tcbs.read_port(transparent_for=(tcb_wr,))
        listeners = ListenerTable(m, cfg.listeners, cfg.syn_backlog)

        # The timestamp clock (RFC 7323 s5.4: 1 ms to 1 s a tick): the microsecond time
        # base / 1024, with 10 more bits counting its wraps, so it runs on for 51 days.
        ts_wraps = Signal(10)
        now_top = Signal()
        m.d.sync += now_top.eq(self.now[31])
        with m.If(now_top & ~self.now[31]):
            m.d.sync += ts_wraps.eq(ts_wraps + 1)
        ts_now = Cat(self.now[TS_TICK_BITS:], ts_wraps)

        e = EventContext(m, cfg, self._ptr_bits, self.now, ts_now, strobes, lookup)
        e.tcb_rd_data, e.tcb_wr_en, e.reset_meta = tcb_rd.data, tcb_wr.en, self.reset_meta
        e.copy_port = self.copy
        e.cc = CongestionRegisters()
        e.sb = ScoreboardRegisters(cfg)
        t = e.t
        scan = Signal(cfg.conn_bits)  # the timer scan's next connection (and CLEAR's)
        last_src = Signal(EventSource)
        m.d.comb += [backoff.rto.eq(t.rto), backoff.shift.eq(t.backoff)]

        # RFC 5961 s7.  Per connection: one challenge or out-of-window ACK per
        # ``oow_ack_interval_us`` (TCB ``oow_at``).  Over all connections: a budget of
        # challenge ACKs per second, drawn each second from limit/2 .. 3*limit/2 - 1 by a
        # free-running xorshift generator, so that the count one connection can observe
        # carries no information about another's (CVE-2016-5696).
        limit = cfg.challenge_acks_per_s
        budget = Signal(range(limit * 3 // 2 + 1), init=limit)
        budget_since = Signal(32)
        rng = Signal(32, init=0x2545F491)
        x1 = rng ^ (rng << 13)[:32]
        x2 = x1 ^ (x1 >> 17)
        m.d.sync += rng.eq(x2 ^ (x2 << 5)[:32])
        with m.If(seq_diff(self.now, budget_since) >= 1_000_000):
            m.d.sync += [budget.eq(limit // 2 + ((rng[:16] * limit) >> 16)),
                         budget_since.eq(self.now)]
        oow_now = self.now[8:32]
        oow_units = max(1, cfg.oow_ack_interval_us >> 8)
        conn_may = Signal()
        m.d.comb += conn_may.eq((cfg.oow_ack_interval_us == 0) | ~t.oow_sent
                                | ((oow_now - t.oow_at)[:24] >= oow_units))

        def oow_sent():
            m.d.sync += [t.oow_at.eq(oow_now), t.oow_sent.eq(1)]

        def oow_ack():
            """An ACK answering an out-of-window segment (RFC 9293 s3.10.7.4 first, RFC
            7323 s5.3), limited per connection (RFC 5961 s7) unless the segment carries
            data without SYN or a FIN (no ACK loop is likely: Linux's
            tcp_oow_rate_limited)."""
            exempt = ((e.s.tcp_payload_len != 0) & ~e.f_syn) | e.f_fin
            with m.If(exempt):
                e.send_ack()
            with m.Elif(conn_may):
                e.send_ack()
                oow_sent()
            with m.Else():
                e.count("tcp_oow_limited")

        def challenge_ack():
            """RFC 5961 s3.2, s4.2, s5.2: an ACK for RCV.NXT, rate limited (s7)."""
            with m.If(~conn_may):
                e.count("tcp_oow_limited")
            with m.Elif(budget != 0):
                e.send_ack()
                oow_sent()
                m.d.sync += budget.eq(budget - 1)
                e.count("tcp_challenge_acks")
            with m.Else():
                e.count("tcp_challenge_limited")

        # --- Source selection (round robin) ------------------------------------------
        sources = list(EventSource)
        valid = Signal(len(sources))
        m.d.comb += valid.eq(Cat(
            self.delivered.valid, self.written.valid, self.cmd.valid, self.seg_in.valid,
            oq.r_rdy, ~lookup.clearing))
        pick = Signal(EventSource)
        pick_any = Signal()
        with m.Switch(last_src):
            for last in sources:
                with m.Case(last):
                    order = [sources[(last.value + 1 + k) % len(sources)]
                             for k in range(len(sources))]
                    for k in reversed(order):
                        with m.If(valid[k.value]):
                            m.d.comb += [pick.eq(k), pick_any.eq(1)]

        # --- The event FSM -------------------------------------------------------------
        m.d.comb += [
            tcb_rd.addr.eq(e.cid),
            tcb_rd.en.eq(1),
            tcb_wr.addr.eq(e.cid),
            tcb_wr.data.eq(t),
        ]
        m.d.sync += self.trace.valid.eq(0)
        o = OutputRegisters(cfg)
        with m.FSM(name="engine", init="clear_tcbs") as fsm:
            with m.State("clear_tcbs"):
                # Block RAM keeps its contents through a reset: empty every TCB first.
                m.d.comb += [tcb_wr.addr.eq(scan), tcb_wr.data.eq(0), tcb_wr.en.eq(1),
                             self.limit_we.eq(1), self.limit_data.eq(0)]
                m.d.sync += scan.eq(scan + 1)
                with m.If(scan == n - 1):
                    m.next = "idle"

            with m.State("idle"):
                m.d.sync += [
                    e.do_seg.eq(0), e.do_copy.eq(0), e.do_dlv.eq(0), e.do_delete.eq(0),
                    e.del_wait.eq(0), e.do_limit.eq(0), e.do_enqueue.eq(0), e.do_free.eq(0),
                    e.do_take.eq(0), e.write_tcb.eq(0), e.ev_listen.eq(0),
                    e.trace_listen.eq(0), e.emitted.eq(0), e.dsack.on.eq(0),
                    e.cc.on.eq(0), e.cookie_syn.eq(0), e.cookie_open.eq(0),
                    e.sb.check_lost.eq(0),
                ] + [slot.on.eq(0) for slot in e.ev]
                with m.If(pick_any):
                    m.d.sync += [e.src.eq(pick), last_src.eq(pick)]
                    with m.Switch(pick):
                        with m.Case(EventSource.DELIVERED):
                            m.d.comb += self.delivered.ready.eq(1)
                            m.d.sync += [e.cid.eq(self.delivered.p.conn),
                                         e.d_end.eq(self.delivered.p.end)]
                            m.next = "tcb_read"
                        with m.Case(EventSource.WRITTEN):
                            m.d.comb += self.written.ready.eq(1)
                            m.d.sync += [e.cid.eq(self.written.p.conn),
                                         e.w_info.eq(self.written.p)]
                            m.next = "tcb_read"
                        with m.Case(EventSource.COMMAND):
                            m.d.comb += self.cmd.ready.eq(1)
                            m.d.sync += [e.c.eq(self.cmd.p), e.cid.eq(self.cmd.p.conn)]
                            m.next = "cmd_decode"
                        with m.Case(EventSource.SEGMENT):
                            e.load_segment(self.seg_in.p)
                            m.next = "seg_lookup"
                        with m.Case(EventSource.OUTPUT):
                            m.d.comb += oq.r_en.eq(1)
                            m.d.sync += e.cid.eq(oq.r_data)
                            m.next = "tcb_read"
                        with m.Case(EventSource.TIMER):
                            m.d.sync += [e.cid.eq(scan), scan.eq(scan + 1)]
                            m.next = "tcb_read"

            with m.State("tcb_read"):
                m.next = "tcb_load"

            with m.State("tcb_load"):
                m.d.sync += [t.eq(tcb_rd.data), e.write_tcb.eq(1),
                             e.before.eq(tcb_rd.data.state)]
                with m.Switch(e.src):
                    for source, step in _HANDLER_STEP.items():
                        with m.Case(source):
                            if source == EventSource.OUTPUT:
                                m.d.sync += t.output_queued.eq(0)
                            m.next = step

            add_user_call_steps(e, listeners, ids, self.netmask, self.ip_addr)
            add_opening_steps(e, lookup, isn, listeners, ids, rtt.initial_rto, self.arp_lookup,
                              self.arp_result, self.ip_addr)
            add_arrival_steps(e, lookup, listeners, ids, rtt, challenge_ack, oow_ack)
            add_output_steps(e, o, backoff)
            add_timer_steps(e, o, backoff, listeners)
            add_emission_steps(e, lookup, ids, oq, self)
            add_recovery_steps(e, cc)
            add_scoreboard_steps(e)
            add_icmp_error_steps(e, listeners)

        self.transitions = e.transitions  # for the test against hdl/tcp/states.py
        m.d.comb += self.limit_addr.eq(Mux(fsm.ongoing("clear_tcbs"), scan, e.cid))
        return m
