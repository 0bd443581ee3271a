"""The common tail of every event of the TCP engine: deliveries and the release of the
id (``finish``), the window and SACK blocks of the segment if one goes
(``segment_options``), the event's products one per cycle in a fixed order (``emit``),
and the TCB write-back (``tcb_write``).

Order of the products: the lookup-table delete (a CLOSED connection leaves the table
before anything else can find it), the segment, the copy of received text, the delivery
to the host, the host events in :class:`~hdl.tcp.event_context.EventSlot` order; then,
with the TCB write, the TX writer's limit, the output queue, the free id and the frame
buffer release of the segment.  The trace record of the event leaves with the write.
"""

from amaranth.hdl import Cat, Mux, Signal

from ..host_if import EventKind
from ..proto import ipv4, tcp
from ..rx.meta import Verdict
from .conn_table import ConnTableOp
from .event_context import EventSlot, EventSource
from .seq import seq_diff, seq_lt, seq_min
from .states import TcpState

__all__ = ["add_emission_steps"]


def add_emission_steps(e, lookup, ids, output_queue, engine):
    """``engine``: the :class:`~hdl.tcp.engine.TcpEngine` (its output ports)."""
    m, cfg, t, s = e.m, e.cfg, e.t, e.s

    with m.State("finish"):
        # Deliveries, and the release of an id nobody needs any more.
        with m.If(~e.do_dlv & ~t.host_closed & t.owned):
            e.deliver_more(t.rcv_credit)
        with m.If(e.write_tcb & (t.state == TcpState.CLOSED)
                  & (t.host_closed | ~t.owned) & (t.owned | t.passive | t.host_closed)
                  & (t.dlv_out == 0) & ~e.do_free):
            m.d.sync += [e.do_free.eq(1), e.do_limit.eq(1), t.owned.eq(0),
                         t.passive.eq(0), t.host_closed.eq(0)]
            with m.If(t.owned):
                e.event(EventSlot.RELEASED, EventKind.RELEASED)
        m.d.sync += [e.w_space.eq(e.rcv_wnd_now), e.w_kept.eq(seq_diff(t.rcv_adv, t.rcv_nxt))]
        m.next = "emit"
        with m.If(e.do_seg):
            m.next = "segment_options"

    with m.State("segment_options"):
        # The window to advertise (RFC 9293 s3.8.6.2.2, receiver silly-window
        # avoidance, MUST-39): the right edge moves only when it can move by
        # min(RCV.BUFF / 2, MSS); until then the edge last advertised stays (SHLD-14).
        # Scaled down by our shift (RFC 7323 s2.3), rounded up when the edge stays so
        # that it never moves left; a SYN's window is never scaled.
        ring_bits = len(e.w_space) - 1
        kept = e.w_kept[:ring_bits + 1]
        behind = e.w_kept[31] | e.w_kept[ring_bits + 1:31].any()
        grown = (e.w_space - kept)[:ring_bits + 2]
        open_up = behind | (~grown[-1] & (grown >= e.sws_step))
        round_up = e.scale_up(1) - 1
        m.d.sync += e.w_field.eq(Mux(
            e.seg.flags & tcp.SYN, seq_min(e.w_space, 0xFFFF),
            e.scale_down(Mux(open_up, e.w_space, kept + round_up))))
        # SACK blocks (RFC 2018 s4) in pure ACKs while text is held out of order: a
        # D-SACK block first if the segment was a duplicate (RFC 2883 s4), then the held
        # ranges by recency (``sack_rank``: the latest segment's first), as many as fit
        # beside the timestamps.
        k = cfg.reassembly_intervals
        ooo = t.ooo
        fit = Mux(t.ts_ok, tcp.sack_blocks_that_fit(True), tcp.sack_blocks_that_fit(False))
        sack_on = t.sack_ok & ~(e.seg.flags & (tcp.SYN | tcp.RST)).any() & (e.seg.len == 0)
        dup = e.dsack.on
        total = Signal(range(k + 2))
        m.d.comb += total.eq(dup + sum(ooo[i].valid for i in range(k)))
        m.d.sync += e.sack_n.eq(Mux(sack_on, Mux(total < fit, total, fit), 0))
        with m.If(dup):
            m.d.sync += e.sack[0].eq(Cat(e.dsack.left, e.dsack.right))
        rank = t.sack_rank
        for i in range(k):
            # The place of range i: after the D-SACK block and the held ranges more
            # recent than it.
            place = dup + sum(ooo[j].valid & (rank[j] < rank[i]) for j in range(k) if j != i)
            for j in range(tcp.MAX_SACK_BLOCKS):
                with m.If(ooo[i].valid & (place == j)):
                    m.d.sync += e.sack[j].eq(Cat(ooo[i].start, ooo[i].end))
        m.next = "emit"

    with m.State("emit"):
        # One product per cycle, in order; the TCB is written last.
        with m.If(e.do_delete):
            e.request_lookup(ConnTableOp.DELETE, t.remote_ip, t.remote_port, t.local_port)
            with m.If(lookup.request.ready):
                m.d.sync += [e.do_delete.eq(0), e.del_wait.eq(1)]
        with m.Elif(e.del_wait):
            m.d.comb += lookup.response.ready.eq(1)
            with m.If(lookup.response.valid):
                m.d.sync += e.del_wait.eq(0)
        with m.Elif(e.do_seg):
            seg, out = e.seg, engine.segment
            # ECN (RFC 3168 s6.1): an ECN-setup SYN (ECE, CWR) or SYN-ACK (ECE); ECE on
            # every other ACK while a CE mark is unanswered; CWR on the first new data
            # after a reduction; ECT(0) on new data.
            syn, ack_on = (seg.flags & tcp.SYN).any(), (seg.flags & tcp.ACK_FLAG).any()
            rst = (seg.flags & tcp.RST).any()
            ecn_flags = Mux(syn, Mux(t.ecn_ok, Mux(ack_on, tcp.ECE, tcp.ECE | tcp.CWR), 0),
                            Mux(t.ecn_ok & t.ece_pending & ack_on & ~rst, tcp.ECE, 0)
                            | Mux(seg.ect & t.cwr_pending, tcp.CWR, 0))
            m.d.comb += [
                out.valid.eq(1),
                out.p.conn.eq(e.cid),
                out.p.eth_dst.eq(t.remote_mac),
                out.p.ip_dst.eq(t.remote_ip),
                out.p.sport.eq(t.local_port),
                out.p.dport.eq(t.remote_port),
                out.p.seq.eq(seg.seq),
                # The ACK field is always the final RCV.NXT of the event.
                out.p.ack.eq(Mux(seg.flags & tcp.ACK_FLAG, t.rcv_nxt, 0)),
                out.p.flags.eq(seg.flags | ecn_flags),
                out.p.ecn.eq(Mux(seg.ect, ipv4.ECT_0, ipv4.NOT_ECT)),
                out.p.ttl.eq(t.ttl),
                out.p.dscp.eq(t.dscp),
                out.p.window.eq(Mux(seg.flags & tcp.RST, 0, e.w_field)),
                out.p.syn_options.eq(seg.syn_options),
                out.p.mss.eq(cfg.mss),
                out.p.wscale_on.eq(t.ws_ok),
                out.p.wscale.eq(cfg.rcv_wscale),
                out.p.sack_permitted.eq(t.sack_ok),
                # Timestamps in every segment but RST once agreed (RFC 7323 s3.2).
                out.p.ts_on.eq(t.ts_ok & ~(seg.flags & tcp.RST).any()),
                out.p.ts_val.eq(Mux(e.cookie_syn, e.cookie_tsval, e.ts_now)),
                out.p.ts_ecr.eq(t.ts_recent),
                out.p.sack_count.eq(e.sack_n),
                out.p.sack.eq(e.sack),
                out.p.payload_pos.eq(seg.pos),
                out.p.payload_len.eq(seg.len),
            ]
            with m.If(out.ready):
                m.d.sync += [e.do_seg.eq(0), e.emitted.eq(1)]
                with m.If(seg.ect):
                    m.d.sync += t.cwr_pending.eq(0)
                with m.If(e.sack_n != 0):
                    e.count("tcp_sack_acks")
                    with m.If(e.dsack.on):
                        e.count("tcp_dsack_acks")
                with m.If(seg.flags & tcp.ACK_FLAG):
                    window = Mux(seg.flags & tcp.SYN, e.w_field, e.scale_up(e.w_field))
                    m.d.sync += [t.rcv_adv.eq(t.rcv_nxt + window),
                                 t.ack_sent.eq(t.rcv_nxt), t.ack_pending.eq(0)]
        with m.Elif(e.do_copy):
            with m.If(e.issue_copy()):
                m.d.sync += e.do_copy.eq(0)
        with m.Elif(e.do_dlv):
            m.d.comb += [engine.delivery.valid.eq(1), engine.delivery.p.eq(e.dlv),
                         engine.delivery.p.conn.eq(e.cid)]
            with m.If(engine.delivery.ready):
                m.d.sync += e.do_dlv.eq(0)
        with m.Elif(Cat(slot.on for slot in e.ev).any()):
            evt = engine.evt
            m.d.comb += [
                evt.valid.eq(1),
                evt.p.conn.eq(e.cid),
                evt.p.tag.eq(e.c.tag),
                evt.p.port.eq(Mux(e.ev_listen, e.c.port, t.local_port)),
                evt.p.remote_port.eq(t.remote_port),
                evt.p.addr.eq(t.remote_ip),
            ]
            first = True
            for slot in e.ev:  # the first raised slot goes out
                with (m.If if first else m.Elif)(slot.on):
                    m.d.comb += [evt.p.kind.eq(slot.kind), evt.p.code.eq(slot.code),
                                 evt.p.value.eq(slot.value)]
                    with m.If(evt.ready):
                        m.d.sync += slot.on.eq(0)
                first = False
        with m.Else():
            m.next = "tcb_write"

    with m.State("tcb_write"):
        m.d.comb += e.tcb_wr_en.eq(e.write_tcb)
        m.d.sync += [
            # Timer scans and output checks that change nothing are not traced.
            engine.trace.valid.eq(
                e.trace_listen | e.write_tcb & (
                    e.emitted | (e.before != t.state)
                    | ((e.src != EventSource.OUTPUT) & (e.src != EventSource.TIMER)))),
            engine.trace.source.eq(e.src.as_value()),
            engine.trace.before.eq(e.before),
            engine.trace.after.eq(t.state),
            engine.trace.flags.eq(s.tcp_flags),
            engine.trace.data.eq(s.tcp_payload_len != 0),
            engine.trace.op.eq(e.c.op),
            engine.trace.icmp.eq((e.src == EventSource.SEGMENT)
                                 & (s.verdict == Verdict.ICMP_ERROR)),
        ]
        with m.If(e.do_limit & e.write_tcb):
            m.d.comb += [
                engine.limit_we.eq(1),
                engine.limit_data.limit.eq(
                    Mux(seq_lt(t.snd_una, t.iss + 1), t.iss + 1, t.snd_una)
                    + cfg.tx_ring_bytes),
                engine.limit_data.gen.eq(t.tx_gen),
                engine.limit_data.open.eq(t.owned | t.passive),
                engine.limit_data.shut.eq(t.fin_queued),
            ]
        with m.If(e.do_enqueue):
            m.d.comb += [output_queue.w_en.eq(1), output_queue.w_data.eq(e.cid)]
        with m.If(e.do_free):
            m.d.comb += [ids.release.eq(1), ids.release_id.eq(e.cid)]
        with m.If(e.do_take):
            m.d.comb += engine.seg_in.ready.eq(1)
        m.next = "idle"
