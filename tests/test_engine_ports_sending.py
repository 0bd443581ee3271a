"""The sending policy at the engine's own ports: the Nagle algorithm (RFC 9293 SHLD-7,
RFC 896) and its per-connection switch (MUST-17), sender silly-window avoidance
(MUST-38, s3.8.6.2.1), full-sized segments whenever enough data waits (SHLD-28), and
keep-alives (RFC 1122 s4.2.3.6, MUST-24..29), with the time base moved on in jumps.
"""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, SocketOption
from toe.hdl.tcp.keepalive import DEFAULT_COUNT, DEFAULT_IDLE_S, DEFAULT_INTERVAL_S, ticks
from toe.hdl.tcp.tcb import TcpState

#: A 1500-byte MTU, so that a peer MSS of 1,000 is the effective send MSS.
WIDE = BENCH_CONFIG.replace(mtu=1500, rx_buffer_bytes=4096, tx_ring_bytes=1 << 14)


async def _sent(b):
    return [(s.seq, s.len) for s in await b.burst()]


def test_nagle_holds_a_small_segment_while_text_is_unacknowledged():
    """SHLD-7 (RFC 896): with 150 bytes to send and an MSS of 100, the full segment goes
    and the 50-byte rest waits for its ACK; then it goes."""
    async def body(b):
        c = await established(b, Peer(mss=100))
        base = c.iss + 1
        b.write(c.id, 150)
        assert await _sent(b) == [(base % MOD, 100)]
        b.send(c.peer, "A", ack=(base + 100) % MOD)
        assert await _sent(b) == [((base + 100) % MOD, 50)]
    run(body)


def test_nodelay_turns_the_nagle_algorithm_off():
    """MUST-17: SET_OPTION NODELAY sends what Nagle held at once, and later small
    segments without waiting for ACKs."""
    async def body(b):
        c = await established(b, Peer(mss=100))
        base = c.iss + 1
        b.write(c.id, 150)
        assert await _sent(b) == [(base % MOD, 100)]
        b.command(CommandOp.SET_OPTION, c.id, port=SocketOption.NODELAY.value, value=1)
        assert await _sent(b) == [((base + 100) % MOD, 50)]
        b.write(c.id, 20)
        assert await _sent(b) == [((base + 150) % MOD, 20)]
    run(body)


def test_no_small_segment_while_more_data_waits():
    """SHLD-28 with MUST-38: with a peer MSS of 1,000, 4,000 bytes queued and a window
    of 3,460, three full segments go and the 460 bytes the window still allows wait;
    when the window opens, full segments follow, and the 1,000-byte rest."""
    async def body(b):
        c = await established(b, Peer(mss=1000, window=3460))
        base = c.iss + 1
        b.write(c.id, 4000)
        assert await _sent(b) == [((base + k * 1000) % MOD, 1000) for k in range(3)]
        b.send(c.peer, "A", ack=(base + 3000) % MOD, window=3460)
        assert await _sent(b) == [((base + 3000) % MOD, 1000)]
    run(body, WIDE)


def test_a_peer_with_a_small_window_gets_half_window_segments():
    """s3.8.6.2.1 (3): a peer whose largest window is 300 bytes (below the MSS) still
    gets segments of its whole window, at least half the largest it offered."""
    async def body(b):
        c = await established(b, Peer(mss=1000, window=300))
        base = c.iss + 1
        b.write(c.id, 1000)
        assert await _sent(b) == [(base % MOD, 300)]
        b.send(c.peer, "A", ack=(base + 300) % MOD, window=300)
        assert await _sent(b) == [((base + 300) % MOD, 300)]
    run(body, WIDE)


def test_override_timeout_sends_what_a_small_window_allows():
    """s3.8.6.2.1 (4): the window shrinks to 100 bytes (the peer offered 3,000 before)
    with nothing unacknowledged: nothing goes at once (a silly window), and when the
    timer runs out the 100 bytes the window allows are sent."""
    async def body(b):
        c = await established(b, Peer(mss=1000, window=3000))
        base = c.iss + 1
        b.write(c.id, 3000)
        assert len(await _sent(b)) == 3
        b.write(c.id, 1000)
        b.send(c.peer, "A", ack=(base + 3000) % MOD, window=100)
        assert await _sent(b) == []
        await b.advance(b.tcb(c.id)["rto"] + 1)
        assert await _sent(b) == [((base + 3000) % MOD, 100)]
    run(body, WIDE)


async def _advance_s(b, seconds):
    await b.advance_long(int(seconds * 1_000_000))


def _keepalive(b, conn, idle_s, interval_s=None, count=None):
    if interval_s is not None:
        b.command(CommandOp.SET_OPTION, conn, port=SocketOption.KEEPALIVE_INTERVAL.value,
                  value=ticks(interval_s))
    if count is not None:
        b.command(CommandOp.SET_OPTION, conn, port=SocketOption.KEEPALIVE_COUNT.value,
                  value=count)
    b.command(CommandOp.SET_OPTION, conn, port=SocketOption.KEEPALIVE_IDLE.value,
              value=ticks(idle_s))


def test_keepalives_are_off_by_default():
    """MUST-25: a connection left idle for three hours sends nothing."""
    async def body(b):
        await established(b)
        await _advance_s(b, 3 * 3600)
        await b.quiet()
        assert b.counters["tcp_keepalive_probes"] == 0
    run(body)


def test_keepalive_probes_after_the_idle_time():
    """RFC 1122 s4.2.3.6 with the seed's defaults (2 h idle, 75 s interval): nothing
    before 2 hours idle (MUST-26, MUST-28); then a probe <SEQ=SND.NXT-1> without text
    (SHLD-12); the peer's ACK makes the connection idle again: the next probe 2 hours
    later, not 75 s (MUST-29: answered probes are not counted)."""
    async def body(b):
        c = await established(b)
        _keepalive(b, c.id, DEFAULT_IDLE_S)
        await b.settle()
        await _advance_s(b, DEFAULT_IDLE_S - 10)
        await b.quiet()
        await _advance_s(b, 11)
        probe = await b.next_segment(flags="A")
        assert (probe.seq, probe.len, probe.ack) == ((c.iss) % MOD, 0, c.rcv_nxt)
        b.send(c.peer, "A")
        await b.settle()
        await _advance_s(b, DEFAULT_INTERVAL_S + 1)
        await b.quiet()
        await _advance_s(b, DEFAULT_IDLE_S)
        assert (await b.next_segment(flags="A")).seq == c.iss % MOD
        assert b.counters["tcp_keepalive_probes"] == 2
    run(body)


def test_unanswered_keepalives_reset_the_connection():
    """RFC 1122 s4.2.3.6: probes every interval while unanswered; after the last one
    (here 3; 60 s idle, 10 s interval) the connection is reset and the host gets
    TIMEOUT.  A lost answer is no dead peer (MUST-29): an answer after two probes
    starts the count again."""
    async def body(b):
        c = await established(b)
        _keepalive(b, c.id, 60, interval_s=10, count=3)
        await b.settle()
        await _advance_s(b, 61)
        await b.next_segment(flags="A")
        await _advance_s(b, 11)
        await b.next_segment(flags="A")
        b.send(c.peer, "A")  # the answer to the second
        await b.settle()
        await _advance_s(b, 61)
        for _ in range(3):
            await b.next_segment(flags="A")
            await _advance_s(b, 11)
        rst = await b.next_segment(flags="RA")
        assert rst.seq == (c.iss + 1) % MOD
        await b.event(EventKind.TIMEOUT, conn=c.id)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
        assert (b.counters["tcp_keepalive_probes"], b.counters["tcp_keepalive_timeouts"]) == (
            5, 1)
    run(body)


def test_bad_keepalive_count_is_an_error():
    """A probe count outside 1..15 gets ERROR(BAD_OPTION); the connection is unchanged."""
    async def body(b):
        c = await established(b)
        b.command(CommandOp.SET_OPTION, c.id, port=SocketOption.KEEPALIVE_COUNT.value,
                  value=16)
        ev = await b.event(EventKind.ERROR, conn=c.id)
        assert ev.code == ErrorCode.BAD_OPTION
        assert b.tcb(c.id)["ka_count"] == DEFAULT_COUNT
    run(body)
