"""Opening a connection: RFC 9293 s3.10.1 (active OPEN) and s3.10.7.2 (the passive
open of a SYN to a listening port), as steps of the TCP engine.

Both take a fresh connection id (:class:`hdl.tcp.conn_ids.ConnIdAllocator`) and start
its TCB afresh, then share the same three steps: the socket pair into the lookup table
(``open_insert``), the ISN of RFC 6528 (``open_isn``), and the SYN or SYN-ACK with the
MSS option (MUST-14, SHLD-5) and the options of RFC 7323 and RFC 2018: a SYN offers
every option the build supports, a SYN-ACK those the SYN offered too.  An active open
first resolves the next hop with ARP.
"""

from ..host_if import ErrorCode, EventKind
from ..proto import tcp
from .conn_table import ConnTableError, ConnTableOp
from .event_context import EventSlot
from .states import TcpState

__all__ = ["add_opening_steps"]

S = TcpState


def add_opening_steps(e, lookup, isn, listeners, initial_rto, arp_lookup, arp_result, ip_addr):
    m, t, s, c = e.m, e.t, e.s, e.c

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
    with m.State("passive_tcb_read"):
        m.next = "passive_tcb_load"

    with m.State("passive_tcb_load"):
        m.d.sync += t.eq(e.tcb_rd_data)
        e.reset_tcb(initial_rto)
        m.d.sync += [
            e.write_tcb.eq(1), e.before.eq(S.LISTEN),
            t.owned.eq(0), t.passive.eq(1), t.listener.eq(e.listener),
            t.remote_mac.eq(s.eth_src), t.remote_ip.eq(s.ip_src),
            t.remote_port.eq(s.tcp_sport), t.local_port.eq(s.tcp_dport),
            t.irs.eq(s.tcp_seq), t.rcv_nxt.eq(s.tcp_seq + 1),
            t.rcv_read.eq(s.tcp_seq + 1), t.rcv_dlv.eq(s.tcp_seq + 1),
            t.rcv_adv.eq(s.tcp_seq + 1),
            t.snd_wnd.eq(s.tcp_window), t.snd_wl1.eq(s.tcp_seq),  # never scaled in a SYN
            t.max_wnd.eq(s.tcp_window),
        ]
        e.agree_options(passive=True)  # the SYN-ACK answers what the SYN offered
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
            with m.If(lookup.response.p.ok):
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
                listeners.take_place(t.listener)
                e.send(tcp.SYN | tcp.ACK_FLAG, iss, syn_options=1)
                e.count("tcp_passive_opens")
            with m.Else():
                e.set_state(S.SYN_SENT, S.CLOSED, "s3.10.1 OPEN, active")
                m.d.sync += [t.owned.eq(1), t.rcv_nxt.eq(0)]
                e.send(tcp.SYN, iss, syn_options=1)
                e.event(EventSlot.OPEN, EventKind.CONNECTING)
                e.count("tcp_active_opens")
            m.next = "finish"
