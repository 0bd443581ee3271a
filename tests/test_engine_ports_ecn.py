"""Explicit Congestion Notification at the engine's own ports (RFC 3168; RFC 9293
SHLD-8): the ECN-setup SYN and SYN-ACK (s6.1.1), ECT(0) on new data only (s6.1.4,
s6.1.5), the echo of a CE mark with ECE until CWR (s6.1.3), and the sender's reaction
to ECE, once per window (s6.1.2).  ``Seg.ecn`` is the IPv4 ECN field the transmitter
is asked to write (tests/test_tcp_transmitter_unit.py checks the bytes)."""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import syn_sent

from toe.hdl.host_if import CommandOp, EventKind
from toe.hdl.proto import ipv4
from toe.hdl.proto.tcp import ACK_FLAG, CWR, ECE, SYN, flag_letters

ECN = BENCH_CONFIG.replace(ecn=True, tx_ring_bytes=1 << 16, initial_window=10)
SMSS = 100
SETUP_SYN = flag_letters(SYN | ECE | CWR)  # "SEC"
SETUP_SYNACK = flag_letters(SYN | ACK_FLAG | ECE)  # "SAE"


async def _accept(b, peer, flags=SETUP_SYN):
    """A passive open from ``peer``'s SYN with ``flags``; returns (conn id, SYN-ACK)."""
    if peer.engine_port not in b.listening:
        await b.listen(peer.engine_port)
    b.send(peer, flags, **peer.syn_options())
    synack = await b.next_segment()
    peer.take(synack)
    since = len(b.events)
    b.send(peer, "A")
    ev = await b.event(EventKind.ACCEPTED, since=since)
    b.command(CommandOp.ACCEPT, ev.conn)
    b.command(CommandOp.CREDIT, ev.conn, value=1 << 16)
    await b.settle()
    return ev.conn, synack


def test_active_open_offers_ecn():
    """s6.1.1: an active open's SYN carries ECE and CWR; a SYN-ACK with ECE alone
    agrees, one without does not."""
    async def body(b):
        c = await syn_sent(b)
        assert b.segments[0].flags == SETUP_SYN
        b.send(c.peer, "SAE", **c.peer.syn_options())
        await b.next_segment(flags="A")
        await b.settle()
        assert b.tcb(c.id)["ecn_ok"] == 1
        c2 = await syn_sent(b, Peer(port=8081, engine_port=50001, isn=5))
        b.send(c2.peer, "SA", **c2.peer.syn_options())
        await b.next_segment(flags="A")
        await b.settle()
        assert b.tcb(c2.id)["ecn_ok"] == 0
    run(body, ECN)


def test_passive_open_answers_only_an_ecn_setup_syn():
    """s6.1.1: a SYN with ECE and CWR gets a SYN-ACK with ECE (not CWR); a plain SYN a
    plain SYN-ACK, and ECN stays off."""
    async def body(b):
        conn, synack = await _accept(b, Peer(mss=SMSS))
        assert synack.flags == SETUP_SYNACK and b.tcb(conn)["ecn_ok"] == 1
        conn2, synack2 = await _accept(b, Peer(port=40001, mss=SMSS), flags="S")
        assert synack2.flags == "SA" and b.tcb(conn2)["ecn_ok"] == 0
    run(body, ECN)


def test_new_data_is_ect_and_nothing_else():
    """s6.1.4/s6.1.5: new data goes out ECT(0); a pure ACK and a retransmission after
    a timeout are not ECN-capable."""
    async def body(b):
        peer = Peer(mss=SMSS)
        conn, synack = await _accept(b, peer)
        base = synack.seq + 1
        b.write(conn, 300)
        first = await b.burst()
        assert [(s.len, s.ecn) for s in first] == [(SMSS, ipv4.ECT_0)] * 3
        b.send(peer, "PA", 10, ack=base)
        ack = await b.next_segment(flags="A")
        assert ack.ecn == ipv4.NOT_ECT
        await b.advance(ECN.rto_max_us)
        again = await b.burst()
        assert again and again[0].seq == base % MOD and again[0].ecn == ipv4.NOT_ECT
    run(body, ECN)


def test_ce_is_echoed_with_ece_until_cwr():
    """s6.1.3: the ACK of a CE-marked segment carries ECE, at once (not delayed), and so
    does every ACK after it until a segment with CWR arrives."""
    delay = 40_000

    async def body(b):
        peer = Peer(mss=SMSS)
        conn, _ = await _accept(b, peer)
        b.send(peer, "PA", 10, ip_ecn=ipv4.CE)
        await b.next_segment(flags="AE")  # at once, though ACKs are delayed
        b.send(peer, "PA", 10)
        await b.quiet()
        await b.advance(delay + 1)
        await b.next_segment(flags="AE")  # the delayed ACK still echoes
        b.send(peer, "PAC", 10)
        await b.quiet()
        await b.advance(delay + 1)
        await b.next_segment(flags="A")  # CWR came: no more ECE
        assert b.counters["tcp_ecn_ce"] == 1
    run(body, ECN.replace(ack_delay_us=delay))


def test_ece_halves_cwnd_once_per_window_and_cwr_follows():
    """s6.1.2: an ACK with ECE sets ssthresh = cwnd = max(FlightSize / 2, 2 SMSS) (the
    algorithm's loss response) and the next new segment carries CWR; another ECE in
    the same window changes nothing."""
    async def body(b):
        peer = Peer(mss=SMSS)
        conn, synack = await _accept(b, peer)
        base = synack.seq + 1
        b.write(conn, 20_000)
        assert len(await b.burst()) == 10
        b.send(peer, "AE", ack=(base + SMSS) % MOD)
        out = await b.burst()
        tcb = b.tcb(conn)
        assert (tcb["cwnd"], tcb["ssthresh"]) == (9 * SMSS // 2, 9 * SMSS // 2)
        assert out == [] or "C" in out[0].flags
        b.send(peer, "AE", ack=(base + 6 * SMSS) % MOD)
        out += await b.burst()
        assert out and out[0].flags.count("C") == 1
        assert all("C" not in s.flags for s in out[1:])
        assert b.counters["tcp_ecn_reductions"] == 1
    run(body, ECN)
