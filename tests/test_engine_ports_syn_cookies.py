"""SYN cookies and the half-open limit at the engine's own ports (RFC 4987 s3.6 and s3.1;
hdl/tcp/syn_cookie.py): the cookie is the documented keyed function of the 4-tuple,
the time and the MSS (computed here by sim/isn_model.py from the same key), no state is
kept for a cookie SYN-ACK, the returning ACK rebuilds the connection with its MSS and
(through the timestamps) its options, and a forged or stale cookie creates nothing."""

from engine_bench import BENCH_CONFIG, MOD, Peer, run

from toe.hdl.host_if import CommandOp, EventKind
from toe.hdl.tcp import syn_cookie
from toe.hdl.tcp.states import TcpState
from toe.sim.isn_model import reference_cookie

ALWAYS = BENCH_CONFIG.replace(syn_cookies="always", cookie_period_log2=12, tx_ring_bytes=1024)
KEY = bytes(16)  # the bench never writes the ISN key: zero after reset


def _cookie(b, peer, mss_index, period=None):
    period = (b.now >> b.config.cookie_period_log2) % 32 if period is None else period
    connection = {"local_ip": b.config.ip_addr, "local_port": peer.engine_port,
                  "remote_ip": peer.ip, "remote_port": peer.port}
    return reference_cookie(KEY, connection, period, mss_index)


def _table_index(mss):
    return max(i for i, v in enumerate(syn_cookie.MSS_TABLE) if v <= mss)


async def _cookie_synack(b, peer=None):
    """LISTEN on 80 and a SYN from ``peer``: the cookie SYN-ACK, taken by the peer."""
    peer = peer or Peer()
    await b.listen(80)
    b.send(peer, "S", **peer.syn_options())
    synack = await b.next_segment(flags="SA")
    peer.take(synack)
    return peer, synack


def _no_tcb_used(b):
    return all(b.state(conn) == TcpState.CLOSED for conn in range(b.config.connections))


def test_cookie_synack_keeps_no_state_and_its_ack_opens():
    """RFC 4987 s3.6: the SYN-ACK's ISN is the cookie (period, MSS index, keyed hash of
    the 4-tuple) and no TCB is taken; the ACK that returns it opens the connection in
    ESTABLISHED with ISS = the cookie and the MSS the cookie carried (the SYN's 1000
    rounded down to the table's 536 here: the bench's own MSS is 536); data in the ACK
    is taken in order (s3.10.7.4 seventh)."""
    async def body(b):
        peer = Peer(mss=1000)
        await b.listen(80)
        b.send(peer, "S", **peer.syn_options())
        synack = await b.next_segment(flags="SA")
        assert synack.seq == _cookie(b, peer, _table_index(536)), synack
        assert synack.ack == (peer.isn + 1) % MOD and synack.mss
        assert synack.wscale is None and not synack.sack_permitted and synack.ts is None
        await b.settle()
        assert _no_tcb_used(b)
        assert b.counters["tcp_cookies_sent"] == 1 and b.counters["tcp_passive_opens"] == 0
        peer.take(synack)
        since = len(b.events)
        b.send(peer, "PA", 10)
        ev = await b.event(EventKind.ACCEPTED, since=since)
        b.command(CommandOp.ACCEPT, ev.conn)
        b.command(CommandOp.CREDIT, ev.conn, value=1 << 16)
        ack = await b.next_segment(flags="A")
        assert ack.ack == (peer.isn + 11) % MOD and ack.seq == (synack.seq + 1) % MOD
        await b.settle()
        tcb = b.tcb(ev.conn)
        assert tcb["state"] == TcpState.ESTABLISHED and tcb["iss"] == synack.seq
        assert tcb["snd_mss"] == 536 and tcb["passive"] == 1
        assert b.counters["tcp_cookies_accepted"] == 1
        b.write(ev.conn, 600)
        sizes = [s.len for s in await b.burst()]
        assert sizes == [536], sizes  # full-sized; Nagle holds the 64 bytes left
    run(body, ALWAYS)


def test_cookie_carries_options_in_the_timestamp():
    """RFC 4987 s3.6 with RFC 7323 (as Linux's cookie_init_timestamp): a SYN with
    timestamps, window scale 7 and SACK-permitted gets a SYN-ACK offering all three,
    its TSval's low 6 bits encoding them; the ACK echoing it in TSecr restores them:
    SND.WND.SHIFT = 7, SACK on, and SND.MSS less the 12 timestamp bytes (RFC 6691)."""
    async def body(b):
        peer = Peer(mss=1460, wscale=7, sack_permitted=True, ts=True)
        await b.listen(80)
        b.send(peer, "S", **peer.syn_options())
        synack = await b.next_segment(flags="SA")
        assert synack.wscale is not None and synack.sack_permitted and synack.ts
        ts_val, ts_ecr = synack.ts
        assert ts_ecr == peer.ts_val
        assert syn_cookie.ts_decode(ts_val & 63) == (7, True, False)
        peer.take(synack)
        peer.ts_recent = ts_val
        since = len(b.events)
        b.send(peer, "A")
        ev = await b.event(EventKind.ACCEPTED, since=since)
        await b.settle()
        tcb = b.tcb(ev.conn)
        assert (tcb["ws_ok"], tcb["snd_shift"], tcb["sack_ok"], tcb["ts_ok"]) == (1, 7, 1, 1)
        assert tcb["snd_mss"] == 536 - 12 and tcb["rcv_shift"] == BENCH_CONFIG.rcv_wscale
        assert tcb["srtt"] == 0  # no RTT sample from a TSecr whose low bits were options
    run(body, ALWAYS)


def test_forged_and_stale_cookies_create_nothing():
    """RFC 4987 s3.6: an ACK whose cookie does not verify, or whose period is more
    than one period old, opens nothing and is answered as any ACK to a listener, with
    <SEQ=SEG.ACK><CTL=RST> (RFC 9293 s3.10.7.2 second: the ACK goes to TcpReset);
    counted."""
    async def body(b):
        peer, synack = await _cookie_synack(b)
        forged = (synack.seq ^ 0x1) + 1
        b.send(peer, "A", ack=forged)
        await b.until(lambda: len(b.resets) == 1, what="a reset request")
        assert b.resets[0][:3] == ("A", peer.snd_nxt, forged % MOD)  # TcpReset's input
        await b.advance(3 << ALWAYS.cookie_period_log2)  # two periods and more later
        b.send(peer, "A")
        await b.until(lambda: len(b.resets) == 2, what="a reset request")
        assert b.resets[1][:3] == ("A", peer.snd_nxt, (synack.seq + 1) % MOD)
        await b.settle()
        assert b.counters["tcp_cookies_invalid"] == 2
        assert b.counters["tcp_cookies_accepted"] == 0 and _no_tcb_used(b)
        assert EventKind.ACCEPTED not in b.kinds()
    run(body, ALWAYS)


def test_cookie_valid_in_the_next_period():
    """The cookie of one period is still taken in the next (hdl/tcp/syn_cookie.py: age
    =< 1 period)."""
    async def body(b):
        peer, synack = await _cookie_synack(b)
        await b.advance(1 << ALWAYS.cookie_period_log2)
        since = len(b.events)
        b.send(peer, "A")
        await b.event(EventKind.ACCEPTED, since=since)
    run(body, ALWAYS)


def test_cookies_when_the_half_open_places_are_full():
    """RFC 4987 s3.1 and s3.6, auto mode: a listener holds ``syn_backlog`` (2)
    half-open connections; a third SYN gets a cookie SYN-ACK and no state, and its ACK
    opens a connection beside the two still half-open.  When they complete, the
    half-open places are free again: the next SYN gets an ordinary SYN-ACK."""
    async def body(b):
        await b.listen(80, backlog=4)
        peers = [Peer(port=40000 + i, isn=1000 * (i + 1)) for i in range(4)]
        synacks = []
        for peer in peers[:3]:
            b.send(peer, "S", **peer.syn_options())
            synacks.append(await b.next_segment(flags="SA"))
            peer.take(synacks[-1])
        await b.settle()
        assert b.counters["tcp_passive_opens"] == 2 and b.counters["tcp_cookies_sent"] == 1
        assert synacks[2].seq == _cookie(b, peers[2], _table_index(536))
        since = len(b.events)
        b.send(peers[2], "A")
        ev = await b.event(EventKind.ACCEPTED, since=since)
        await b.settle()
        assert b.state(ev.conn) == TcpState.ESTABLISHED
        assert [b.state(s.conn) for s in synacks[:2]] == [TcpState.SYN_RECEIVED] * 2
        for peer in peers[:2]:
            b.send(peer, "A")
        await b.settle()
        b.send(peers[3], "S", **peers[3].syn_options())
        await b.next_segment(flags="SA")
        await b.settle()
        assert b.counters["tcp_passive_opens"] == 3 and b.counters["tcp_cookies_sent"] == 1
    run(body, BENCH_CONFIG.replace(syn_backlog=2, cookie_period_log2=12))


def test_no_cookie_check_without_a_recent_cookie():
    """Auto mode checks an ACK to a listener for a cookie only while cookies were sent
    in this period or the last (as Linux's tcp_synq_no_recent_overflow): otherwise it
    is answered with RST at once, no hash computed."""
    async def body(b):
        peer = Peer()
        await b.listen(80)
        b.send(peer, "A", ack=12345)
        await b.until(lambda: b.resets, what="a reset request")
        assert b.resets[0][:3] == ("A", peer.snd_nxt, 12345)
        await b.settle()
        assert b.counters["tcp_cookies_invalid"] == 0
    run(body, BENCH_CONFIG)


def test_full_accept_queue_drops_syns_even_with_cookies():
    """A SYN to a listener whose accept queue (the backlog) is full is dropped and
    counted, cookie or not, as Linux does: a cookie's connection would find no place."""
    async def body(b):
        await b.listen(80, backlog=1)
        first = Peer(port=40001)
        b.send(first, "S", **first.syn_options())
        first.take(await b.next_segment(flags="SA"))
        b.send(first, "A")
        await b.event(EventKind.ACCEPTED)
        second = Peer(port=40002)
        b.send(second, "S", **second.syn_options())
        await b.quiet()
        # The first connection's own SYN-ACK was a cookie (always mode); the second none.
        assert b.counters["tcp_backlog_drops"] == 1 and b.counters["tcp_cookies_sent"] == 1
    run(body, ALWAYS)


def test_off_mode_drops_syns_beyond_the_half_open_places():
    """``syn_cookies="off"``: a SYN beyond ``syn_backlog`` half-open connections is
    dropped and counted (RFC 4987 s3.1, the bounded SYN queue)."""
    async def body(b):
        await b.listen(80, backlog=4)
        for i in range(2):
            peer = Peer(port=40000 + i)
            b.send(peer, "S", **peer.syn_options())
            await b.next_segment(flags="SA")
        third = Peer(port=40002)
        b.send(third, "S", **third.syn_options())
        await b.quiet()
        assert b.counters["tcp_backlog_drops"] == 1 and b.counters["tcp_cookies_sent"] == 0
    run(body, BENCH_CONFIG.replace(syn_cookies="off", syn_backlog=2))


def test_half_open_gives_up_after_its_synack_retries():
    """A half-open connection is deleted after ``r2_synack_retries`` (2 here)
    retransmissions of its SYN-ACK, not the active open's ``r2_syn_retries`` (3): the
    SYN-ACK goes 3 times in all, then the place is free for an ordinary SYN-ACK."""
    config = BENCH_CONFIG.replace(r2_synack_retries=2, syn_backlog=1, syn_cookies="off")

    async def body(b):
        await b.listen(80)
        peer = Peer()
        b.send(peer, "S", **peer.syn_options())
        synacks = [await b.next_segment(flags="SA")]
        for _ in range(6):
            await b.advance(config.rto_max_us)
            await b.settle()
        synacks += [s for s in await b.burst() if s.flags == "SA"]
        assert len(synacks) == 3, synacks
        assert b.state(synacks[0].conn) == TcpState.CLOSED
        retry = Peer(port=40009)
        b.send(retry, "S", **retry.syn_options())
        assert (await b.next_segment(flags="SA")).ack == (retry.isn + 1) % MOD
    run(body, config)
