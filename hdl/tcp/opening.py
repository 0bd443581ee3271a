"""Opening a connection: RFC 9293 s3.10.1 (active OPEN) and s3.10.7.2 (the passive
open of a SYN to a listening port), as steps of the TCP engine.

Both take a fresh connection id (:class:`hdl.tcp.conn_ids.ConnIdAllocator`) and start
its TCB afresh, then share the same three steps: the socket pair into the lookup table
(``open_insert``), the ISN of RFC 6528 (``open_isn``), and the SYN or SYN-ACK with the
MSS option (MUST-14, SHLD-5) and the options of RFC 7323 and RFC 2018: a SYN offers
every option the build supports, a SYN-ACK those the SYN offered too.  An active open
first resolves the next hop with ARP.

SYN cookies (RFC 4987 s3.6, :mod:`hdl.tcp.syn_cookie`) are the stateless passive open:
``cookie_synack_load`` .. ``cookie_hash_wait`` answer a SYN with a cookie SYN-ACK and
write no TCB; ``cookie_check_ask`` .. ``cookie_tcb_load`` check the ACK that returns
one and rebuild the SYN-RECEIVED connection, which enters the lookup table by
``open_insert`` and then takes the ACK through the ordinary steps (``seg_dispatch``).
"""

from amaranth.hdl import Mux, Signal

from ..host_if import ErrorCode, EventKind
from ..proto import tcp
from . import syn_cookie as cookie
from .conn_table import ConnTableError, ConnTableOp
from .event_context import EventSlot
from .seq import seq_min
from .states import TcpState

__all__ = ["add_opening_steps"]

S = TcpState


def add_opening_steps(e, lookup, isn, listeners, ids, initial_rto, arp_lookup, arp_result,
                      ip_addr):
    m, t, s, c, cfg = e.m, e.t, e.s, e.c, e.cfg

    # -- active open: CONNECT (the command step took the id) --------------------------
    with m.State("connect_tcb_read"):
        m.next = "connect_tcb_load"

    with m.State("connect_tcb_load"):
        m.d.sync += t.eq(e.tcb_rd_data)
        e.reset_tcb(initial_rto)
        m.d.sync += [
            e.before.eq(S.CLOSED),
            t.remote_ip.eq(c.addr), t.remote_port.eq(c.port),
            t.local_port.eq(c.value[:16]), t.passive.eq(0),
            t.rcv_nxt.eq(0), t.rcv_read.eq(0), t.rcv_dlv.eq(0), t.rcv_adv.eq(0),
            e.write_tcb.eq(1), e.ev_listen.eq(0),
        ]
        m.next = "connect_arp_ask"

    with m.State("connect_arp_ask"):
        m.d.comb += [arp_lookup.valid.eq(1), arp_lookup.p.ip.eq(t.remote_ip)]
        with m.If(arp_lookup.ready):
            m.next = "connect_arp_wait"

    with m.State("connect_arp_wait"):
        m.d.comb += arp_result.ready.eq(1)
        with m.If(arp_result.valid):
            m.d.sync += t.remote_mac.eq(arp_result.p.mac)
            with m.If(arp_result.p.ok):
                m.next = "open_insert"
            with m.Else():
                m.d.sync += e.do_free.eq(1)
                e.error(ErrorCode.NO_ROUTE)
                m.next = "emit"

    # -- passive open: a SYN to a listener (the arrival step took the id) -------------
    def passive_fields(seq):
        """The TCB of a passive open from the segment ``s`` whose first byte is
        ``seq`` (the SYN's sequence number + 1)."""
        e.reset_tcb(initial_rto)
        m.d.sync += [
            t.owned.eq(0), t.passive.eq(1), t.listener.eq(e.listener),
            t.remote_mac.eq(s.eth_src), t.remote_ip.eq(s.ip_src),
            t.remote_port.eq(s.tcp_sport), t.local_port.eq(s.tcp_dport),
            t.irs.eq(seq - 1), t.rcv_nxt.eq(seq),
            t.rcv_read.eq(seq), t.rcv_dlv.eq(seq), t.rcv_adv.eq(seq),
        ]

    with m.State("passive_tcb_read"):
        m.next = "passive_tcb_load"

    with m.State("passive_tcb_load"):
        m.d.sync += t.eq(e.tcb_rd_data)
        passive_fields(s.tcp_seq + 1)
        m.d.sync += [
            e.write_tcb.eq(1), e.before.eq(S.LISTEN),
            t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),  # never scaled in a SYN
            t.max_wnd.eq(s.tcp_window),
        ]
        e.agree_options(passive=True)  # the SYN-ACK answers what the SYN offered
        m.next = "open_insert"

    # -- SYN cookies: the SYN-ACK (no TCB is read or written) --------------------------
    period_now = e.now[cfg.cookie_period_log2 : cfg.cookie_period_log2 + cookie.PERIOD_BITS]
    last_period = Signal(cookie.PERIOD_BITS)
    sent_any = Signal()
    m.d.comb += e.cookies_recent.eq(
        (cfg.syn_cookies == "always")
        | ((cfg.syn_cookies == "auto") & sent_any & cookie.fresh(period_now, last_period)))
    e.cookie_tsval = cookie.ts_value(
        e.ts_now, cookie.ts_option_bits(t.ws_ok, t.snd_shift, t.sack_ok, t.ecn_ok))

    def hash_request(period, mss):
        m.d.comb += [
            isn.request.valid.eq(1), isn.request.p.cookie.eq(1),
            isn.request.p.salt.eq(cookie.salt(period, mss)),
            isn.request.p.local_ip.eq(ip_addr), isn.request.p.local_port.eq(s.tcp_dport),
            isn.request.p.remote_ip.eq(s.ip_src), isn.request.p.remote_port.eq(s.tcp_sport),
        ]

    with m.State("cookie_synack_load"):
        # ``t`` still holds another event's TCB: every field the SYN-ACK uses is set.
        passive_fields(s.tcp_seq + 1)
        e.agree_options(passive=True)
        with m.If(~(cfg.timestamps & s.tcp_options.ts_valid)):
            # Only the MSS survives in a cookie without timestamps.
            m.d.sync += [t.ws_ok.eq(0), t.snd_shift.eq(0), t.rcv_shift.eq(0),
                         t.sack_ok.eq(0), t.ecn_ok.eq(0)]
        m.d.sync += [e.cookie_mss.eq(cookie.mss_index(m, e.peer_mss)),
                     e.cookie_period.eq(period_now)]
        m.next = "cookie_hash_ask"

    with m.State("cookie_hash_ask"):
        hash_request(e.cookie_period, e.cookie_mss)
        with m.If(isn.request.ready):
            m.next = "cookie_hash_wait"

    with m.State("cookie_hash_wait"):
        m.d.comb += isn.response.ready.eq(1)
        iss = cookie.encode_value(e.cookie_period, e.cookie_mss, isn.response.p.isn)
        with m.If(isn.response.valid):
            m.d.sync += [t.iss.eq(iss), t.snd_nxt.eq(iss + 1), e.cookie_syn.eq(1),
                         last_period.eq(e.cookie_period), sent_any.eq(1)]
            e.send(tcp.SYN | tcp.ACK_FLAG, iss, syn_options=1)
            e.count("tcp_cookies_sent")
            m.next = "finish"

    # -- SYN cookies: the returning ACK -------------------------------------------------
    x = (s.tcp_ack - 1)[:32]
    x_period, x_mss, x_hash = cookie.fields(x)

    with m.State("cookie_check_ask"):
        hash_request(x_period, x_mss)
        with m.If(isn.request.ready):
            m.next = "cookie_check_wait"

    with m.State("cookie_check_wait"):
        m.d.comb += isn.response.ready.eq(1)
        valid = (cookie.fresh(period_now, x_period)
                 & (isn.response.p.isn[: cookie.HASH_BITS] == x_hash))
        with m.If(isn.response.valid):
            with m.If(valid & listeners.has_room(e.listener) & ids.available):
                m.d.sync += e.cid.eq(ids.next_id)
                m.d.comb += ids.take.eq(1)
                m.next = "cookie_tcb_read"
            with m.Elif(valid):
                e.count("tcp_cookie_overflows")
                m.next = "emit"
            with m.Else():
                e.count("tcp_cookies_invalid")
                m.next = "seg_to_reset"  # s3.10.7.2 second: an ACK in LISTEN

    with m.State("cookie_tcb_read"):
        m.next = "cookie_tcb_load"

    with m.State("cookie_tcb_load"):
        # The SYN-RECEIVED connection the SYN would have made: IRS = SEG.SEQ - 1, ISS =
        # the cookie, the MSS from the cookie, the options from TSecr's low bits.
        m.d.sync += t.eq(e.tcb_rd_data)
        passive_fields(s.tcp_seq)
        o = s.tcp_options
        ts_in = cfg.timestamps & o.ts_valid
        wscale, sack, ecn = o.ts_ecr[0:4], o.ts_ecr[4], o.ts_ecr[5]
        ws = ts_in & cfg.window_scaling & (wscale != cookie.NO_WSCALE)
        mss = cookie.cookie_mss(x_mss)
        m.d.sync += [
            e.write_tcb.eq(1), e.before.eq(S.LISTEN), e.cookie_open.eq(1),
            t.rcv_adv.eq(s.tcp_seq + seq_min(cfg.rx_ring_bytes, 0xFFFF)),
            t.ack_sent.eq(s.tcp_seq),
            t.iss.eq(x), t.snd_una.eq(x), t.snd_nxt.eq(x + 1), t.snd_max.eq(x + 1),
            t.snd_end.eq(x + 1), t.snd_wl1.eq(s.tcp_seq - 1), t.rtt_active.eq(0),
            t.tx_gen.eq(~e.tcb_rd_data.tx_gen), e.do_limit.eq(1),
            t.ws_ok.eq(ws), t.snd_shift.eq(Mux(ws, wscale, 0)),
            t.rcv_shift.eq(Mux(ws, cfg.rcv_wscale, 0)),
            t.ts_ok.eq(ts_in), t.ts_recent.eq(o.ts_val), t.ts_recent_at.eq(e.ts_now[16:]),
            t.sack_ok.eq(ts_in & cfg.sack & sack), t.ecn_ok.eq(ts_in & cfg.ecn & ecn),
            t.snd_mss.eq(mss - ts_in * tcp.TS_OPTION_BYTES),
        ]
        e.set_state(S.SYN_RECEIVED, S.LISTEN, "RFC 4987 s3.6: the ACK of a SYN cookie")
        e.count("tcp_cookies_accepted")
        m.next = "open_insert"

    # -- both: the socket pair into the lookup table, the ISN, the SYN or SYN-ACK -----
    with m.State("open_insert"):
        e.request_lookup(ConnTableOp.INSERT, t.remote_ip, t.remote_port, t.local_port)
        m.d.comb += lookup.request.p.conn_id.eq(e.cid)
        with m.If(lookup.request.ready):
            m.next = "open_insert_wait"

    with m.State("open_insert_wait"):
        m.d.comb += lookup.response.ready.eq(1)
        with m.If(lookup.response.valid):
            with m.If(lookup.response.p.ok & e.cookie_open):
                # The rebuilt connection takes its ACK through s3.10.7.4.
                listeners.half_open_take(t.listener)
                m.next = "seg_dispatch"
            with m.Elif(lookup.response.p.ok):
                m.next = "open_isn_ask"
            with m.Else():
                m.d.sync += e.do_free.eq(1)
                with m.If(t.passive):
                    # The TCB never left CLOSED; the trace shows LISTEN -> CLOSED.
                    e.set_state(S.CLOSED, S.LISTEN, "s3.10.7.2: the socket pair could not "
                                "enter the lookup table, the SYN is dropped")
                    e.count("tcp_backlog_drops")
                with m.Elif(lookup.response.p.error == ConnTableError.DUPLICATE):
                    e.error(ErrorCode.PORT_IN_USE)
                with m.Else():
                    e.error(ErrorCode.TABLE_FULL)
                m.next = "emit"

    with m.State("open_isn_ask"):
        m.d.comb += [
            isn.request.valid.eq(1),
            isn.request.p.local_ip.eq(ip_addr),
            isn.request.p.local_port.eq(t.local_port),
            isn.request.p.remote_ip.eq(t.remote_ip),
            isn.request.p.remote_port.eq(t.remote_port),
        ]
        with m.If(isn.request.ready):
            m.next = "open_isn_wait"

    with m.State("open_isn_wait"):
        m.d.comb += isn.response.ready.eq(1)
        iss = isn.response.p.isn
        with m.If(isn.response.valid):
            m.d.sync += [
                t.iss.eq(iss), t.snd_una.eq(iss),
                t.snd_nxt.eq(iss + 1), t.snd_max.eq(iss + 1), t.snd_end.eq(iss + 1),
                t.rtt_active.eq(1), t.rtt_seq.eq(iss + 1), t.rtt_time.eq(e.now),
                t.tx_gen.eq(~t.tx_gen), e.do_limit.eq(1),
            ]
            e.start_timer(t.rto)
            with m.If(t.passive):
                # The trace shows the passive open as LISTEN -> SYN-RECEIVED.
                e.set_state(S.SYN_RECEIVED, S.LISTEN, "s3.10.7.2 third: SYN")
                listeners.half_open_take(t.listener)
                e.send(tcp.SYN | tcp.ACK_FLAG, iss, syn_options=1)
                e.count("tcp_passive_opens")
            with m.Else():
                e.set_state(S.SYN_SENT, S.CLOSED, "s3.10.1 OPEN, active")
                m.d.sync += [t.owned.eq(1), t.rcv_nxt.eq(0)]
                e.send(tcp.SYN, iss, syn_options=1)
                e.event(EventSlot.OPEN, EventKind.CONNECTING)
                e.count("tcp_active_opens")
            m.next = "finish"
