"""RFC 5961 s7 rate limits at the engine's own ports: one challenge or out-of-window
ACK per connection per ``oow_ack_interval_us`` (as Linux's tcp_invalid_ratelimit), a
global challenge-ACK budget drawn at random each second, and the side channel of
CVE-2016-5696 closed: what an attacker's own connection sees does not depend on what
happens to another connection."""

from engine_bench import BENCH_CONFIG, Peer, run
from engine_fixtures import established

from toe.hdl.tcp.tcb import TcpState

INTERVAL = BENCH_CONFIG.oow_ack_interval_us


def _acks_to(b, port, since):
    return [s for s in b.segments[since:] if s.dport == port and s.flags == "A"]


def test_challenge_acks_limited_per_connection():
    """RFC 5961 s7: eight in-window RSTs (s3.2) on one connection at once get one
    challenge ACK; the rest are counted (``tcp_oow_limited``), not sent; after the
    interval the next gets one again.  The connection stays."""
    async def body(b):
        c = await established(b)
        since = len(b.segments)
        for k in range(8):
            b.send(c.peer, "R", seq=c.rcv_nxt + 1 + k)
        await b.settle()
        assert len(_acks_to(b, c.peer.port, since)) == 1
        assert (b.counters["tcp_challenge_acks"], b.counters["tcp_oow_limited"]) == (1, 7)
        await b.advance(INTERVAL)
        since = len(b.segments)
        b.send(c.peer, "R", seq=c.rcv_nxt + 1)
        await b.settle()
        assert len(_acks_to(b, c.peer.port, since)) == 1
        assert b.state(c.id) == TcpState.ESTABLISHED
    run(body)


def test_out_of_window_acks_limited_but_not_for_data():
    """RFC 5961 s7 for the ACK of an unacceptable segment (RFC 9293 s3.10.7.4 first):
    pure ACKs far outside the window get one ACK per interval; segments with data are
    answered every time (no ACK loop is likely; Linux's tcp_oow_rate_limited), so a
    peer's window probes and retransmissions are never left unanswered."""
    async def body(b):
        c = await established(b)
        since = len(b.segments)
        for k in range(4):
            b.send(c.peer, "A", seq=c.rcv_nxt + 1_000_000 + k)
        await b.settle()
        assert len(_acks_to(b, c.peer.port, since)) == 1
        assert b.counters["tcp_oow_limited"] == 3
        since = len(b.segments)
        for _ in range(3):
            b.send(c.peer, "PA", 10, seq=c.rcv_nxt - 100)  # old data, retransmitted
        await b.settle()
        assert len(_acks_to(b, c.peer.port, since)) == 3
    run(body)


def test_global_challenge_budget_is_random_per_second():
    """RFC 5961 s7 with the Linux mitigation of CVE-2016-5696: with the per-connection
    limit off, the challenge ACKs of one second are limited by a budget drawn each
    second from limit/2 .. 3*limit/2 - 1 (8 here: 4..11), not by a fixed number."""
    config = BENCH_CONFIG.replace(oow_ack_interval_us=0, challenge_acks_per_s=8)

    async def body(b):
        c = await established(b)
        counts = []
        for _ in range(8):
            await b.advance(1_000_000)
            before = b.counters["tcp_challenge_acks"]
            for k in range(16):
                b.send(c.peer, "R", seq=c.rcv_nxt + 1 + k)
            await b.settle()
            counts.append(b.counters["tcp_challenge_acks"] - before)
        assert all(4 <= n <= 11 for n in counts), counts
        assert len(set(counts)) > 1, counts
    run(body, config)


def test_attacker_sees_nothing_of_another_connection():
    """CVE-2016-5696 (RFC 5961 s7): an off-path attacker's own connection counts the
    challenge ACKs it gets for its in-window RSTs, in rounds with and without spoofed
    in-window RSTs against a victim connection first.  The counts are the same in
    every round: the victim's challenge ACKs take nothing the attacker can see."""
    async def body(b):
        victim = await established(b, Peer(port=40001))
        attacker = await established(b, Peer(port=40002), local_port=50001)
        seen = {True: [], False: []}
        for round_ in range(8):
            await b.advance(1_000_000)
            hit = round_ % 2 == 1
            if hit:
                for k in range(6):
                    b.send(victim.peer, "R", seq=victim.rcv_nxt + 1 + k)
                await b.settle()
            since = len(b.segments)
            for k in range(6):
                b.send(attacker.peer, "R", seq=attacker.rcv_nxt + 1 + k)
            await b.settle()
            seen[hit].append(len(_acks_to(b, attacker.peer.port, since)))
        assert seen[True] == seen[False] == [1] * 4, seen
        assert b.state(victim.id) == b.state(attacker.id) == TcpState.ESTABLISHED
    run(body)
