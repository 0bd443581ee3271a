"""Congestion control at the engine's own ports: the initial window (RFC 6928), slow
start with appropriate byte counting (RFC 5681 s3.1, RFC 3465), congestion avoidance,
fast retransmit and NewReno fast recovery (RFC 5681 s3.2, RFC 6582), limited transmit
(RFC 3042) and the loss window after a timeout (RFC 5681 s3.1).

The peer announces an MSS of 100, so SMSS = 100 and IW10 = min(10 * 100, max(200,
14,600)) = 1,000 bytes: the windows are counted in segments of 100 bytes.
"""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established, syn_sent

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, InfoField
from toe.hdl.tcp.congestion import SSTHRESH_MAX
from toe.hdl.tcp.tcb import TcpState

CC = BENCH_CONFIG.replace(tx_ring_bytes=1 << 16, initial_window=10)
SMSS = 100


async def _sender(b, data=40_000, **tcb):
    c = await established(b, Peer(mss=SMSS), tcb=tcb or None)
    b.write(c.id, data)
    return c


def _ack(b, c, upto, **kw):
    b.send(c.peer, "A", ack=upto % MOD, **kw)


async def _ack_each(b, c, segments):
    """One ACK per segment, as a receiver without delayed ACKs sends them."""
    for seg in segments:
        _ack(b, c, seg.seq + seg.len)
    return await b.burst()


async def _flights(b, c, rounds):
    """The sizes of ``rounds`` flights, each segment ACKed on its own (a round trip)."""
    flight = await b.burst()
    sizes = [len(flight)]
    for _ in range(rounds - 1):
        flight = await _ack_each(b, c, flight)
        sizes.append(len(flight))
    return sizes


def test_initial_window_is_iw10():
    """RFC 6928 (with RFC 5681 s3.1): the first flight is IW = min(10 * SMSS, max(2 *
    SMSS, 14,600)) bytes, here 10 segments of 100, though the peer's window (65,535)
    and the data queued (40,000) allow more; ssthresh starts arbitrarily high."""
    async def body(b):
        c = await _sender(b)
        flight = await b.burst()
        assert [s.len for s in flight] == [SMSS] * 10
        assert [s.seq for s in flight] == [(c.iss + 1 + k * SMSS) % MOD for k in range(10)]
        tcb = b.tcb(c.id)
        assert (tcb["cwnd"], tcb["ssthresh"]) == (10 * SMSS, SSTHRESH_MAX)
    run(body, CC)


def test_initial_window_is_one_segment_after_a_lost_syn():
    """RFC 5681 s3.1: if the SYN was retransmitted, the initial window is one segment."""
    async def body(b):
        c = await syn_sent(b, Peer(port=8080, engine_port=50000, isn=77_000, mss=SMSS))
        await b.advance(CC.rto_initial_us + 1)
        assert (await b.next_segment(flags="S")).seq == c.iss
        b.send(c.peer, "SA", **c.peer.syn_options())
        await b.next_segment(flags="A")
        await b.event(EventKind.ESTABLISHED, conn=c.id)
        b.write(c.id, 5000)
        assert [s.len for s in await b.burst()] == [SMSS]
        assert b.tcb(c.id)["cwnd"] == SMSS
    run(body, CC)


def test_slow_start_doubles_the_window_each_round_trip():
    """RFC 5681 s3.1: in slow start each ACK of one SMSS grows cwnd by one SMSS, so with
    an ACK per segment the flights are 10, 20, 40 segments."""
    async def body(b):
        c = await _sender(b)
        assert await _flights(b, c, 3) == [10, 20, 40]
        assert b.tcb(c.id)["cwnd"] == 40 * SMSS
    run(body, CC)


def test_slow_start_counts_bytes_at_most_two_smss_per_ack():
    """RFC 3465 s2.2 (L = 2, RFC 5681 s3.1): one ACK of ten segments grows cwnd by 2
    SMSS, not 10: the next flight is 12 segments."""
    async def body(b):
        c = await _sender(b)
        await b.burst()
        _ack(b, c, c.iss + 1 + 10 * SMSS)
        assert len(await b.burst()) == 12
        assert b.tcb(c.id)["cwnd"] == 12 * SMSS
    run(body, CC)


def test_congestion_avoidance_adds_one_smss_per_round_trip():
    """RFC 5681 s3.1 with RFC 3465 s2.1: at cwnd >= ssthresh the window grows by one
    SMSS when a full window of bytes has been acknowledged: flights of 10, 11, 12."""
    async def body(b):
        c = await _sender(b, ssthresh=10 * SMSS)
        assert await _flights(b, c, 3) == [10, 11, 12]
    run(body, CC)


def test_fast_retransmit_on_the_third_duplicate_ack():
    """RFC 5681 s3.2: the first two duplicate ACKs each let one new segment go (limited
    transmit, RFC 3042); the third resends the segment at SND.UNA at once (no timeout),
    ssthresh = FlightSize / 2 and cwnd = ssthresh + 3 SMSS; the full ACK ends recovery
    with cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS) (RFC 6582 s3.2 step 3)."""
    async def body(b):
        c = await _sender(b)
        base = c.iss + 1
        await b.burst()
        _ack(b, c, base + SMSS)  # the first segment; the second is lost
        assert len(await b.burst()) == 2  # slow start: cwnd 1,100, flight 1,100
        new = []
        for _ in range(2):
            _ack(b, c, base + SMSS)
            new += await b.burst()
        assert [s.seq for s in new] == [(base + 12 * SMSS) % MOD, (base + 13 * SMSS) % MOD]
        _ack(b, c, base + SMSS)
        again = await b.burst()
        assert [(s.seq, s.len) for s in again] == [((base + SMSS) % MOD, SMSS)]
        tcb = b.tcb(c.id)
        flight = 13 * SMSS  # SND.MAX - SND.UNA at the third duplicate
        assert (tcb["in_recovery"], tcb["ssthresh"]) == (1, flight // 2)
        assert tcb["cwnd"] == flight // 2 + 3 * SMSS
        assert b.counters["tcp_fast_retransmits"] == 1 and b.counters["tcp_retransmits"] == 0
        _ack(b, c, base + 14 * SMSS)
        await b.burst()
        tcb = b.tcb(c.id)
        assert (tcb["in_recovery"], tcb["cwnd"]) == (0, min(flight // 2, 2 * SMSS))
    run(body, CC)


def test_acks_with_text_or_a_new_window_are_not_duplicates():
    """RFC 5681 s2: an ACK that carries text or changes the window is no duplicate ACK:
    three of them start no fast retransmit (and let no limited-transmit segment go)."""
    async def body(b):
        c = await _sender(b)
        base = c.iss + 1
        await b.burst()
        b.send(c.peer, "PA", 10, ack=base)
        _ack(b, c, base, window=60_000)
        b.send(c.peer, "PA", 10, ack=base)
        out = await b.burst()
        assert all(s.len == 0 for s in out), out  # ACKs of the text only
        assert b.counters["tcp_fast_retransmits"] == 0 and b.tcb(c.id)["dupacks"] == 0
    run(body, CC)


def test_newreno_partial_ack_resends_the_next_hole_at_once():
    """RFC 6582 s3.2 step 5: with two segments lost in one window, the ACK of the fast
    retransmission is partial (below ``recover``) and the next hole is sent again at
    once, without a timeout; the ACK that covers ``recover`` ends recovery."""
    async def body(b):
        c = await _sender(b)
        base = c.iss + 1
        await b.burst()  # segments 0..9; 0 and 4 are lost
        for _ in range(3):
            _ack(b, c, base)
            await b.burst()
        assert b.counters["tcp_fast_retransmits"] == 1
        recover = b.tcb(c.id)["recover"]
        _ack(b, c, base + 4 * SMSS)  # the retransmission of 0 filled the first hole
        again = await b.burst()
        assert again and (again[0].seq, again[0].len) == ((base + 4 * SMSS) % MOD, SMSS)
        assert b.tcb(c.id)["in_recovery"] == 1
        _ack(b, c, recover)
        await b.burst()
        assert b.tcb(c.id)["in_recovery"] == 0
        assert b.counters["tcp_retransmits"] == 0  # no timeout
    run(body, CC)


def test_timeout_leaves_a_loss_window_of_one_segment():
    """RFC 5681 s3.1 (eq. 4): after a retransmission timeout ssthresh = max(FlightSize /
    2, 2 SMSS) and cwnd = 1 SMSS: one segment goes, and after its ACK slow start sends
    two."""
    async def body(b):
        c = await _sender(b)
        base = c.iss + 1
        await b.burst()
        await b.advance(CC.rto_max_us)
        again = await b.burst()
        assert [(s.seq, s.len) for s in again] == [(base % MOD, SMSS)]
        tcb = b.tcb(c.id)
        assert (tcb["cwnd"], tcb["ssthresh"]) == (SMSS, 10 * SMSS // 2)
        _ack(b, c, base + SMSS)
        assert [s.seq for s in await b.burst()] == [(base + SMSS) % MOD,
                                                    (base + 2 * SMSS) % MOD]
    run(body, CC)


def test_get_info_reads_the_connection():
    """GET_INFO (hdl/host_if.py InfoField, as Linux's TCP_INFO): an INFO event with the
    command's tag carries the field: cwnd and ssthresh after a fast retransmit, the
    flight, the retransmissions of this connection, SND.MSS, the state; a field that
    does not exist gets ERROR(BAD_OPTION)."""
    async def body(b):
        c = await _sender(b)
        base = c.iss + 1
        await b.burst()
        for _ in range(3):
            _ack(b, c, base)
            await b.burst()
        tcb = b.tcb(c.id)

        async def info(field):
            tag = b.command(CommandOp.GET_INFO, c.id, port=field.value)
            ev = await b.event(EventKind.INFO, conn=c.id, tag=tag)
            return ev.value

        assert await info(InfoField.CWND) == tcb["cwnd"] == 6 * SMSS + 3 * SMSS
        assert await info(InfoField.SSTHRESH) == 6 * SMSS
        assert await info(InfoField.FLIGHT) == 12 * SMSS
        assert await info(InfoField.RETRANSMITS) == 1
        assert await info(InfoField.SND_MSS) == SMSS
        assert await info(InfoField.STATE) == TcpState.ESTABLISHED.value
        assert await info(InfoField.RTO_US) == tcb["rto"]
        tag = b.command(CommandOp.GET_INFO, c.id, port=999)
        assert (await b.event(EventKind.ERROR, tag=tag)).code == ErrorCode.BAD_OPTION
    run(body, CC)


def test_restart_after_idle_uses_the_initial_window():
    """RFC 5681 s4.1: a connection that has sent nothing for longer than the RTO, with
    nothing outstanding, restarts from min(IW, cwnd): after half the RTO idle a window
    of 30 segments still goes at once; after RTO + 1 ms only IW (10) does, cwnd is IW
    and ``tcp_cwnd_restarts`` counts it."""
    async def body(b):
        c = await _sender(b, data=0, cwnd=30 * SMSS, ssthresh=30 * SMSS)
        base = c.iss + 1
        b.write(c.id, 30 * SMSS)
        assert len(await b.burst()) == 30
        _ack(b, c, base + 30 * SMSS)
        await b.burst()
        cwnd = b.tcb(c.id)["cwnd"]
        assert cwnd >= 30 * SMSS
        await b.advance(b.tcb(c.id)["rto"] // 2)
        b.write(c.id, 30 * SMSS)
        assert len(await b.burst()) == 30
        _ack(b, c, base + 60 * SMSS)
        await b.burst()
        assert b.counters["tcp_cwnd_restarts"] == 0
        await b.advance(b.tcb(c.id)["rto"] + 1000)
        b.write(c.id, 30 * SMSS)
        assert len(await b.burst()) == 10
        assert b.tcb(c.id)["cwnd"] == 10 * SMSS
        assert b.counters["tcp_cwnd_restarts"] == 1
    run(body, CC)
