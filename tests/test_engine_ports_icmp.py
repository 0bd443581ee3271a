"""ICMP errors at the TCP engine's own ports (hdl/tcp/icmp_errors.py; RFC 9293 s3.9.2.2,
RFC 1122 s4.2.3.9, RFC 5927, RFC 1191).  The errors come in as the receive parser hands
them over (``Verdict.ICMP_ERROR``: the quoted socket pair and sequence number;
tests/test_rx_parser_unit.py checks that part against scapy frames); what the engine
does is seen on its ports: the segments it sends, the host events, the TCB and the
counters."""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established, syn_received, syn_sent

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.hdl.proto import icmp
from toe.hdl.tcp.tcb import TcpState

UNREACH, TIME_EXCEEDED, PARAMETER = (icmp.TYPE_DEST_UNREACHABLE, icmp.TYPE_TIME_EXCEEDED,
                                     icmp.TYPE_PARAMETER_PROBLEM)
NET, HOST, PROTO, PORT, FRAG = 0, 1, 2, 3, 4
#: Room for full-sized 1460-byte segments (a 1500-byte MTU) and some in flight.
WIDE = BENCH_CONFIG.replace(mtu=1500, tx_ring_bytes=8192, rx_ring_bytes=8192,
                            rx_buffer_bytes=4096)


def test_port_unreachable_ends_syn_sent():
    """RFC 9293 SHLD-26 (RFC 1122 s4.2.3.9: protocol and port unreachable are hard
    errors): a port unreachable quoting our SYN ends the open: RESET with code
    UNREACHABLE (value: type 3 << 8 | code 3), CLOSED, no segment sent; the SYN is not
    sent again.  A protocol unreachable does the same to another open."""
    async def body(b):
        for code, local_port in ((PORT, 50000), (PROTO, 50001)):
            c = await syn_sent(b, local_port=local_port)
            since = len(b.events)
            b.icmp_error(c.peer, UNREACH, code, c.iss)
            ev = await b.event(EventKind.RESET, conn=c.id, since=since)
            assert (ev.code, ev.value) == (ErrorCode.UNREACHABLE, UNREACH << 8 | code)
            await b.settle()
            assert b.state(c.id) == TcpState.CLOSED
            await b.advance(20_000)  # well past the SYN's retransmission time
            await b.quiet(400)
            assert b.counters["tcp_icmp_aborts"] == (1 if code == PORT else 2)
        trace = [(t.before, t.after) for t in b.trace if t.icmp]
        assert trace == [(TcpState.SYN_SENT, TcpState.CLOSED)] * 2
    run(body)


def test_soft_errors_are_reported_and_never_abort():
    """RFC 9293 SHLD-25 and MUST-56: host and network unreachable, time exceeded and
    parameter problem are reported to the host (one ICMP_ERROR event until SND.UNA next
    advances) and never abort: the SYN is retransmitted, the SYN-ACK completes the open,
    and in ESTABLISHED even a port unreachable is only reported (RFC 5461 s4.1)."""
    async def body(b):
        c = await syn_sent(b)
        since = len(b.events)
        for kind, code in ((UNREACH, HOST), (TIME_EXCEEDED, 0), (PARAMETER, 0), (UNREACH, NET)):
            b.icmp_error(c.peer, kind, code, c.iss)
        await b.settle()
        reports = [ev for ev in b.events[since:] if ev.kind == EventKind.ICMP_ERROR]
        assert [(ev.conn, ev.value) for ev in reports] == [(c.id, UNREACH << 8 | HOST)]
        assert b.counters["tcp_icmp_soft"] == 4
        assert b.state(c.id) == TcpState.SYN_SENT
        await b.advance(2000)
        syn = await b.next_segment(flags="S")  # retransmitted
        assert syn.seq == c.iss
        b.send(c.peer, "SA", **c.peer.syn_options())
        await b.next_segment(flags="A")
        await b.event(EventKind.ESTABLISHED, conn=c.id)
        b.command(CommandOp.CREDIT, c.id, value=1 << 16)
        b.write(c.id, 100)
        data = await b.next_segment(flags="PA")
        since = len(b.events)
        b.icmp_error(c.peer, UNREACH, PORT, data.seq)
        ev = await b.event(EventKind.ICMP_ERROR, conn=c.id, since=since)
        assert ev.value == UNREACH << 8 | PORT
        await b.settle()
        assert b.state(c.id) == TcpState.ESTABLISHED
        assert b.counters["tcp_icmp_aborts"] == 0
    run(body)


def test_quoted_sequence_number_must_be_in_flight():
    """RFC 5927 s4.1: an error is acted on only if the quoted sequence number is in
    SND.UNA =< SEQ < SND.MAX; others are dropped and counted (``tcp_icmp_bad_seq``), as
    is an error for no connection (``tcp_icmp_no_conn``), and none is ever answered (no
    reset, no segment)."""
    async def body(b):
        c = await established(b, sent=100)
        una = (c.iss + 1) % MOD
        since = len(b.events)
        for seq in (una - 1, c.snd_nxt, c.snd_nxt + 1000, una + (1 << 31)):
            b.icmp_error(c.peer, UNREACH, HOST, seq)
        b.icmp_error(c.peer, UNREACH, HOST, una, local_port=50001)
        b.icmp_error(Peer(port=40001), UNREACH, HOST, una)
        await b.settle()
        await b.quiet()
        assert b.resets == []
        assert b.find_event(EventKind.ICMP_ERROR, since=since) is None
        assert (b.counters["tcp_icmp_bad_seq"], b.counters["tcp_icmp_no_conn"]) == (4, 2)
        for seq in (una, c.snd_nxt - 1):  # the first and the last byte in flight
            b.icmp_error(c.peer, UNREACH, HOST, seq)
        await b.event(EventKind.ICMP_ERROR, conn=c.id, since=since)
        await b.settle()
        assert b.counters["tcp_icmp_soft"] == 2
    run(body)


def test_one_report_until_the_peer_acknowledges_data():
    """hdl/tcp/icmp_errors.py: repeated soft errors give one ICMP_ERROR event; after an
    ACK that advances SND.UNA the next error is reported again."""
    async def body(b):
        c = await established(b)
        b.write(c.id, 200)
        seg = await b.next_segment(flags="PA")
        since = len(b.events)
        for _ in range(5):
            b.icmp_error(c.peer, TIME_EXCEEDED, 0, seg.seq)
        await b.settle()
        assert b.kinds(c.id, since).count(EventKind.ICMP_ERROR) == 1
        b.send(c.peer, "A", ack=seg.seq + 100)
        await b.settle()
        b.icmp_error(c.peer, UNREACH, NET, seg.seq + 100)
        await b.settle()
        reports = [ev.value for ev in b.events[since:] if ev.kind == EventKind.ICMP_ERROR]
        assert reports == [TIME_EXCEEDED << 8, UNREACH << 8 | NET]
        assert b.counters["tcp_icmp_soft"] == 6
    run(body)


def test_fragmentation_needed_lowers_the_mss_and_resends():
    """RFC 1191 s6.5 with RFC 5927 s7.2: a fragmentation-needed message with next-hop MTU
    1000 quoting data in flight lowers SND.MSS to 960 (1000 less 40 bytes of headers) and
    the data in flight (two segments of 1460; Nagle holds the last 1080 bytes) leaves
    again at once in segments of 960 bytes, without waiting for the retransmission timer
    and without the congestion response of a timeout (cwnd unchanged).  A larger MTU
    never raises it; an MTU below ``min_pmtu`` (552) or 0 (a router of before RFC 1191)
    gives 512; every segment after uses the new size."""
    async def body(b):
        c = await established(b)
        b.write(c.id, 4000)
        first = await b.burst()
        assert [s.len for s in first] == [1460, 1460]
        cwnd = b.tcb(c.id)["cwnd"]
        b.icmp_error(c.peer, UNREACH, FRAG, first[1].seq, mtu=1000)
        again = await b.burst()
        assert [(s.seq, s.len) for s in again] == [
            ((first[0].seq + k * 960) % MOD, 960) for k in range(4)]
        tcb = b.tcb(c.id)
        assert (tcb["snd_mss"], tcb["cwnd"], b.counters["tcp_retransmits"]) == (960, cwnd, 0)
        assert b.counters["tcp_icmp_pmtu"] == 1
        for mtu, mss in ((1400, 960), (300, 512), (0, 512)):
            b.icmp_error(c.peer, UNREACH, FRAG, again[-1].seq, mtu=mtu)
            await b.settle()
            assert b.tcb(c.id)["snd_mss"] == mss
        assert b.counters["tcp_icmp_pmtu"] == 2
        # The second lowering sent the 3,840 bytes in flight again, then the rest.
        assert [s.len for s in b.segments[b.seen:]] == [512] * 7 + [416]
        b.seen = len(b.segments)
        b.send(c.peer, "A", ack=first[0].seq + 4000)
        await b.settle()
        b.write(c.id, 1024)
        assert [s.len for s in await b.burst()] == [512, 512]
        assert b.find_event(EventKind.ICMP_ERROR) is None  # handled by TCP itself
    run(body, WIDE)


def test_port_unreachable_deletes_a_half_open_connection():
    """RFC 9293 SHLD-26 for a passive open: a port unreachable quoting our SYN-ACK
    deletes the half-open connection (back to LISTEN, figure 5; the host never knew it):
    no event, the id is free, and the listener answers the next SYN at once."""
    async def body(b):
        c = await syn_received(b)
        since = len(b.events)
        b.icmp_error(c.peer, UNREACH, PORT, c.iss)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
        assert b.events[since:] == []
        assert b.counters["tcp_icmp_aborts"] == 1
        await b.advance(20_000)
        await b.quiet(400)  # no SYN-ACK retransmission
        again = Peer(isn=9000)
        b.send(again, "S", **again.syn_options())
        synack = await b.next_segment(flags="SA")
        assert synack.ack == 9001
    run(body)
