"""TcpEngine alone at its ports (tests/engine_bench.py): closing, every synchronized state
against RST, SYN and text, host commands per state, address checks, and the receive
bookkeeping under reordering.

Each fixture (``established`` .. ``time_wait``) brings a fresh passive connection into
its state through the real ports; the test then applies one event and checks segments,
copies, deliveries, events and the TCB against the RFC rule in its docstring.
"""

import random

import pytest
from engine_bench import BENCH_CONFIG, MOD, PAYLOAD_AT, Peer, run
from engine_fixtures import (
    close_wait,
    closing,
    established,
    fin_wait_1,
    fin_wait_2,
    last_ack,
    syn_sent,
    time_wait,
)

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.hdl.proto.tcp import seq_before_eq
from toe.hdl.tcp.tcb import TcpState

RING = BENCH_CONFIG.rx_ring_bytes
RTO = BENCH_CONFIG.rto_initial_us
TWO_MSL = 2 * BENCH_CONFIG.msl_us

FIXTURES = {
    "established": (established, TcpState.ESTABLISHED),
    "fin_wait_1": (fin_wait_1, TcpState.FIN_WAIT_1),
    "fin_wait_2": (fin_wait_2, TcpState.FIN_WAIT_2),
    "close_wait": (close_wait, TcpState.CLOSE_WAIT),
    "closing": (closing, TcpState.CLOSING),
    "last_ack": (last_ack, TcpState.LAST_ACK),
    "time_wait": (time_wait, TcpState.TIME_WAIT),
}
RECEIVING = {"established", "fin_wait_1", "fin_wait_2"}  # no FIN from the peer yet


def check_ack(seg, c):
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, no text."""
    assert (seg.flags, seg.seq, seg.ack, seg.len) == ("A", c.snd_nxt, c.rcv_nxt, 0), seg


# -- The state matrix --------------------------------------------------------------------


@pytest.mark.parametrize("state", FIXTURES)
def test_rst_exact(state):
    """RFC 5961 s3.2 and RFC 9293 s3.10.7.4 second: a RST at exactly RCV.NXT closes the
    connection in every synchronized state, with nothing sent; in ESTABLISHED, FIN-WAIT-1,
    FIN-WAIT-2 and CLOSE-WAIT the user is told "connection reset" (MUST-12)."""
    fixture, _ = FIXTURES[state]

    async def body(b):
        c = await fixture(b)
        since = len(b.events)
        b.send(c.peer, "R")
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
        await b.quiet()
        if state in RECEIVING | {"close_wait"}:
            ev = b.find_event(EventKind.RESET, conn=c.id, since=since)
            assert ev is not None and ev.code == ErrorCode.RESET
    run(body)


@pytest.mark.parametrize("state", FIXTURES)
def test_syn_in_synchronized_state(state):
    """RFC 5961 s4.2 (RFC 9293 s3.10.7.4 fourth): a SYN in a synchronized state gets a
    challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and changes nothing."""
    fixture, want = FIXTURES[state]

    async def body(b):
        c = await fixture(b)
        b.send(c.peer, "S", seq=c.rcv_nxt + 5, mss=1460)
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.state(c.id) == want and b.counters["tcp_challenge_acks"] == 1
    run(body)


@pytest.mark.parametrize("state", FIXTURES)
def test_text_in_window(state):
    """RFC 9293 s3.10.7.4 seventh: text at RCV.NXT is taken in ESTABLISHED, FIN-WAIT-1
    and FIN-WAIT-2 (copied, ACK of the new RCV.NXT); after the peer's FIN (CLOSE-WAIT,
    CLOSING, LAST-ACK, TIME-WAIT) "this should not occur ... ignore the segment text"."""
    fixture, want = FIXTURES[state]

    async def body(b):
        c = await fixture(b)
        start = c.rcv_nxt
        buf = b.send(c.peer, "PA", 5, ack=c.peer.rcv_nxt)
        if state in RECEIVING:
            check_ack(await b.next_segment(), c)
            await b.settle()
            assert b.copies[-1] == (c.id, buf, PAYLOAD_AT, 5, start)
        else:
            await b.quiet()
            assert b.copies == []
        assert b.state(c.id) == want
    run(body)


# -- Closing -----------------------------------------------------------------------------


def test_peer_fin_after_text_then_close():
    """RFC 9293 s3.10.7.4 eighth: the FIN is acknowledged and the user told (PEER_FIN, the
    stream length); CLOSE-WAIT; CLOSE sends FIN (s3.10.4: LAST-ACK) and its ACK ends the
    connection: CLOSED, then the id is RELEASED."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 7)
        b.send(c.peer, "FA")
        await b.next_segment(flags="A")
        check_ack(await b.next_segment(), c)
        ev = await b.event(EventKind.PEER_FIN, conn=c.id)
        assert ev.value == 7
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSE_WAIT and b.deliveries[-1][2] == 7
        b.command(CommandOp.CLOSE, c.id)
        fin = await b.next_segment(flags="FA")
        assert fin.seq == c.snd_nxt and fin.ack == c.rcv_nxt
        c.peer.rcv_nxt = (fin.seq + 1) % MOD
        b.send(c.peer, "A")
        await b.event(EventKind.RELEASED, conn=c.id)
        assert b.kinds(c.id)[-2:] == [EventKind.CLOSED, EventKind.RELEASED]
    run(body)


def test_fin_wait_1_partial_ack_then_fin_acked():
    """RFC 9293 s3.10.7.4 fifth, FIN-WAIT-1: an ACK of the data only returns send credit
    (ACKED) and stays; "if our FIN is now acknowledged, then enter FIN-WAIT-2"."""
    async def body(b):
        c = await fin_wait_1(b, unacked=3)
        c.peer.rcv_nxt = (c.iss + 4) % MOD
        b.send(c.peer, "A")
        ev = await b.event(EventKind.ACKED, conn=c.id)
        assert ev.value == 3
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_1
        c.peer.rcv_nxt = c.snd_nxt
        b.send(c.peer, "A")
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_2
        await b.advance(4 * RTO)
        await b.quiet()  # nothing left to retransmit
    run(body)


def test_fin_wait_1_fin_acking_ours_to_time_wait():
    """RFC 9293 s3.10.7.4 eighth, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in this
    segment), then enter TIME-WAIT, start the time-wait timer"."""
    async def body(b):
        c = await fin_wait_1(b)
        c.peer.rcv_nxt = c.snd_nxt
        b.send(c.peer, "FA")
        check_ack(await b.next_segment(), c)
        await b.settle()
        assert b.state(c.id) == TcpState.TIME_WAIT
    run(body)


def test_closing_ack_to_time_wait():
    """RFC 9293 s3.10.7.4 fifth, CLOSING: "if the ACK acknowledges our FIN, then enter the
    TIME-WAIT state" (simultaneous close, s3.6 figure 13)."""
    async def body(b):
        c = await closing(b)
        c.peer.rcv_nxt = c.snd_nxt
        b.send(c.peer, "A")
        await b.settle()
        assert b.state(c.id) == TcpState.TIME_WAIT
    run(body)


def test_fin_wait_2_text_then_fin():
    """Half-close (RFC 9293 s3.6): in FIN-WAIT-2 the peer's text is still received; its FIN
    is acknowledged and gives TIME-WAIT (s3.10.7.4 eighth)."""
    async def body(b):
        c = await fin_wait_2(b)
        b.send(c.peer, "PA", 9)
        check_ack(await b.next_segment(), c)
        b.send(c.peer, "FA")
        check_ack(await b.next_segment(), c)
        ev = await b.event(EventKind.PEER_FIN, conn=c.id)
        assert ev.value == 9
        await b.settle()
        assert b.state(c.id) == TcpState.TIME_WAIT and b.copies[-1][3] == 9
    run(body)


def test_fin_wait_2_of_a_closed_connection_times_out():
    """A connection the host has closed does not wait in FIN-WAIT-2 forever for a peer
    that never sends its FIN (hdl/config.py ``fin_wait_2_us``, as Linux's
    tcp_fin_timeout; RFC 9293 s3.10.8 has no such timer): after the wait it is deleted,
    the host gets TIMEOUT and the id is released.  A half-closed connection (SHUTDOWN
    only) still waits, as RFC 9293 s3.6 requires."""
    wait = BENCH_CONFIG.fin_wait_2_us

    async def body(b):
        c = await fin_wait_2(b)
        await b.advance(4 * wait)
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_2  # only shut down: no timer
        b.command(CommandOp.CLOSE, c.id)
        await b.settle()
        await b.advance(wait - 1)
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_2
        await b.advance(1)
        await b.event(EventKind.TIMEOUT, conn=c.id, timeout=200)
        await b.event(EventKind.RELEASED, conn=c.id)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
    run(body)


def test_time_wait_lasts_two_msl():
    """RFC 9293 MUST-13: TIME-WAIT lasts 2 MSL, then CLOSED; the id is released once the
    host has closed it too (RELEASED after CLOSE)."""
    async def body(b):
        c = await time_wait(b)
        await b.advance(TWO_MSL - 1)
        await b.settle()
        assert b.state(c.id) == TcpState.TIME_WAIT
        await b.advance(1)
        await b.event(EventKind.CLOSED, conn=c.id, timeout=200)
        assert b.find_event(EventKind.RELEASED) is None
        b.command(CommandOp.CLOSE, c.id)
        await b.event(EventKind.RELEASED, conn=c.id)
        await b.quiet()
    run(body)


def test_time_wait_fin_again_restarts_timer():
    """RFC 9293 s3.10.7.4 eighth, TIME-WAIT (MUST-13): a retransmitted FIN is acknowledged
    again and restarts the 2 MSL timeout."""
    async def body(b):
        c = await time_wait(b)
        await b.advance(TWO_MSL // 2)
        b.send(c.peer, "FA", seq=c.rcv_nxt - 1)
        check_ack(await b.next_segment(), c)
        await b.advance(TWO_MSL - 1)
        await b.settle()
        assert b.state(c.id) == TcpState.TIME_WAIT
        await b.advance(1)
        await b.event(EventKind.CLOSED, conn=c.id, timeout=200)
    run(body)


def test_fin_wait_1_fin_retransmitted():
    """RFC 9293 s3.8.1, RFC 6298 (5.4)-(5.6): a lost FIN is sent again at the timeout,
    same sequence number, the timeout doubling; its ACK gives FIN-WAIT-2 and stops it."""
    async def body(b):
        c = await fin_wait_1(b)
        for gap in (RTO, 2 * RTO):
            await b.advance(gap - 1)
            await b.quiet()
            await b.advance(1)
            fin = await b.next_segment(timeout=200)
            assert (fin.flags, fin.seq, fin.len) == ("FA", c.iss + 1, 0), fin
        c.peer.rcv_nxt = c.snd_nxt
        b.send(c.peer, "A")
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_2
        await b.advance(8 * RTO)
        await b.quiet()
    run(body)


# -- Commands per state ---------------------------------------------------------------------


def test_syn_sent_close_deletes_tcb():
    """RFC 9293 s3.10.4 CLOSE in SYN-SENT: "Delete the TCB" -- nothing is sent, the id is
    released, and a late SYN-ACK finds no connection (TcpReset, s3.10.7.1)."""
    async def body(b):
        c = await syn_sent(b)
        b.command(CommandOp.CLOSE, c.id)
        await b.event(EventKind.RELEASED, conn=c.id)
        await b.quiet()
        b.send(c.peer, "SA")
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][:3] == ("SA", c.peer.isn, c.iss + 1)
    run(body)


def test_syn_received_shutdown_sends_fin():
    """RFC 9293 s3.10.4 CLOSE in SYN-RECEIVED with nothing sent: "form a FIN segment and
    send it, and enter FIN-WAIT-1"; the ACK of SYN and FIN gives FIN-WAIT-2."""
    async def body(b):
        c = await syn_sent(b)
        b.send(c.peer, "S", mss=1460)  # simultaneous open: SYN-RECEIVED
        await b.next_segment(flags="SA")
        b.command(CommandOp.SHUTDOWN, c.id)
        fin = await b.next_segment(flags="FA")
        assert fin.seq == c.iss + 1
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_1
        c.peer.rcv_nxt = (c.iss + 2) % MOD
        b.send(c.peer, "A")
        await b.settle()
        assert b.state(c.id) == TcpState.FIN_WAIT_2
    run(body)


def test_abort_established_sends_rst():
    """RFC 9293 s3.10.5 ABORT in ESTABLISHED: <SEQ=SND.NXT><CTL=RST>, the TCB is deleted
    and the id released; a later segment finds no connection (s3.10.7.1)."""
    async def body(b):
        c = await established(b)
        b.command(CommandOp.ABORT, c.id)
        rst = await b.next_segment()
        assert "R" in rst.flags and rst.seq == c.snd_nxt and rst.window == 0
        await b.event(EventKind.RELEASED, conn=c.id)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED and b.counters["tcp_rst_out"] == 1
        b.send(c.peer, "PA", 4)
        await b.until(lambda: b.resets, what="a reset request")
    run(body)


@pytest.mark.parametrize("state", ["syn_sent", "time_wait"])
def test_abort_without_rst(state):
    """RFC 9293 s3.10.5 ABORT: in SYN-SENT ("all queued SENDs ... delete the TCB") and in
    TIME-WAIT ("respond with ok and delete the TCB") no RST is sent; the id is released."""
    async def body(b):
        c = await (syn_sent(b) if state == "syn_sent" else time_wait(b))
        b.command(CommandOp.ABORT, c.id)
        await b.event(EventKind.RELEASED, conn=c.id)
        await b.quiet()
        assert b.counters["tcp_rst_out"] == 0
    run(body)


def test_shutdown_twice_and_send_after_shutdown():
    """RFC 9293 s3.10.4 CLOSE when closing: "error: connection closing"; s3.10.2 SEND after
    CLOSE: "error: connection closing" -- both are ERROR events and change nothing."""
    async def body(b):
        c = await fin_wait_1(b)
        since = len(b.events)
        b.command(CommandOp.SHUTDOWN, c.id)
        ev = await b.event(EventKind.ERROR, since=since)
        assert ev.code == ErrorCode.BAD_STATE
        b.write(c.id, 4)
        ev = await b.event(EventKind.ERROR, since=since + 1)
        assert ev.code == ErrorCode.TX_AFTER_SHUTDOWN
        await b.quiet()
        assert b.state(c.id) == TcpState.FIN_WAIT_1
    run(body)


def test_close_with_unread_data_sends_rst():
    """RFC 9293 SHLD-3 (RFC 1122 s4.2.2.13, RFC 2525 s2.17): CLOSE while received data is
    still unread (here: no credit, so never delivered) sends RST, not FIN, so the peer
    knows the data was lost.  (A deviation, FIN, until engine commit 11d0eea.)"""
    async def body(b):
        c = await established(b, credit=0)
        b.send(c.peer, "PA", 5)
        check_ack(await b.next_segment(), c)
        await b.settle()
        b.command(CommandOp.CLOSE, c.id)
        seg = await b.next_segment()
        assert "R" in seg.flags and "F" not in seg.flags and seg.seq == c.snd_nxt, seg
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
    run(body)


@pytest.mark.parametrize("op, addr, port, local", [
    (CommandOp.LISTEN, 0, 0, 0),
    (CommandOp.CONNECT, 0x0A000001, 0, 50000),
    (CommandOp.CONNECT, 0x7F000001, 80, 50000),
    (CommandOp.CONNECT, 0x7F123456, 80, 50000),
    (CommandOp.CONNECT, BENCH_CONFIG.ip_addr, 80, 50000),
], ids=["listen-port-0", "connect-port-0", "connect-127.0.0.1", "connect-127/8",
        "connect-own-address"])
def test_bad_port_or_address_refused(op, addr, port, local):
    """RFC 9293 MUST-46 and RFC 1122 s3.2.1.3 ({127, any} must not appear outside a host;
    the engine's own address is no peer); port 0 is no port (RFC 9293 s3.1): LISTEN and
    CONNECT are refused at once with ERROR -- no ARP lookup, no SYN, no listener.
    (Deviations until engine commit 11d0eea.)"""
    async def body(b):
        tag = b.command(op, addr=addr, port=port, value=local)
        ev = await b.event(tag=tag)
        assert ev.kind == EventKind.ERROR and ev.code != ErrorCode.NONE, ev
        await b.quiet()
        assert b.arp.got == []
        b.send(Peer(engine_port=0), "S", mss=1460)
        await b.settle()
        assert b.counters["tcp_passive_opens"] == 0
    run(body)


# -- Receive bookkeeping under reordering ------------------------------------------------


def test_reordering_credit_and_ring_wrap_keep_deliveries_contiguous():
    """RFC 9293 s3.10.7.4 seventh and s3.10.3: however segments arrive (in order, partly
    old, beyond RCV.NXT, duplicated; across the ring wrap and the 2**32 wrap) and whenever
    the host grants credit (also while deliveries are outstanding, up to 15), every byte
    acknowledged was copied once at its own sequence number (RFC 9293 SHLD-31: text
    beyond RCV.NXT is held, never written twice), deliveries continue each
    other with no gap and no overlap, and their sum is the bytes acknowledged minus those
    still waiting in the ring; credit is conserved and the ring never over-fills."""
    rng = random.Random(9293)
    peer = Peer(isn=MOD - 150, window=65535)

    async def body(b):
        b.delivery.latency, b.delivery.depth = 6, 16
        c = await established(b, peer, credit=0)
        base = (peer.isn + 1) % MOD
        sent = {}  # buf_start -> seq of the segment record
        granted = 0
        acked = base
        for step in range(70):
            action = rng.random()
            if action < 0.25:
                value = rng.randrange(1, 120)
                b.command(CommandOp.CREDIT, c.id, value=value)
                granted += value
                await b.cycles(rng.randrange(0, 30))
                continue
            if action < 0.3:
                b.delivery.hold = not b.delivery.hold
            offset = rng.choice([0, 0, 0, -rng.randrange(1, 40), rng.randrange(1, 60)])
            length = rng.randrange(1, 90)
            seq = (acked + offset) % MOD
            buf = b.send(peer, "PA", length, seq=seq)
            sent[buf] = seq
            ack = await b.next_segment(timeout=3000)
            assert ack.flags == "A", ack
            assert seq_before_eq(acked, ack.ack), f"ACK went back at step {step}"
            acked = ack.ack
            tcb = b.tcb(c.id)
            assert (acked + ack.window - tcb["rcv_read"]) % MOD <= RING, (step, ack, tcb)
        b.delivery.hold = False
        b.command(CommandOp.CREDIT, c.id, value=2 * RING)
        granted += 2 * RING
        await b.settle(300)
        for seg in b.segments[b.seen:]:  # window updates after the last data
            acked = seg.ack
        tcb = b.tcb(c.id)
        # Copies: each at the sequence number of its bytes, no byte written twice (a
        # later copy never changes a byte received before), and every acknowledged byte
        # written once (held out-of-order text included).
        copied: set[int] = set()
        for conn, buf, offset, length, ring_pos in b.copies:
            assert conn == c.id
            assert ring_pos == (sent[buf] + offset - PAYLOAD_AT) % MOD, (buf, offset)
            rel = (ring_pos - base) % MOD
            span = set(range(rel, rel + length))
            assert not span & copied, f"bytes written twice: {sorted(span & copied)[:5]}"
            copied |= span
        assert set(range((acked - base) % MOD)) <= copied
        assert acked == tcb["rcv_nxt"]
        # Deliveries: contiguous, summing to what was acknowledged and handed over.
        at = base
        for conn, pos, length in b.deliveries:
            assert (conn, pos) == (c.id, at), (b.deliveries, at)
            assert length > 0
            at = (at + length) % MOD
        delivered = (at - base) % MOD
        in_ring = (tcb["rcv_nxt"] - tcb["rcv_dlv"]) % MOD
        assert delivered == (acked - base) % MOD - in_ring
        assert at == tcb["rcv_dlv"] == tcb["rcv_read"] == tcb["rcv_nxt"], tcb
        assert tcb["rcv_credit"] == granted - delivered and tcb["dlv_out"] == 0
        assert b.counters["tcp_out_of_order"] > 0 and delivered > RING
    run(body)
