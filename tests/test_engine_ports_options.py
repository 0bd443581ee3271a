"""The TCP options at the engine's own ports: window scaling (RFC 7323 s2), timestamps
with PAWS and RTT measurement (RFC 7323 s3-5), SACK (RFC 2018), and the receiver's
silly-window avoidance (RFC 9293 s3.8.6.2.2, MUST-39).

The segments the engine asks for are read at its ``segment`` port (``Seg.ts``,
``Seg.wscale``, ``Seg.sack_permitted``, ``Seg.sack``); the bytes on the wire are the
transmitter's, tested in tests/test_tcp_transmitter_unit.py.
"""

import pytest
from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established, syn_received, syn_sent

from toe.hdl.host_if import CommandOp, EventKind
from toe.hdl.tcp.event_context import TS_TICK_BITS
from toe.hdl.tcp.tcb import TcpState

#: 256 KiB RX rings: our shift is 2; 64 KiB TX rings so a scaled peer window is used.
BIG = BENCH_CONFIG.replace(rx_ring_bytes=1 << 18, tx_ring_bytes=1 << 16)
RING = BENCH_CONFIG.rx_ring_bytes


def _ticks(b):
    return b.now >> TS_TICK_BITS


def _all_options_peer(**kw):
    return Peer(wscale=7, sack_permitted=True, ts=True, **kw)


async def _sent_bytes(b):
    """Bytes of text the engine sends until it stops."""
    return sum(seg.len for seg in await b.burst(400))


def test_syn_offers_every_option():
    """An active open's SYN offers MSS (MUST-14), window scale with our shift (RFC 7323
    s2.2), SACK-permitted (RFC 2018 s2) and timestamps with TSval from the 1.024 ms
    clock and TSecr 0 (RFC 7323 s3.2)."""
    async def body(b):
        await b.advance(5 * 1024 + 3)
        c = await syn_sent(b)
        syn = b.segments[0]
        assert (syn.flags, syn.mss, syn.wscale, syn.sack_permitted) == ("S", True, 2, True)
        assert syn.ts == (5, 0) and syn.sack == ()
        assert b.tcb(c.id)["ts_ok"] == 1
    run(body, BIG)


def test_options_turned_off_for_a_build():
    """A build without window scaling, timestamps and SACK offers only MSS, and answers
    a SYN offering them with MSS alone (nothing it does not support is agreed)."""
    config = BENCH_CONFIG.replace(window_scaling=False, timestamps=False, sack=False)

    async def body(b):
        await syn_sent(b)
        syn = b.segments[0]
        assert (syn.wscale, syn.ts, syn.sack_permitted) == (None, None, False)
        c = await syn_received(b, _all_options_peer(port=40001))
        synack = b.segments[-1]
        assert (synack.wscale, synack.ts, synack.sack_permitted) == (None, None, False)
        tcb = b.tcb(c.id)
        assert (tcb["ws_ok"], tcb["ts_ok"], tcb["sack_ok"]) == (0, 0, 0)
    run(body, config)


def test_synack_answers_only_what_the_syn_offered():
    """RFC 7323 s2.2 (window scale) and s3.2 (timestamps), RFC 2018 s2 (SACK-permitted):
    a SYN-ACK carries an option only if the SYN did.  Offered: the SYN-ACK echoes the
    SYN's TSval and records it as TS.Recent."""
    async def body(b):
        c = await syn_received(b, Peer(port=40001))
        plain = b.segments[-1]
        assert (plain.mss, plain.wscale, plain.ts, plain.sack_permitted) == (
            True, None, None, False)
        tcb = b.tcb(c.id)
        assert (tcb["ws_ok"], tcb["ts_ok"], tcb["sack_ok"], tcb["rcv_shift"]) == (0, 0, 0, 0)
        await b.advance(9 * 1024)
        peer = _all_options_peer(port=40002, ts_val=123_456)
        c2 = await syn_received(b, peer)
        full = next(seg for seg in b.segments if seg.conn == c2.id and seg.flags == "SA")
        assert (full.wscale, full.sack_permitted, full.ts) == (2, True, (9, 123_456))
        tcb = b.tcb(c2.id)
        assert (tcb["snd_shift"], tcb["rcv_shift"], tcb["ts_recent"]) == (7, 2, 123_456)
    run(body, BIG)


@pytest.mark.parametrize("shift", [0, 7, 14])
def test_peer_window_is_scaled(shift):
    """RFC 7323 s2.3: SND.WND = SEG.WND << the peer's shift, except in a SYN: the
    SYN-ACK's window (1024) is used as it is, the next ACK's field F is F << shift
    bytes (F = 2048 >> shift, at least 1), all of which the engine sends (at most the
    39,000 bytes left; segments of the peer's MSS, 512, so none is held back by
    silly-window avoidance)."""
    async def body(b):
        peer = Peer(port=8080, engine_port=50000, isn=77_000, wscale=shift, window=1024,
                    mss=512)
        c = await syn_sent(b, peer)
        b.send(c.peer, "SA", **c.peer.syn_options())
        await b.next_segment(flags="A")
        b.write(c.id, 40_000)
        assert await _sent_bytes(b) == 1024  # the SYN-ACK's window, not scaled
        assert b.tcb(c.id)["snd_wnd"] == 1024
        c.peer.rcv_nxt = (c.iss + 1 + 1024) % MOD
        field = max(1, 2048 >> shift)
        b.send(c.peer, "A", window=field)
        # The window's right edge is SND.UNA + (field << shift): the engine fills it.
        sent = await _sent_bytes(b)
        assert b.tcb(c.id)["snd_wnd"] == field << shift
        assert sent == min(field << shift, 40_000 - 1024)
    run(body, BIG)


def test_our_window_is_scaled_and_never_in_a_syn():
    """RFC 7323 s2.2-2.3: with a 256 KiB RX ring our shift is 2; the SYN-ACK's window
    is the unscaled min(ring, 65535), every later window field is the free space >> 2,
    and text beyond 65,535 bytes but inside the scaled window is accepted (held out of
    order here)."""
    async def body(b):
        c = await established(b, Peer(wscale=7))
        synack = b.segments[0]
        assert synack.window == 65535 and synack.wscale == 2
        b.send(c.peer, "PA", 1000)
        ack = await b.next_segment(flags="A")
        assert ack.window == ((1 << 18) - 1000) >> 2
        b.send(c.peer, "PA", 100, seq=(c.rcv_nxt + 100_000) % MOD)
        dup = await b.next_segment(flags="A")
        assert dup.ack == (c.peer.isn + 1 + 1000) % MOD
        assert b.counters["tcp_out_of_order"] == 1 and b.counters["tcp_bad_seq"] == 0
    run(body, BIG)


def test_unscaled_window_is_capped_at_65535():
    """Without window scaling agreed (RFC 7323 s2.2) a 256 KiB ring advertises at most
    65,535 bytes, and text beyond that edge is not acceptable (RFC 9293 s3.10.7.4)."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 1000)
        ack = await b.next_segment(flags="A")
        assert ack.window == 65535
        b.send(c.peer, "PA", 100, seq=(c.rcv_nxt + 100_000) % MOD)
        await b.next_segment(flags="A")
        assert b.counters["tcp_bad_seq"] == 1
    run(body, BIG)


def test_timestamps_echo_ts_recent_by_the_rule_of_s4_3():
    """RFC 7323 s3.2: once agreed every segment carries TSval (the clock) and TSecr
    (TS.Recent).  s4.3: TS.Recent takes the TSval of a segment that is not beyond
    Last.ACK.sent, so an out-of-order segment's later TSval is not echoed, and the
    segment that fills the hole is."""
    async def body(b):
        c = await established(b, Peer(ts=True, ts_val=6000))
        await b.advance(3 * 1024)
        c.peer.ts_val = 6001
        b.send(c.peer, "PA", 10)
        ack = await b.next_segment(flags="A")
        assert ack.ts == (_ticks(b), 6001)
        hole = c.rcv_nxt
        c.peer.ts_val = 7000
        b.send(c.peer, "PA", 10, seq=(hole + 10) % MOD)
        dup = await b.next_segment(flags="A")
        assert dup.ack == hole and dup.ts[1] == 6001
        c.peer.ts_val = 6500
        b.send(c.peer, "PA", 10, seq=hole)
        filled = await b.next_segment(flags="A")
        assert filled.ack == (hole + 20) % MOD and filled.ts[1] == 6500
        # RST segments never carry the option (it MAY; s3.2); ABORT sends one.
        b.command(CommandOp.ABORT, c.id)
        rst = await b.next_segment(flags="RA")
        assert rst.ts is None
    run(body)


def test_paws_drops_old_duplicates():
    """RFC 7323 s5.3 R1: a segment whose TSval is older than TS.Recent is dropped and
    answered with an ACK (no byte delivered); s3.2: a non-RST segment without the
    option is dropped silently; an RST is never dropped by PAWS (R1 exempts it)."""
    async def body(b):
        c = await established(b, Peer(ts=True, ts_val=6000))
        nxt = c.rcv_nxt
        b.send(c.peer, "PA", 10, ts=(5999, c.peer.ts_recent), seq=nxt)
        ack = await b.next_segment(flags="A")
        assert ack.ack == nxt and b.counters["tcp_paws_drops"] == 1
        assert not b.copies
        peer = c.peer
        peer.ts = False
        b.send(peer, "PA", 10, seq=nxt)
        await b.quiet()
        assert b.counters["tcp_paws_drops"] == 2 and b.tcb(c.id)["rcv_nxt"] == nxt
        assert not b.copies
        b.send(peer, "R", seq=nxt, ts=(1, 0))
        await b.event(EventKind.RESET, conn=c.id)
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSED
    run(body)


async def _advance_days(b, days):
    await b.advance_long(int(days * 86_400 * 1_000_000))


def test_paws_forgets_ts_recent_after_24_days():
    """RFC 7323 s5.5: after more than 24 days idle TS.Recent is invalid: a TSval older
    than it no longer makes PAWS drop the segment, and TS.Recent takes the new value
    (s4.3).  After 23 days the same segment is still an old duplicate (s5.3 R1)."""
    async def body(b):
        c = await established(b, Peer(ts=True, ts_val=6000))
        nxt = c.rcv_nxt
        await _advance_days(b, 23)
        b.send(c.peer, "PA", 10, ts=(5999, c.peer.ts_recent), seq=nxt)
        assert (await b.next_segment(flags="A")).ack == nxt
        assert b.counters["tcp_paws_drops"] == 1
        await _advance_days(b, 1.01)
        b.send(c.peer, "PA", 10, ts=(5999, c.peer.ts_recent), seq=nxt)
        assert (await b.next_segment(flags="A")).ack == (nxt + 10) % MOD
        await b.settle()
        assert b.counters["tcp_paws_drops"] == 1 and b.tcb(c.id)["ts_recent"] == 5999
    run(body)


def test_rtt_from_the_timestamp_echo_also_after_a_retransmission():
    """RFC 7323 s4.1 with RFC 6298 s2.3: an ACK of new data echoing a TSval measures
    R = now - TSecr (in 1.024 ms ticks) and SRTT moves by (R - SRTT) / 8; a segment
    sent again after a timeout is measured by the echo of its own TSval, which Karn's
    algorithm (RFC 6298 s3) forbids without timestamps.  (The handshake, whose SYN-ACK
    left at tick 0, gave the first sample.)"""
    async def body(b):
        c = await established(b, Peer(ts=True))
        srtt = b.tcb(c.id)["srtt"]
        await b.advance(10 * 1024)
        b.write(c.id, 100)
        seg = await b.next_segment(flags="PA")
        await b.advance(40 * 1024)
        c.peer.rcv_nxt = (seg.seq + 100) % MOD
        b.send(c.peer, "A", ts=(c.peer.ts_val, seg.ts[0]))
        await b.settle()
        tcb = b.tcb(c.id)
        r = 40 * 1024
        srtt = srtt - (srtt >> 3) + r
        assert (tcb["srtt"], tcb["rtt_valid"]) == (srtt, 1)
        b.write(c.id, 100)
        first = await b.next_segment(flags="PA")
        await b.advance(b.tcb(c.id)["rto"] + 1)
        again = await b.next_segment()
        assert again.seq == first.seq and again.ts[0] > first.ts[0]
        await b.advance(5 * 1024)
        c.peer.rcv_nxt = (again.seq + 100) % MOD
        b.send(c.peer, "A", ts=(c.peer.ts_val, again.ts[0]))
        await b.settle()
        r2 = (_ticks(b) - again.ts[0]) << TS_TICK_BITS
        assert b.tcb(c.id)["srtt"] == srtt - (srtt >> 3) + r2
    run(body)


def _sack_peer(**kw):
    return Peer(sack_permitted=True, **kw)


@pytest.mark.parametrize("ts", [False, True])
def test_sack_blocks_after_each_arrival(ts):
    """RFC 2018 s4: every ACK while text is held carries SACK blocks: the block of the
    latest segment first, then the other held ranges by recency (the most recently
    reported first); as many as fit (4, or 3 beside timestamps, s3); none once nothing
    is held."""
    async def body(b):
        c = await established(b, _sack_peer(ts=ts))
        h = c.rcv_nxt

        async def text(start, length):
            b.send(c.peer, "PA", length, seq=(h + start) % MOD)
            seg = await b.next_segment(flags="A")
            return [((left - h) % MOD, (right - h) % MOD) for left, right in seg.sack]

        assert await text(20, 10) == [(20, 30)]
        assert await text(40, 10) == [(40, 50), (20, 30)]
        assert await text(60, 10) == [(60, 70), (40, 50), (20, 30)]
        four = await text(80, 10)
        assert four == [(80, 90), (60, 70), (40, 50), (20, 30)][: 3 if ts else 4]
        assert await text(30, 10) == [(20, 50), (80, 90), (60, 70)]  # merged, first
        # A duplicate of held text: a D-SACK block, then the range that holds it (RFC
        # 2883 s4.1.2).
        dup = await text(62, 4)
        assert dup == [(62, 66), (60, 70), (20, 50), (80, 90)][: 3 if ts else 4]
        assert await text(0, 20) == [(60, 70), (80, 90)]  # RCV.NXT moves to 50
        assert await text(50, 10) == [(80, 90)]
        assert await text(70, 10) == []
        assert b.counters["tcp_sack_acks"] == 8 and b.counters["tcp_dsack_acks"] == 1
    run(body)


@pytest.mark.parametrize("sack", [True, False])
def test_duplicates_reported_in_dsack_blocks(sack):
    """RFC 2883 s4: the ACK of a duplicate segment reports the duplicate text in its
    first SACK block: text wholly below RCV.NXT (s4.1.1), the part of a segment below
    RCV.NXT (the rest is new; ACKed at once, not delayed), text already held out of
    order (s4.1.2, followed by the range that holds it), the part of a segment that
    was held (the rest extends the range).  Without SACK agreed, no blocks (RFC 2018
    s2)."""
    config = BENCH_CONFIG.replace(ack_delay_us=40_000)

    async def body(b):
        c = await established(b, Peer(sack_permitted=sack, ts=True))
        h = c.rcv_nxt

        async def text(start, length):
            b.send(c.peer, "PA", length, seq=(h + start) % MOD)
            seg = await b.next_segment(flags="A")
            return (seg.ack - h) % MOD, [((left - h) % MOD, (right - h) % MOD)
                                         for left, right in seg.sack]

        b.send(c.peer, "PA", 100, seq=h)
        await b.cycles(400)
        assert not b.segments[b.seen:], "in-order text: the ACK waits (SHLD-18)"
        expect = (lambda blocks: blocks) if sack else (lambda blocks: [])
        assert await text(0, 100) == (100, expect([(0, 100)]))  # wholly old
        assert await text(50, 100) == (150, expect([(50, 100)]))  # half old
        assert await text(300, 50) == (150, expect([(300, 350)]))  # held
        assert await text(310, 20) == (150, expect([(310, 330), (300, 350)]))
        assert await text(150, 10) == (160, expect([(300, 350)]))  # nothing old
        assert await text(340, 20) == (160, expect([(340, 350), (300, 360)]))  # half held
        assert b.counters["tcp_dsack_acks"] == (4 if sack else 0)
    run(body, config)


def test_no_sack_blocks_unless_agreed():
    """RFC 2018 s2: SACK blocks only after SACK-permitted came in the SYN."""
    async def body(b):
        c = await established(b)
        b.send(c.peer, "PA", 10, seq=(c.rcv_nxt + 20) % MOD)
        seg = await b.next_segment(flags="A")
        assert seg.sack == () and seg.ack == c.rcv_nxt
    run(body)


def test_receiver_silly_window_avoidance():
    """RFC 9293 s3.8.6.2.2 (MUST-39): the right edge of the window advertised moves only
    when it can move by min(RCV.BUFF / 2, MSS) = 128 bytes here; until then the edge
    stays where it was (never left, SHLD-14), however the host frees the ring."""
    async def body(b):
        c = await established(b, credit=0)
        b.send(c.peer, "PA", 200)
        ack = await b.next_segment(flags="A")
        assert ack.window == RING - 200
        b.command(CommandOp.CREDIT, c.id, value=40)
        await b.settle()
        await b.quiet()  # 40 bytes freed: no window update
        b.send(c.peer, "PA", 1)
        ack = await b.next_segment(flags="A")
        assert ack.window == RING - 200 - 1  # the edge of the last ACK, not 95
        b.command(CommandOp.CREDIT, c.id, value=100)
        update = await b.next_segment(flags="A")  # 140 freed: the edge moves
        assert update.window == RING - 201 + 140 and update.ack == c.rcv_nxt
    run(body)
