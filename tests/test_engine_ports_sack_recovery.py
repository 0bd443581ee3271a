"""SACK-based loss recovery at the engine's own ports (RFC 2018 s5, RFC 6675;
hdl/tcp/scoreboard.py): the sender's scoreboard of the ranges the peer holds, and
recovery that resends every lost hole (RFC 6675 IsLost) on the duplicate ACKs of one
round trip.

The peer announces an MSS of 100 and SACK-permitted; a window of 20 segments leaves at
once (cwnd 20 SMSS, in congestion avoidance) and segments are numbered from 0 at ISS+1.
"""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established

from toe.sim.peer import sack_runs

CC = BENCH_CONFIG.replace(tx_ring_bytes=1 << 16, initial_window=10)
SMSS = 100


async def _window(b, sack=True, data=40_000, **tcb):
    peer = Peer(mss=SMSS, sack_permitted=sack)
    c = await established(b, peer, tcb={"cwnd": 20 * SMSS, "ssthresh": 20 * SMSS, **tcb})
    b.write(c.id, data)
    flight = await b.burst()
    assert len(flight) == 20
    return c


def _seq(c, k):
    return (c.iss + 1 + k * SMSS) % MOD


def _ranges(b, c):
    """The scoreboard's valid ranges, as segment numbers, lowest first."""
    base = c.iss + 1
    return sorted(((r["start"] - base) % MOD // SMSS, (r["end"] - base) % MOD // SMSS)
                  for r in b.tcb(c.id)["sb"] if r["valid"])


def _receive(k, rcv, sacked):
    """The peer takes segment ``k``: returns its new cumulative point, ``sacked`` (the
    segments held beyond it) updated."""
    if k == rcv:
        rcv += 1
        while rcv in sacked:
            sacked.discard(rcv)
            rcv += 1
    elif k > rcv:
        sacked.add(k)
    return rcv


async def _deliver(b, c, k, rcv, sacked):
    """The peer takes segment ``k`` and answers as a SACK receiver does (RFC 2018 s4:
    the first block holds the latest segment); returns its new cumulative point and the
    numbers of the segments the engine sent in answer."""
    rcv = _receive(k, rcv, sacked)
    b.send(c.peer, "A", ack=_seq(c, rcv),
           sack=[(_seq(c, s), _seq(c, e)) for s, e in sack_runs(sacked, k)[:4]])
    return rcv, [(seg.seq - c.iss - 1) % MOD // SMSS for seg in await b.burst()]


async def _arrivals(b, c, arrived, lost):
    """The peer receives segments 0..19 but ``lost``; returns the segments the engine
    resent meanwhile (below segment 20), in order."""
    rcv, sacked, resent = 0, set(), []
    for k in arrived:
        if k not in lost:
            rcv, out = await _deliver(b, c, k, rcv, sacked)
            resent += [n for n in out if n < 20]
    return resent


def test_three_losses_repaired_in_one_round_trip():
    """RFC 6675 s5: with SACK, the third duplicate ACK resends the first hole (RFC 5681
    s3.2) and the later duplicate ACKs of the same round trip resend each further hole
    once IsLost holds for it (three segments SACKed above); all three losses of the
    window (segments 1, 4 and 8) go again before any partial ACK, and one ACK of
    everything ends recovery.
    No timeout; each hole resent on a duplicate ACK counts in ``tcp_sack_rexmits``."""
    async def body(b):
        c = await _window(b)
        resent = await _arrivals(b, c, range(20), lost={1, 4, 8})
        assert resent == [1, 4, 8]
        assert b.tcb(c.id)["in_recovery"] == 1
        assert b.counters["tcp_fast_retransmits"] == 1
        assert b.counters["tcp_sack_rexmits"] == 2
        assert b.counters["tcp_retransmits"] == 0  # no timeout
        recover = b.tcb(c.id)["recover"]
        b.send(c.peer, "A", ack=recover)
        await b.burst()
        assert b.tcb(c.id)["in_recovery"] == 0
    run(body, CC)


def test_without_sack_newreno_resends_one_hole_per_round_trip():
    """RFC 6582 s3.2: without SACK the same losses get only the first hole resent in
    the first round trip; the others wait for partial ACKs (one round trip each)."""
    async def body(b):
        c = await _window(b, sack=False)
        resent = await _arrivals(b, c, range(20), lost={1, 4, 8})
        assert resent == [1]
        assert b.counters["tcp_sack_rexmits"] == 0
    run(body, CC)


def test_scoreboard_merges_prunes_and_ignores_dsack():
    """RFC 2018 s5 / RFC 6675 s3: blocks join the ranges they overlap or touch; a
    D-SACK block (RFC 2883: below SND.UNA) and a block beyond SND.MAX change nothing;
    a cumulative ACK drops the ranges it covers and cuts the one it reaches into."""
    async def body(b):
        c = await _window(b)
        ack = _seq(c, 0)

        def sack(*blocks, upto=ack):
            b.send(c.peer, "A", ack=upto, sack=[(_seq(c, s), _seq(c, e)) for s, e in blocks])

        sack((2, 3))
        sack((5, 7), (2, 3))
        await b.burst()
        assert _ranges(b, c) == [(2, 3), (5, 7)]
        sack((3, 5))  # fills the gap between them: one range
        await b.burst()
        assert _ranges(b, c) == [(2, 7)]
        sack((10, 12), (14, 15), (17, 18))
        await b.burst()
        assert _ranges(b, c) == [(2, 7), (10, 12), (14, 15), (17, 18)]
        sack((19, 20))  # a fifth range: no place, counted, nothing lost
        await b.burst()
        assert _ranges(b, c) == [(2, 7), (10, 12), (14, 15), (17, 18)]
        assert b.counters["tcp_sack_dropped"] == 1
        sack((-3, -1), (11, 12))  # D-SACK below SND.UNA, then a held range
        sack((21, 25))  # beyond SND.MAX (segment 20 is not sent)
        await b.burst()
        assert _ranges(b, c) == [(2, 7), (10, 12), (14, 15), (17, 18)]
        sack((17, 18), upto=_seq(c, 11))  # the cumulative ACK reaches into (10, 12)
        await b.burst()
        assert _ranges(b, c) == [(11, 12), (14, 15), (17, 18)]
    run(body, CC)


def test_timeout_clears_the_scoreboard():
    """RFC 6675 s5.1: after a retransmission timeout the scoreboard is cleared and
    go-back-N resends from SND.UNA."""
    async def body(b):
        c = await _window(b)
        b.send(c.peer, "A", ack=_seq(c, 0), sack=[(_seq(c, 3), _seq(c, 6))])
        await b.burst()
        assert _ranges(b, c) == [(3, 6)]
        await b.advance(b.tcb(c.id)["rto"] + 1)
        again = await b.next_segment(flags="A")
        assert again.seq == _seq(c, 0)
        await b.settle()
        assert _ranges(b, c) == []
    run(body, CC)


def test_sack_blocks_start_recovery_before_the_third_duplicate():
    """RFC 6675 s5 with s4 IsLost: segment 1 is lost and the peer's duplicate ACKs for
    2, 3 and 4 are lost too; the one that arrives SACKs segments 2-5, more than
    (DupThresh - 1) * SMSS beyond SND.UNA, so segment 1 goes again at once, on the
    first duplicate ACK.  Three discontiguous SACKed ranges do the same with fewer
    bytes."""
    async def body(b):
        c = await _window(b)
        b.send(c.peer, "A", ack=_seq(c, 1))
        await b.burst()
        b.send(c.peer, "A", ack=_seq(c, 1), sack=[(_seq(c, 2), _seq(c, 6))])
        resent = [s for s in await b.burst() if s.seq == _seq(c, 1)]
        assert len(resent) == 1 and resent[0].len == SMSS
        tcb = b.tcb(c.id)
        assert (tcb["in_recovery"], b.counters["tcp_fast_retransmits"]) == (1, 1)
    run(body, CC)

    async def ranges(b):
        c = await _window(b)
        b.send(c.peer, "A", ack=_seq(c, 0))
        await b.burst()
        half = SMSS // 2
        b.send(c.peer, "A", ack=_seq(c, 0), sack=[(_seq(c, k), _seq(c, k) + half)
                                                  for k in (2, 4, 6)])
        resent = [s for s in await b.burst() if s.seq == _seq(c, 0)]
        assert len(resent) == 1
        assert b.counters["tcp_fast_retransmits"] == 1
    run(ranges, CC)


def test_two_sacked_segments_are_not_yet_a_loss():
    """RFC 6675 s4: exactly (DupThresh - 1) * SMSS SACKed in one range is not more than
    it: the first duplicate ACK only lets one new segment go (limited transmit, RFC
    3042), no retransmission."""
    async def body(b):
        c = await _window(b)
        b.send(c.peer, "A", ack=_seq(c, 1))
        await b.burst()
        b.send(c.peer, "A", ack=_seq(c, 1), sack=[(_seq(c, 2), _seq(c, 4))])
        out = await b.burst()
        assert [s.seq for s in out] == [_seq(c, 21)]  # one new segment (20 went
        #                                               with the ACK of segment 0)
        assert (b.tcb(c.id)["in_recovery"], b.counters["tcp_fast_retransmits"]) == (0, 0)
    run(body, CC)


def _lost(k, sacked):
    """RFC 6675 s4 IsLost for segment ``k`` (segments of SMSS): more than
    (DupThresh - 1) * SMSS SACKed above it."""
    return sum(s > k for s in sacked) >= 3


def _pipe(una, nxt, sacked, rexmitted):
    """RFC 6675 s4 pipe, in segments: each unSACKed segment counts once if not lost
    and once more if resent."""
    return sum((k not in sacked and not _lost(k, sacked))
               + (k in rexmitted and k not in sacked) for k in range(una, nxt))


async def _recovery_by_pipe(b, lost):
    """Segments 0..19 arrive but ``lost``; after each SACK the engine must send exactly
    as many segments as cwnd - pipe allows (RFC 6675 s5 (C): while cwnd - pipe >= 1
    SMSS), the lost holes first, each once, then new data; with cwnd = ssthresh
    throughout (s5 (4.2), no inflation).  Returns what it sent in recovery, in order."""
    c = await _window(b)
    nxt, rcv, sacked, rexmitted, order = 20, 0, set(), set(), []
    in_recovery = False
    for k in range(20):
        if k in lost:
            continue
        rcv = _receive(k, rcv, sacked)
        runs = sack_runs(sacked, k)
        before = _pipe(rcv, nxt, sacked, rexmitted)
        b.send(c.peer, "A", ack=_seq(c, rcv),
               sack=[(_seq(c, s), _seq(c, e)) for s, e in runs[:4]])
        out = [(seg.seq - c.iss - 1) % MOD // SMSS for seg in await b.burst()]
        tcb = b.tcb(c.id)
        if not in_recovery and tcb["in_recovery"]:
            in_recovery = True
            assert out[0] == rcv, "recovery starts with the segment at SND.UNA"
            rexmitted.add(out.pop(0))
            before = _pipe(rcv, nxt, sacked, rexmitted)
            flight = nxt - rcv
            assert tcb["ssthresh"] == max(flight * SMSS // 2, 2 * SMSS)
        if not in_recovery:
            nxt += len(out)  # limited transmit, the window sliding
            continue
        assert tcb["cwnd"] == tcb["ssthresh"], "RFC 6675 s5 (4.2): cwnd is not inflated"
        allowed = max(0, tcb["cwnd"] // SMSS - before)
        assert len(out) == allowed, (k, before, out)
        holes = [s for s in range(rcv, nxt) if s not in sacked and s not in rexmitted
                 and _lost(s, sacked)]
        want = holes[:allowed] + list(range(nxt, nxt + allowed - len(holes[:allowed])))
        assert out == want, (k, out, want)
        rexmitted.update(s for s in out if s < nxt)
        nxt += sum(s >= nxt for s in out)
        order += out
    return c, order


def test_sack_recovery_sends_what_cwnd_minus_pipe_allows():
    """RFC 6675 s5: with losses of segments 1, 4 and 8 in a window of 20, the engine in
    recovery sends, after each SACK, exactly what cwnd - pipe allows: first the holes
    that are lost, then new data, with cwnd = ssthresh.  All three holes go in the
    first round trip, and no segment is resent twice."""
    async def body(b):
        c, order = await _recovery_by_pipe(b, lost={1, 4, 8})
        assert [s for s in order if s < 20] == [4, 8]  # 1 went at the start
        assert any(s >= 22 for s in order)  # new data within the pipe
        assert b.counters["tcp_retransmits"] == 0
    run(body, CC)


def test_sack_recovery_with_a_run_of_losses():
    """RFC 6675 s5: four consecutive segments lost (3..6): each hole goes as soon as
    cwnd - pipe allows one more segment, in order, all within one round trip."""
    async def body(b):
        c, order = await _recovery_by_pipe(b, lost={3, 4, 5, 6})
        assert [s for s in order if s < 20] == [4, 5, 6]
    run(body, CC)


async def _wire(b, c, drops, segments=40, log=None):
    """A peer that receives every segment the engine sends, in order, except the
    transmissions named in ``drops`` ((segment, n): its n-th transmission, from 1), and
    answers each arrival with an ACK carrying SACK blocks (RFC 2018 s4: the latest
    first).  Runs until the first ``segments`` are acknowledged or nothing is in
    flight; returns the peer's cumulative point and each segment's transmissions.
    ``log`` gets, for every retransmission, (segment, the peer's cumulative point,
    the segments SACKed above it) as the ACK that released it left them."""
    rcv, sacked, sent, order = 0, set(), {}, []
    flight = [k for k in range(20)]
    for k in flight:
        sent[k] = 1
    while flight and rcv < segments:
        k = flight.pop(0)
        if (k, sent[k]) in drops:
            continue
        rcv = _receive(k, rcv, sacked)
        runs = sack_runs(sacked, k)
        b.send(c.peer, "A", ack=_seq(c, rcv),
               sack=[(_seq(c, s), _seq(c, e)) for s, e in runs[:4]])
        for seg in await b.burst():
            n = (seg.seq - c.iss - 1) % MOD // SMSS
            if n < segments and seg.len:
                if log is not None and n in sent:
                    log.append((n, rcv, sum(k > n for k in sacked)))
                sent[n] = sent.get(n, 0) + 1
                flight.append(n)
                order.append(n)
    return rcv, sent


def test_lost_retransmission_is_resent_before_the_timeout():
    """RFC 6675 s4 IsLost applied to a retransmission (the rule RFC 8985 s6.2 makes
    general: a segment is lost once enough data sent after it has arrived): segment 1
    is lost, and so is its fast retransmission.  When more than (DupThresh - 1) * SMSS
    sent after that retransmission are SACKed, segment 1 goes a third time, and the
    transfer goes on without a retransmission timeout."""
    async def body(b):
        c = await _window(b)
        rcv, sent = await _wire(b, c, drops={(1, 1), (1, 2)})
        assert sent[1] == 3
        assert rcv == 40, "the transfer stalled until the timer"
        assert b.counters["tcp_retransmits"] == 0  # no timeout
        assert b.counters["tcp_lost_rexmits"] == 1
        assert all(n == 1 for k, n in sent.items() if k != 1), sent
    run(body, CC)


def test_lost_retransmission_of_a_later_hole():
    """The same for a hole above SND.UNA: segments 1 and 5 are lost, and so is the
    retransmission of 5; the partial ACK after segment 1's repair leaves SND.UNA at 5,
    and once enough later data is SACKed, 5 goes again without a timeout."""
    async def body(b):
        c = await _window(b)
        rcv, sent = await _wire(b, c, drops={(1, 1), (5, 1), (5, 2)})
        assert (sent[1], sent[5]) == (2, 3)
        assert rcv == 40, "the transfer stalled until the timer"
        assert b.counters["tcp_retransmits"] == 0
    run(body, CC)


def test_loss_at_the_recovery_point_starts_a_new_recovery():
    """RFC 6675 s5 (2.a) with s5.1: with SACK, a new recovery may start once the
    cumulative ACK has reached the old RecoveryPoint (HighACK >= RecoveryPoint), not
    only beyond it as RFC 6582's step 1 asks of NewReno.  Segment 1 is lost and
    repaired; the first segment sent after recovery began is lost too (23: segment 0's
    ACK sent 20, limited transmit 21 and 22, so the recovery point is 23), and the ACK
    that ends recovery is exactly ``recover``.  The duplicate ACKs that follow start
    fast retransmit of 23, not a wait for the timer."""
    async def body(b):
        c = await _window(b)
        rcv, sent = await _wire(b, c, drops={(1, 1), (23, 1)})
        assert (sent[1], sent[23]) == (2, 2)
        assert rcv == 40, "the transfer stalled until the timer"
        assert b.counters["tcp_fast_retransmits"] == 2
        assert b.counters["tcp_retransmits"] == 0
    run(body, CC)


def test_without_sack_the_recovery_point_holds_fast_retransmit_back():
    """RFC 6582 s3.2 step 1: without SACK the same duplicate ACKs at ``recover`` do
    not start a second fast retransmit (they may be the echo of the first recovery's
    retransmissions); segment 23 waits for the timer."""
    async def body(b):
        c = await _window(b, sack=False)
        rcv, sent = await _wire(b, c, drops={(1, 1), (23, 1)})
        assert (sent[1], sent[23], rcv) == (2, 1, 23)
        assert b.counters["tcp_fast_retransmits"] == 1
    run(body, CC)


async def _lost_first_retransmission(b):
    """Segment 1 is lost, the peer SACKs 2..19, and the fast retransmission of 1 does
    not arrive: the engine is in recovery with segments up to 29 sent and
    ``rxt_fence`` at 26 (22 sent when 1 went again, + DupThresh)."""
    c = await _window(b)
    rcv, sacked, resent = 0, set(), 0
    for k in range(20):
        if k != 1:
            rcv, out = await _deliver(b, c, k, rcv, sacked)
            resent += out.count(1)
    t = b.tcb(c.id)
    assert resent == 1 and t["in_recovery"] == 1
    assert ((t["rxt_fence"] - c.iss - 1) % MOD // SMSS,
            (t["snd_max"] - c.iss - 1) % MOD // SMSS) == (26, 30)
    return c


def test_lost_retransmission_resent_once_for_several_acks():
    """Two duplicate ACKs that both say the retransmission at SND.UNA is lost, arriving
    before the output routine has resent it, resend it once and count it once
    (``tcp_lost_rexmits``)."""
    async def body(b):
        c = await _lost_first_retransmission(b)
        for right in (27, 28):
            b.send(c.peer, "A", ack=_seq(c, 1), sack=[(_seq(c, 2), _seq(c, right))])
        out = await b.burst()
        assert sum(seg.seq == _seq(c, 1) for seg in out) == 1
        assert b.counters["tcp_lost_rexmits"] == 1
    run(body, CC)


def test_sack_block_beyond_snd_max_does_not_resend():
    """RFC 2018 s5 / RFC 6675 s3: a SACK block beyond SND.MAX reports data never sent;
    it is not taken as news that the retransmission at SND.UNA was lost."""
    async def body(b):
        c = await _lost_first_retransmission(b)
        b.send(c.peer, "A", ack=_seq(c, 1), sack=[(_seq(c, 2), _seq(c, 40))])
        out = await b.burst()
        assert all(seg.seq != _seq(c, 1) for seg in out)
        assert b.counters["tcp_lost_rexmits"] == 0
    run(body, CC)


def test_a_hole_goes_again_only_once_it_is_lost():
    """RFC 6675 s4 IsLost and NextSeg rules (1)-(2): a hole above SND.UNA is resent
    only once more than (DupThresh - 1) * SMSS above it are SACKed (or DupThresh
    ranges); until then new data goes.  Segments 1-8 are lost, so the pipe has room
    while segment 18, with only segment 19 SACKed above it, is not lost yet; it goes
    again once new data SACKed above it makes it lost, and no timeout is needed."""
    async def body(b):
        c = await _window(b)
        log = []
        rcv, sent = await _wire(b, c, drops={(k, 1) for k in (*range(1, 9), 18)}, log=log)
        assert rcv == 40 and b.counters["tcp_retransmits"] == 0
        assert sent[18] == 2
        early = [(k, una, above) for k, una, above in log if k != una and above < 3]
        assert not early, f"holes resent before IsLost held: {early}"
    run(body, CC)


def test_a_hole_not_yet_lost_goes_when_no_new_data_may():
    """RFC 6675 s4 NextSeg rule (3): with every byte sent, a hole below SACKed data
    that is not lost yet (segment 17, once 18 is SACKed above it) goes within the pipe
    in the same round trip as the repair of segment 5, before the partial ACK would
    resend it.  Before 18 arrived nothing was SACKed above 17, and the rescue
    retransmission (rule 4) sent the last segment, 19, once."""
    async def body(b):
        c = await _window(b, data=20 * SMSS)
        log = []
        rcv, sent = await _wire(b, c, drops={(5, 1), (17, 1)}, segments=20, log=log)
        assert rcv == 20 and b.counters["tcp_retransmits"] == 0
        assert (sent[5], sent[17], sent[19]) == (2, 2, 2)
        # Resent while SND.UNA was still at 5 and before IsLost(17) held.
        assert [(una, above) for k, una, above in log if k == 17] == [(5, 1)], log
        assert b.counters["tcp_rescue_rexmits"] == 1
    run(body, CC)


def test_rescue_retransmission_of_the_last_segment():
    """RFC 6675 s4 NextSeg rule (4): with every byte sent, no lost hole left and
    nothing SACKed above the last segment (19, lost), that segment goes once as the
    rescue retransmission in the same round trip as the repair of segment 5 (not a
    round trip later on the partial ACK), counted in ``tcp_rescue_rexmits``; HighRxt
    does not move."""
    async def body(b):
        c = await _window(b, data=20 * SMSS)
        log = []
        rcv, sent = await _wire(b, c, drops={(5, 1), (19, 1)}, segments=20, log=log)
        assert rcv == 20 and b.counters["tcp_retransmits"] == 0
        assert (sent[5], sent[19]) == (2, 2)
        assert (19, 5, 0) in log, log
        assert b.counters["tcp_rescue_rexmits"] == 1
    run(body, CC)


def test_an_ack_without_sack_blocks_prunes_the_scoreboard():
    """RFC 6675 s5 and s4 pipe: a partial ACK without SACK blocks (the peer holds
    nothing beyond it) acknowledges every SACKed range below it; they leave the
    scoreboard, and are not counted again as SACKed bytes that leave room in the pipe.
    Segments 1, 18 and 19 are lost; the resent 1 arrives before anything sent in
    recovery, so the ACK of 18 carries no SACK block.  After it the engine resends 18
    at once (RFC 6582 s3.2 step 5) and sends no more than cwnd - pipe allows."""
    async def body(b):
        c = await _window(b)
        nxt, rcv, sacked, rexmitted = 20, 0, set(), set()
        for k in range(18):
            if k == 1:
                continue
            rcv, out = await _deliver(b, c, k, rcv, sacked)
            for n in out:
                if n < nxt:
                    rexmitted.add(n)
                nxt = max(nxt, n + 1)
        assert 1 in rexmitted and b.tcb(c.id)["in_recovery"] == 1
        assert _ranges(b, c) == [(2, 18)]
        b.send(c.peer, "A", ack=_seq(c, 18))  # the resent segment 1 arrived
        out = [(seg.seq - c.iss - 1) % MOD // SMSS for seg in await b.burst()]
        tcb = b.tcb(c.id)
        assert tcb["in_recovery"] == 1 and out[:1] == [18], out
        # RFC 6675 s4: nothing is SACKed, so the pipe is every segment from 18 to
        # SND.NXT once, and 18 once more; new data only within cwnd - pipe.
        room = max(0, tcb["cwnd"] // SMSS - (nxt - 18 + 1))
        assert out[1:] == list(range(nxt, nxt + room)), (out, nxt, room)
        assert _ranges(b, c) == []
    run(body, CC)


def test_duplicate_acks_with_new_sack_blocks_count_when_the_window_changes():
    """RFC 6675 s2: with SACK, an ACK whose first block reports octets not yet SACKed
    is a duplicate ACK even if its window changed (a receiver's window grows as its
    reader catches up).  Segment 0 is lost; the three ACKs for segments 1-3 each offer
    a larger window: the first two let one new segment go each (limited transmit, RFC
    3042), the third starts fast retransmit.  Repeating a block already held, with a
    new window, is no duplicate (RFC 5681 s2 still applies)."""
    async def body(b):
        c = await _window(b)
        out = []
        for k in (1, 2, 3):
            b.send(c.peer, "A", ack=_seq(c, 0), window=30_000 + 1_000 * k,
                   sack=[(_seq(c, 1), _seq(c, k + 1))])
            out += [(seg.seq - c.iss - 1) % MOD // SMSS for seg in await b.burst()]
        assert out == [20, 21, 0], out
        assert b.counters["tcp_fast_retransmits"] == 1
    run(body, CC)

    async def repeated(b):
        c = await _window(b)
        for k in (1, 2, 3):
            b.send(c.peer, "A", ack=_seq(c, 0), window=30_000 + 1_000 * k,
                   sack=[(_seq(c, 1), _seq(c, 2))])
        out = await b.burst()
        assert [(seg.seq - c.iss - 1) % MOD // SMSS for seg in out] == [20]
        assert b.tcb(c.id)["dupacks"] == 1 and b.counters["tcp_fast_retransmits"] == 0
    run(repeated, CC)
