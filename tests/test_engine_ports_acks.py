"""Delayed ACKs at the TCP engine's own ports (``ToeConfig.ack_delay_us``).

RFC 9293 SHLD-18 (delay ACKs), MUST-40 (by less than 0.5 s), SHLD-19 (at least every
second full-sized segment), RFC 5681 s4.2 (out-of-order text and a segment that fills a
hole are ACKed at once).  The bench's MSS is 536; the delay here is 4 ms of the bench's
time base, which moves only when a test moves it, with 4 KiB RX rings and an RTO of
100 ms or more, so no retransmission crosses the tests.
"""

from engine_bench import BENCH_CONFIG, MOD, run
from engine_fixtures import established

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, SocketOption

DELAY = 4000
CONFIG = BENCH_CONFIG.replace(ack_delay_us=DELAY, rx_ring_bytes=4096, rto_initial_us=100_000,
                              rto_min_us=100_000, rto_max_us=800_000)
MSS = CONFIG.mss


def test_a_lone_segment_is_acked_when_the_delay_runs_out():
    """MUST-40, SHLD-18: one segment of text is not ACKed at once; the ACK leaves when
    the delay has passed, not before, and it is counted."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 100)
        await b.quiet()
        await b.advance(DELAY - 1)
        await b.quiet()
        await b.advance(1)
        ack = await b.next_segment(flags="A")
        assert ack.ack == c.rcv_nxt and ack.now - b.segments[0].now >= DELAY
        assert b.counters["tcp_delayed_acks"] == 1
    run(body, CONFIG)


def test_every_second_full_sized_segment_is_acked_at_once():
    """SHLD-19, RFC 5681 s4.2: an ACK at once when more than one MSS would be left
    unacknowledged: the second full-sized segment, or the sixth of 100 bytes."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "A", MSS)
        await b.quiet()
        b.send(c.peer, "A", MSS)
        ack = await b.next_segment(flags="A")
        assert ack.ack == c.rcv_nxt
        for _ in range(5):
            b.send(c.peer, "PA", 100)
        await b.quiet()
        b.send(c.peer, "PA", 100)
        ack = await b.next_segment(flags="A")
        assert ack.ack == c.rcv_nxt
        assert b.counters["tcp_delayed_acks"] == 0
    run(body, CONFIG)


def test_out_of_order_hole_fill_and_fin_are_acked_at_once():
    """RFC 5681 s4.2: a segment beyond RCV.NXT (duplicate ACK) and the one that fills
    the hole are ACKed at once; the duplicate ACK also settles the ACK that was owed.
    A FIN is ACKed at once (RFC 9293 s3.10.7.4 eighth)."""
    async def body(b):
        c = await established(b)
        h = c.rcv_nxt
        b.send(c.peer, "PA", 100, seq=h)
        await b.quiet()
        b.send(c.peer, "PA", 100, seq=(h + 200) % MOD)
        dup = await b.next_segment(flags="A")
        assert dup.ack == (h + 100) % MOD
        b.send(c.peer, "PA", 100, seq=(h + 100) % MOD)
        fill = await b.next_segment(flags="A")
        assert fill.ack == (h + 300) % MOD
        c.peer.snd_nxt = (h + 300) % MOD
        b.send(c.peer, "FA")
        fin = await b.next_segment(flags="A")
        assert fin.ack == (h + 301) % MOD
        await b.advance(DELAY)
        await b.quiet()  # nothing was left owed
    run(body, CONFIG)


def test_the_reply_carries_the_ack():
    """SHLD-18: the ACK that waits rides on the next segment the engine sends (here
    the host's reply); no separate ACK follows when the delay runs out."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 100)
        await b.quiet()
        b.write(c.id, 50)
        reply = await b.next_segment(flags="PA")
        assert reply.ack == c.rcv_nxt and reply.len == 50
        await b.advance(DELAY)
        await b.quiet()
        assert b.counters["tcp_delayed_acks"] == 0
    run(body, CONFIG)


def test_quickack_option():
    """SocketOption.QUICKACK: set while an ACK is owed, the ACK leaves at once; then
    every segment is ACKed at once.  An unknown option is an ERROR (BAD_OPTION)."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 100)
        await b.quiet()
        b.command(CommandOp.SET_OPTION, c.id, port=SocketOption.QUICKACK.value, value=1)
        owed = await b.next_segment(flags="A")
        assert owed.ack == c.rcv_nxt
        b.send(c.peer, "PA", 100)
        ack = await b.next_segment(flags="A")
        assert ack.ack == c.rcv_nxt
        tag = b.command(CommandOp.SET_OPTION, c.id, port=999, value=1)
        ev = await b.event(EventKind.ERROR, tag=tag)
        assert ev.code == ErrorCode.BAD_OPTION
    run(body, CONFIG)
