"""TcpEngine alone at its ports (tests/engine_bench.py): opening, data, RFC 5961, timers.

Each test puts one connection into a state with a fixture, feeds segment records and host
commands, and checks the segment records, copies, deliveries, events, the trace and the
counters against the RFC rule its docstring cites.  The scenarios are those of
tests/cocotb_tcp.py that need no datapath.  Time stands still unless a test moves it, so
timer tests check deadlines to the microsecond.  The tests of the deviations fixed by
engine commit 11d0eea say so in their docstrings; they fail on the engine before it.
"""

import pytest
from engine_bench import MOD, PAYLOAD_AT, Peer, run
from engine_fixtures import established, syn_received, syn_sent

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.hdl.tcp.tcb import TcpState

RING = 256  # BENCH_CONFIG rx_ring_bytes and tx_ring_bytes
RTO = 1000  # BENCH_CONFIG rto_initial_us = rto_min_us
RTO_MAX = 8000


def check_ack(seg, c, flags="A"):
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, no text."""
    assert (seg.flags, seg.seq, seg.ack, seg.len) == (flags, c.snd_nxt, c.rcv_nxt, 0), seg


# -- LISTEN -------------------------------------------------------------------------------


def test_listen_syn_gets_synack():
    """RFC 9293 s3.10.7.2 LISTEN, third: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> with the MSS
    option (MUST-14); the window is the free RX ring; the ACK gives ACCEPTED with the
    socket pair (s3.10.7.4 fifth, SYN-RECEIVED -> ESTABLISHED)."""
    async def body(b):
        c = await syn_received(b, Peer(isn=0x1234_5678))
        synack = b.segments[-1]
        assert (synack.ack, synack.sport, synack.dport, synack.window) == (
            0x1234_5679, 80, 40000, RING)
        assert b.state(c.id) == TcpState.SYN_RECEIVED
        b.send(c.peer, "A")
        ev = await b.event(EventKind.ACCEPTED)
        assert (ev.port, ev.remote_port, ev.addr) == (80, 40000, c.peer.ip)
        await b.quiet()  # nothing to acknowledge: the ACK carried no text
        assert b.counters["tcp_passive_opens"] == 1 and b.counters["tcp_established"] == 1
        assert b.trace[-1].before == TcpState.SYN_RECEIVED
        assert b.trace[-1].after == TcpState.ESTABLISHED
    run(body)


def test_listen_ack_goes_to_reset():
    """RFC 9293 s3.10.7.2 LISTEN, second: "An acceptable reset segment should be formed for
    any arriving ACK-bearing segment" -- the engine hands it to TcpReset, which sends
    <SEQ=SEG.ACK><CTL=RST>; no connection is made."""
    async def body(b):
        await b.listen(80)
        b.send(Peer(), "A", ack=777)
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][:3] == ("A", 1000, 777)
        await b.quiet()
        assert b.counters["tcp_passive_opens"] == 0
    run(body)


def test_listen_backlog_full():
    """A listener's backlog bounds connections that completed the handshake and wait for
    ACCEPT (RFC 9293 s3.10.7.2: the SYN is queued for later processing or dropped; the
    accept queue of Linux): while it is full a SYN is dropped and counted; a half-open
    connection takes no place in it (hdl/tcp/listeners.py); ACCEPT frees the place."""
    async def body(b):
        first = await established(b, Peer(port=40001), backlog=1, credit=0)
        assert b.tcb(first.id)["accepted"] == 1
        second = Peer(port=40002)
        b.send(second, "S", mss=1460)
        second.take(await b.next_segment(flags="SA"))
        third = Peer(port=40003)
        b.send(third, "S", mss=1460)  # the second is half-open: no place taken
        third.take(await b.next_segment(flags="SA"))
        since = len(b.events)
        b.send(second, "A")  # the second completes: the backlog of 1 is full
        ev = await b.event(EventKind.ACCEPTED, since=since)
        b.send(Peer(port=40004), "S", mss=1460)
        await b.settle()
        assert b.counters["tcp_backlog_drops"] == 1
        assert [s.dport for s in b.segments if s.flags == "SA"] == [40001, 40002, 40003]
        b.command(CommandOp.ACCEPT, ev.conn)
        await b.settle()
        b.send(Peer(port=40005), "S", mss=1460)
        assert (await b.next_segment(flags="SA")).dport == 40005
    run(body)


def test_syn_received_rst_returns_to_listen():
    """RFC 9293 MUST-10/MUST-11 (s3.10.7.4 second): a RST in SYN-RECEIVED from a passive
    OPEN returns to LISTEN without telling the user; the backlog place is free again."""
    async def body(b):
        c = await syn_received(b, backlog=1)
        b.send(c.peer, "R")
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
        assert b.kinds() == [EventKind.LISTENING]
        retry = Peer(port=40005, isn=5000)
        b.send(retry, "S", mss=1460)
        synack = await b.next_segment(flags="SA")
        assert synack.ack == 5001
    run(body)


def test_syn_received_bad_ack_gets_rst():
    """RFC 9293 s3.10.7.4 fifth, SYN-RECEIVED: "If the segment acknowledgment is not
    acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST>" (TcpReset sends it)."""
    async def body(b):
        c = await syn_received(b)
        b.send(c.peer, "A", ack=c.iss + 1000)
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][2] == (c.iss + 1000) % MOD
        await b.settle()
        assert b.state(c.id) == TcpState.SYN_RECEIVED
    run(body)


def test_syn_received_syn_retransmitted():
    """A retransmitted SYN in SYN-RECEIVED (our SYN-ACK was lost) gets the same SYN-ACK:
    same ISS, ACK = IRS + 1 (RFC 9293 s3.8.1, retransmission of the SYN)."""
    async def body(b):
        c = await syn_received(b)
        b.send(c.peer, "S", seq=c.peer.isn, mss=1460)
        again = await b.next_segment(flags="SA")
        assert (again.seq, again.ack, again.mss) == (c.iss, c.peer.isn + 1, True)
    run(body)


# -- ESTABLISHED: data in -----------------------------------------------------------------


def test_established_data_in_order():
    """RFC 9293 s3.10.7.4 seventh: in-order text goes to the receive buffer (one copy at
    RCV.NXT), RCV.NXT advances and the ACK carries it; the window is the free ring
    (s3.8.6); the host gets the bytes within its credit (s3.10.3)."""
    async def body(b):
        c = await established(b, credit=60)
        start = c.rcv_nxt
        buf = b.send(c.peer, "PA", 100)
        ack = await b.next_segment()
        check_ack(ack, c)
        assert ack.window == RING - 100
        await b.settle()
        assert b.copies == [(c.id, buf, PAYLOAD_AT, 100, start)]
        assert b.deliveries == [(c.id, start, 60)]  # the credit bounds the delivery
        b.command(CommandOp.CREDIT, c.id, value=100)
        await b.settle()
        assert b.deliveries[1] == (c.id, (start + 60) % MOD, 40)
        assert b.tcb(c.id)["rcv_credit"] == 60
    run(body)


def test_established_data_partly_old():
    """RFC 9293 s3.10.7.4 first: a segment that starts before RCV.NXT but reaches into the
    window is acceptable; only the new bytes are kept (trimmed), none twice."""
    async def body(b):
        c = await established(b)
        start = c.rcv_nxt
        b.send(c.peer, "PA", 60)
        check_ack(await b.next_segment(), c)
        buf = b.send(c.peer, "PA", 50, seq=start + 40)
        c.peer.snd_nxt = (start + 90) % MOD
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.copies[1] == (c.id, buf, PAYLOAD_AT + 20, 30, (start + 60) % MOD)
        assert sum(length for _, _, length in b.deliveries) == 90
    run(body)


def test_established_data_outside_window():
    """RFC 9293 s3.10.7.4 first: an unacceptable segment gets <SEQ=SND.NXT><ACK=RCV.NXT>
    <CTL=ACK> and is dropped: beyond the window and already received alike."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 10, seq=c.rcv_nxt + RING)
        check_ack(await b.next_segment(), c)
        b.send(c.peer, "PA", 10, seq=c.rcv_nxt - 10)
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.copies == [] and b.counters["tcp_bad_seq"] == 2
    run(body)


def test_established_data_out_of_order():
    """RFC 9293 SHLD-31 and RFC 5681 s4.2: a segment inside the window but past RCV.NXT
    is held (copied to its place in the RX ring) and answered at once with a duplicate
    ACK for RCV.NXT; the segment that fills the hole is ACKed at once with RCV.NXT past
    both, and the host gets the bytes in order."""
    async def body(b):
        c = await established(b)
        hole = c.rcv_nxt
        b.send(c.peer, "PA", 20, seq=hole + 20)
        check_ack(await b.next_segment(), c)  # RCV.NXT unchanged: a duplicate ACK
        b.send(c.peer, "PA", 20, seq=hole)
        ack = await b.next_segment()
        assert ack.ack == (hole + 40) % MOD, ack
        await b.settle()
        assert [(cp[4], cp[3]) for cp in b.copies] == [((hole + 20) % MOD, 20), (hole, 20)]
        assert b.counters["tcp_out_of_order"] == 1
        assert [(d[1], d[2]) for d in b.deliveries] == [(hole, 40)]
    run(body)


def test_established_ack_too_new():
    """RFC 9293 s3.10.7.4 fifth: "If the ACK acks something not yet sent (SEG.ACK >
    SND.NXT), then send an ACK, drop the segment, and return" -- its text is not kept."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 2, ack=c.snd_nxt + 50)
        c.peer.snd_nxt -= 2
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.copies == [] and b.tcb(c.id)["snd_una"] == c.iss + 1
    run(body)


def test_established_ack_too_old():
    """RFC 5961 s5.2: SEG.ACK below SND.UNA - MAX.SND.WND gets a challenge ACK and the
    segment (with its text) is dropped."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 2, ack=c.snd_nxt - 200_000)
        c.peer.snd_nxt -= 2
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.copies == [] and b.counters["tcp_challenge_acks"] == 1
    run(body)


# -- ESTABLISHED: RST and SYN (RFC 5961) ------------------------------------------------------


def test_established_rst_exact():
    """RFC 5961 s3.2: a RST at exactly RCV.NXT resets the connection: CLOSED, the user is
    told "connection reset" (RFC 9293 s3.10.7.4 second, MUST-12); nothing is sent."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "R")
        ev = await b.event(EventKind.RESET, conn=c.id)
        assert ev.code == ErrorCode.RESET
        await b.quiet()
        assert b.state(c.id) == TcpState.CLOSED and b.counters["tcp_resets_in"] == 1
    run(body)


def test_established_rst_in_window():
    """RFC 5961 s3.2: a RST inside the window but not at RCV.NXT gets a challenge ACK
    <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>; the connection stays and still receives."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "R", seq=c.rcv_nxt + 10)
        check_ack(await b.next_segment(), c)
        b.send(c.peer, "PA", 5)
        check_ack(await b.next_segment(), c)
        assert EventKind.RESET not in b.kinds()
        assert b.counters["tcp_challenge_acks"] == 1
    run(body)


def test_established_rst_outside_window():
    """RFC 5961 s3.2 / RFC 9293 s3.10.7.4 first: a RST outside the window is dropped
    silently (no ACK for an unacceptable RST)."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "R", seq=c.rcv_nxt + 1_000_000)
        await b.quiet()
        assert b.state(c.id) == TcpState.ESTABLISHED and b.counters["tcp_bad_seq"] == 1
    run(body)


def test_established_syn_gets_challenge_ack():
    """RFC 5961 s4.2 (RFC 9293 s3.10.7.4 fourth): a SYN in a synchronized state, whatever
    its sequence number, gets a challenge ACK; the connection stays."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "S", seq=c.rcv_nxt + 5)
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.state(c.id) == TcpState.ESTABLISHED
        assert b.counters["tcp_challenge_acks"] == 1
    run(body)


# -- ESTABLISHED: data out, retransmission --------------------------------------------------


def test_established_send_segments():
    """RFC 9293 MUST-16: segments carry at most the effective send MSS (the peer's MSS
    option, here 64), PSH on the last (MUST-61); the ACK returns send credit (ACKED).
    The 8-byte tail waits until the full segments are acknowledged (the Nagle
    algorithm, SHLD-7)."""
    async def body(b):
        c = await established(b, Peer(mss=64))
        b.write(c.id, 200)
        segs = [await b.next_segment() for _ in range(3)]
        assert [(s.flags, s.seq - c.iss - 1, s.len) for s in segs] == [
            ("A", 0, 64), ("A", 64, 64), ("A", 128, 64)]
        await b.quiet()
        c.peer.rcv_nxt = (c.iss + 193) % MOD
        b.send(c.peer, "A")
        tail = await b.next_segment()
        assert (tail.flags, tail.seq - c.iss - 1, tail.len) == ("PA", 192, 8)
        assert all(s.pos == s.seq for s in segs + [tail])
        ev = await b.event(EventKind.ACKED, conn=c.id)
        assert ev.value == 192
        since = len(b.events)
        c.peer.rcv_nxt = (c.iss + 201) % MOD
        b.send(c.peer, "A")
        ev = await b.event(EventKind.ACKED, conn=c.id, since=since)
        assert ev.value == 8
        await b.advance(4 * RTO)
        await b.quiet()  # all acknowledged: no retransmission
    run(body)


def test_established_window_respected():
    """RFC 9293 s3.8.6: the sender sends within the offered window: with the peer's window
    at 100 bytes only 100 of 200 go out until an ACK opens it."""
    async def body(b):
        c = await established(b, Peer(window=100))
        b.write(c.id, 200)
        assert (await b.next_segment()).len == 100
        await b.quiet()
        c.peer.rcv_nxt = (c.iss + 101) % MOD
        b.send(c.peer, "A")
        seg = await b.next_segment()
        assert (seg.seq, seg.len, seg.flags) == ((c.iss + 101) % MOD, 100, "PA")
    run(body)


def test_established_retransmit_backoff_then_timeout():
    """RFC 6298 (5.1) the timer starts with the segment, (5.4)-(5.6) expiry resends from
    SND.UNA and doubles the RTO, capped (s2.5, 8 ms here); RFC 9293 MUST-20: after R2
    retransmissions (4 here) the connection is closed and the user told (TIMEOUT)."""
    async def body(b):
        c = await established(b)
        b.write(c.id, 5)
        first = await b.next_segment(flags="PA")
        for gap in (RTO, 2 * RTO, 4 * RTO, RTO_MAX):
            await b.advance(gap - 1)
            await b.quiet()
            await b.advance(1)
            again = await b.next_segment(timeout=200)
            assert (again.seq, again.len) == (first.seq, 5) and "A" in again.flags
        assert b.counters["tcp_retransmits"] == 4 and b.counters["tcp_r1"] == 1
        await b.advance(RTO_MAX - 1)
        await b.quiet()
        await b.advance(1)
        await b.event(EventKind.TIMEOUT, conn=c.id, timeout=200)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED and b.counters["tcp_timeouts"] == 1
    run(body)


def test_established_zero_window_probe():
    """RFC 9293 s3.8.6.1 MUST-36, SHLD-29, SHLD-30: with the peer's window zero and data
    queued, the first probe (one byte) goes out after an RTO, the next after a doubled
    one; when an ACK opens the window the rest follows."""
    async def body(b):
        c = await established(b, Peer(window=0))
        b.write(c.id, 10)
        await b.quiet()
        for gap in (RTO, 2 * RTO):
            await b.advance(gap - 1)
            await b.quiet()
            await b.advance(1)
            probe = await b.next_segment(timeout=200)
            assert (probe.seq, probe.len) == ((c.iss + 1) % MOD, 1), probe
        c.peer.rcv_nxt = (c.iss + 2) % MOD
        b.send(c.peer, "A", window=100)
        rest = await b.next_segment()
        assert (rest.seq, rest.len, rest.flags) == ((c.iss + 2) % MOD, 9, "PA")
    run(body)


def test_poked_unacked_data_partial_ack_then_retransmit():
    """RFC 9293 s3.10.7.4 fifth: an ACK with SND.UNA < SEG.ACK =< SND.NXT moves SND.UNA
    (ACKED returns the credit); one beyond SND.NXT gets an ACK and is dropped; RFC 6298
    (5.3) restarts the timer and (5.4) resends the earliest unacknowledged byte on
    expiry.  The 100 unacknowledged bytes are a TCB poke (SND.NXT = ISS+1+100)."""
    async def body(b):
        c = await established(b, sent=100)
        c.peer.rcv_nxt = (c.iss + 1 + 101) % MOD
        b.send(c.peer, "A")
        check_ack(await b.next_segment(), c)  # too new: ACK, SND.UNA stays
        assert b.find_event(EventKind.ACKED) is None
        c.peer.rcv_nxt = (c.iss + 1 + 40) % MOD
        b.send(c.peer, "A")
        ev = await b.event(EventKind.ACKED, conn=c.id)
        assert ev.value == 40
        await b.settle()
        assert b.tcb(c.id)["snd_una"] == c.peer.rcv_nxt
        await b.advance(RTO - 1)
        await b.quiet()
        await b.advance(1)
        again = await b.next_segment(timeout=200)
        assert (again.seq, again.len) == (c.peer.rcv_nxt, 60), again
    run(body)


# -- SYN-SENT -------------------------------------------------------------------------------


def test_syn_sent_synack():
    """RFC 9293 s3.10.7.3 SYN-SENT: the SYN follows the ARP resolution and carries the MSS
    option (MUST-14); a SYN-ACK acknowledging it gives ESTABLISHED and <SEQ=SND.NXT>
    <ACK=RCV.NXT><CTL=ACK>."""
    async def body(b):
        c = await syn_sent(b)
        syn = b.segments[0]
        assert b.arp.got == [c.peer.ip]
        assert (syn.mss, syn.sport, syn.dport, syn.window) == (True, 50000, 8080, RING)
        b.send(c.peer, "SA", mss=1460)
        check_ack(await b.next_segment(), c)
        await b.event(EventKind.ESTABLISHED, conn=c.id)
        await b.settle()
        assert b.state(c.id) == TcpState.ESTABLISHED
        b.command(CommandOp.CREDIT, c.id, value=100)
        b.send(c.peer, "PA", 6)
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.deliveries == [(c.id, (c.peer.isn + 1) % MOD, 6)]
    run(body)


def test_syn_sent_rst_refused():
    """RFC 9293 s3.10.7.3 SYN-SENT, second: a RST with an acceptable ACK means "connection
    reset": the user sees the connection refused; the TCB goes to CLOSED."""
    async def body(b):
        c = await syn_sent(b)
        b.send(c.peer, "RA", seq=0)
        ev = await b.event(EventKind.RESET, conn=c.id)
        assert ev.code == ErrorCode.REFUSED
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
    run(body)


def test_syn_sent_bad_ack_gets_rst():
    """RFC 9293 s3.10.7.3 SYN-SENT, first: an unacceptable ACK gets <SEQ=SEG.ACK>
    <CTL=RST> (TcpReset) and is dropped; the connection stays in SYN-SENT and the right
    SYN-ACK still opens it."""
    async def body(b):
        c = await syn_sent(b)
        b.send(c.peer, "SA", ack=c.iss + 100, seq=c.peer.isn)
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][2] == (c.iss + 100) % MOD
        b.send(c.peer, "SA")
        check_ack(await b.next_segment(), c)
        await b.event(EventKind.ESTABLISHED, conn=c.id)
    run(body)


def test_syn_sent_simultaneous_open():
    """RFC 9293 s3.5 figure 8 (MUST-10): a SYN without ACK in SYN-SENT gives SYN-RECEIVED
    and <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>; the peer's ACK of our SYN completes it."""
    async def body(b):
        c = await syn_sent(b)
        b.send(c.peer, "S", mss=1460)
        synack = await b.next_segment(flags="SA")
        assert (synack.seq, synack.ack) == (c.iss, c.peer.isn + 1)
        await b.settle()
        assert b.state(c.id) == TcpState.SYN_RECEIVED
        b.send(c.peer, "A")
        await b.event(EventKind.ESTABLISHED, conn=c.id)
    run(body)


def test_syn_sent_timeout():
    """RFC 6298 s5 and (5.7), RFC 9293 MUST-22/23: the SYN is resent with the timeout
    doubling; after the SYN R2 (3 here) the open fails with TIMEOUT."""
    async def body(b):
        c = await syn_sent(b)
        for gap in (RTO, 2 * RTO, 4 * RTO):
            await b.advance(gap - 1)
            await b.quiet()
            await b.advance(1)
            again = await b.next_segment(flags="S", timeout=200)
            assert (again.seq, again.mss) == (c.iss, True)
        await b.advance(RTO_MAX)
        await b.event(EventKind.TIMEOUT, conn=c.id, timeout=200)
    run(body)


# -- Host interface errors ------------------------------------------------------------------


def test_host_commands_refused():
    """Bad commands get an ERROR event with a reason and change nothing (RFC 9293 MUST-47
    error reports): unknown id, LISTEN on a listening port, UNLISTEN of a port that does
    not listen, an unknown operation, CONNECT to a broadcast or multicast address
    (MUST-46)."""
    async def body(b):
        await b.listen(80)
        cases = [
            (CommandOp.SHUTDOWN, {"conn": 3}, ErrorCode.UNKNOWN_CONN),
            (CommandOp.LISTEN, {"port": 80, "value": 1}, ErrorCode.PORT_IN_USE),
            (CommandOp.UNLISTEN, {"port": 81}, ErrorCode.NOT_LISTENING),
            (CommandOp.NOP, {}, ErrorCode.BAD_COMMAND),
            (CommandOp.CONNECT, {"addr": 0x0A0000FF, "port": 80, "value": 5000},
             ErrorCode.BAD_ADDRESS),
            (CommandOp.CONNECT, {"addr": 0xE0000001, "port": 80, "value": 5000},
             ErrorCode.BAD_ADDRESS),
        ]
        for op, fields, code in cases:
            tag = b.command(op, **fields)
            ev = await b.event(tag=tag)
            assert (ev.kind, ev.code) == (EventKind.ERROR, code), (op, ev)
        await b.quiet()
        assert b.arp.got == [] and b.counters["tcp_host_errors"] == len(cases)
    run(body)


# -- Known deviations ------------------------------------------------------------------------


def test_syn_sent_synack_with_data():
    """RFC 9293 s3.10.7.3 SYN-SENT, fifth: "If there are other controls or text in the
    segment, then continue processing at the sixth step ... where the URG bit is checked"
    -- the text of a SYN-ACK is kept: ACK = IRS + 1 + 3 and the 3 bytes copied from the
    first byte of text.  (Until engine commit 11d0eea: ACK IRS + 3, and 2 bytes copied
    from text offset 1 to IRS + 1, the SYN counted as a byte of text.)"""
    async def body(b):
        c = await syn_sent(b)
        buf = b.send(c.peer, "SA", 3, mss=1460)
        ack = await b.next_segment()
        assert (ack.flags, ack.ack) == ("A", (c.peer.isn + 4) % MOD), ack
        await b.settle()
        assert b.copies == [(c.id, buf, PAYLOAD_AT + 4, 3, (c.peer.isn + 1) % MOD)]
    run(body)


def test_simultaneous_open_synack_in_syn_received():
    """RFC 9293 s3.5 figure 8 (MUST-10): in a simultaneous open each end, in SYN-RECEIVED,
    gets the other's <SEQ=IRS><ACK=ISS+1><CTL=SYN,ACK>; it acknowledges our SYN, so the
    connection is ESTABLISHED (the SYN itself is old: trimmed, s3.10.7.4 first).  (Until
    engine commit 11d0eea: answered as unacceptable, the connection stayed SYN-RECEIVED.)"""
    async def body(b):
        c = await syn_sent(b)
        b.send(c.peer, "S", mss=1460)
        await b.next_segment(flags="SA")
        b.send(c.peer, "SA", seq=c.peer.isn, mss=1460)
        await b.event(EventKind.ESTABLISHED, conn=c.id, timeout=300)
        await b.settle()
        assert b.state(c.id) == TcpState.ESTABLISHED
    run(body)


@pytest.mark.parametrize("flags, length", [("F", 0), ("", 5)], ids=["fin", "bare-text"])
def test_listen_other_segment_dropped(flags, length):
    """RFC 9293 s3.10.7.2 LISTEN, fourth, "other data or control": a segment with neither
    SYN nor ACK nor RST (a FIN, or bare text) is dropped -- no RST (that is for CLOSED,
    s3.10.7.1) and no connection.  (Until engine commit 11d0eea: sent to TcpReset.)"""
    async def body(b):
        await b.listen(80)
        b.send(Peer(), flags, length)
        await b.quiet()
        assert b.resets == [] and b.counters["tcp_passive_opens"] == 0
    run(body)


def test_closed_port_other_segment_gets_rst():
    """RFC 9293 s3.10.7.1 CLOSED: "An incoming segment not containing a RST causes a RST
    to be sent in response" -- a FIN to a port nobody listens on goes to TcpReset."""
    async def body(b):
        await b.listen(80)
        b.send(Peer(engine_port=81), "F")
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][0] == "F" and b.resets[0][5] == 81
    run(body)
