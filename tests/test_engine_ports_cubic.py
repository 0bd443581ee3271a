"""CUBIC in the engine and the per-connection choice of algorithm, at the engine's own
ports (RFC 9438; docs/congestion.md "Several algorithms in one build").

The build holds ``congestion = "cubic,newreno"``: connections start with CUBIC (index 0)
and SET_OPTION CONGESTION 1 moves one to NewReno.  The peer announces an MSS of 100, so
the windows count in segments of 100 bytes.  The growth of CUBIC's window against the
RFC's formula is tested at the algorithm's own ports (test_congestion_cubic_unit.py).
"""

from engine_bench import BENCH_CONFIG, MOD, Peer, run
from engine_fixtures import established

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, InfoField, SocketOption
from toe.hdl.tcp.cc_cubic import BETA_1024, Cubic

CC = BENCH_CONFIG.replace(tx_ring_bytes=1 << 16, initial_window=10,
                          congestion="cubic,newreno")
SMSS = 100


def _w_max(cc_state: int) -> int:
    field = Cubic.state_layout["w_max"]
    return (cc_state >> field.offset) & ((1 << field.width) - 1)


async def _loss(b, c):
    """The second segment lost: one ACK, two limited-transmit duplicates, the third
    duplicate (fast retransmit).  Returns cwnd before the loss."""
    base = c.iss + 1
    await b.burst()
    b.send(c.peer, "A", ack=(base + SMSS) % MOD)
    await b.burst()
    before = b.tcb(c.id)["cwnd"]
    for _ in range(3):
        b.send(c.peer, "A", ack=(base + SMSS) % MOD)
        await b.burst()
    return before


def test_cubic_reduces_to_seven_tenths():
    """RFC 9438 s4.6: on fast retransmit ssthresh = cwnd * beta_cubic (0.7) and W_max =
    cwnd; fast recovery then inflates as RFC 5681 s3.2 says (ssthresh + 3 SMSS).  The
    segment at SND.UNA goes again at once."""
    async def body(b):
        c = await established(b, Peer(mss=SMSS))
        b.write(c.id, 40_000)
        cwnd = await _loss(b, c)
        tcb = b.tcb(c.id)
        assert cwnd == 11 * SMSS
        assert tcb["in_recovery"] == 1
        assert tcb["ssthresh"] == cwnd * BETA_1024 >> 10
        assert tcb["cwnd"] == tcb["ssthresh"] + 3 * SMSS
        assert _w_max(tcb["cc_state"]) == cwnd
        assert b.counters["tcp_fast_retransmits"] == 1
    run(body, CC)


def test_congestion_chosen_per_connection():
    """Per-connection choice (as Linux's TCP_CONGESTION): SET_OPTION CONGESTION 1 moves
    one connection to NewReno, whose loss leaves ssthresh = FlightSize / 2 (RFC 5681 eq.
    4), while the other keeps CUBIC's 0.7 * cwnd; GET_INFO CONGESTION reads the index; an
    index the build does not have gets ERROR(BAD_OPTION) and changes nothing."""
    async def body(b):
        cubic = await established(b, Peer(mss=SMSS, port=4001))
        reno = await established(b, Peer(mss=SMSS, port=4002))
        b.command(CommandOp.SET_OPTION, reno.id, port=SocketOption.CONGESTION.value, value=1)
        tag = b.command(CommandOp.SET_OPTION, cubic.id, port=SocketOption.CONGESTION.value,
                        value=2)
        assert (await b.event(EventKind.ERROR, tag=tag)).code == ErrorCode.BAD_OPTION
        for c, want in ((cubic, 0), (reno, 1)):
            tag = b.command(CommandOp.GET_INFO, c.id, port=InfoField.CONGESTION.value)
            assert (await b.event(EventKind.INFO, conn=c.id, tag=tag)).value == want
        b.write(cubic.id, 40_000)
        cwnd = await _loss(b, cubic)
        assert b.tcb(cubic.id)["ssthresh"] == cwnd * BETA_1024 >> 10
        b.write(reno.id, 40_000)
        await _loss(b, reno)
        flight = 13 * SMSS  # SND.MAX - SND.UNA at the third duplicate
        assert b.tcb(reno.id)["ssthresh"] == flight // 2
    run(body, CC)
