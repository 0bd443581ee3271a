"""Out-of-order reassembly at the TCP engine's own ports (hdl/tcp/reassembly.py).

RFC 9293 SHLD-31 (segments beyond RCV.NXT are kept), s3.10.7.4 seventh (only the new
parts of a segment are processed), RFC 5681 s4.2 (an immediate duplicate ACK for every
out-of-order segment, an immediate ACK when a hole fills), SHLD-14 (the window never
shrinks).  The bench's connections hold ``reassembly_intervals`` (4) ranges.
"""

from engine_bench import BENCH_CONFIG, MOD, run
from engine_fixtures import established

from toe.hdl.host_if import EventKind
from toe.hdl.tcp.tcb import TcpState

K = BENCH_CONFIG.reassembly_intervals


def _acks(b):
    return [seg.ack for seg in b.segments]


def _copied(b, base):
    """The bytes written to the RX ring, as offsets from ``base``; asserts none twice."""
    seen: set[int] = set()
    for _conn, _buf, _offset, length, ring_pos in b.copies:
        rel = (ring_pos - base) % MOD
        span = set(range(rel, rel + length))
        assert not span & seen, f"written twice: {sorted(span & seen)[:4]}"
        seen |= span
    return seen


async def _send(b, c, start, length, flags="PA"):
    """Text ``[start, start + length)`` relative to the hole; the ACK that answers it."""
    b.send(c.peer, flags, length, seq=(c.hole + start) % MOD)
    return (await b.next_segment()).ack


async def _open(b):
    c = await established(b)
    c.hole = c.rcv_nxt
    return c


def test_holes_fill_in_any_order():
    """Three held ranges with two holes between them: each out-of-order segment gets a
    duplicate ACK; the first hole's segment moves RCV.NXT over the ranges it reaches,
    the second over the rest; the host gets every byte once, in order."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        assert await _send(b, c, 20, 10) == h  # [20, 30) held
        assert await _send(b, c, 50, 10) == h  # [50, 60) held
        assert await _send(b, c, 10, 10) == h  # [10, 20) held, merged with [20, 30)
        assert await _send(b, c, 0, 10) == (h + 30) % MOD  # the hole fills up to 30
        assert await _send(b, c, 30, 20) == (h + 60) % MOD  # and the next one up to 60
        await b.settle()
        assert _copied(b, h) == set(range(60))
        at = h
        for _conn, pos, length in b.deliveries:  # in order, each byte once
            assert pos == at
            at = (at + length) % MOD
        assert at == (h + 60) % MOD
        assert b.counters["tcp_out_of_order"] == 3
    run(body)


def test_adjacent_ranges_merge():
    """Text that starts where a held range ends, or ends where one starts, joins it: the
    held ranges never touch, so filling the one hole moves RCV.NXT over all of them."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        await _send(b, c, 10, 10)  # [10, 20)
        await _send(b, c, 20, 10)  # [20, 30): starts where the held range ends
        await _send(b, c, 40, 10)  # [40, 50)
        await _send(b, c, 30, 10)  # [30, 40): ends where one starts, starts where one ends
        await _send(b, c, 50, 10)  # [50, 60)
        assert await _send(b, c, 0, 10) == (h + 60) % MOD
        await b.settle()
        assert _copied(b, h) == set(range(60))
        assert b.counters["tcp_ooo_dropped"] == 0
    run(body)


def test_overlap_keeps_the_bytes_received_first():
    """RFC 9293 s3.10.7.4: of a segment that overlaps held text only the new parts,
    before and after the held range, are stored (two runs); no byte is written twice,
    and a duplicate of held text stores nothing."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        await _send(b, c, 20, 20)  # [20, 40) held
        await _send(b, c, 10, 40)  # [10, 50): [10, 20) and [40, 50) are new
        await _send(b, c, 20, 20)  # a duplicate of held text
        copies_before = len(b.copies)
        await _send(b, c, 25, 5)  # inside held text: nothing new
        assert len(b.copies) == copies_before
        assert await _send(b, c, 0, 10) == (h + 50) % MOD  # [10, 50) was held
        assert await _send(b, c, 40, 10) == (h + 50) % MOD  # an old duplicate
        await b.settle()
        assert _copied(b, h) == set(range(50))
    run(body)


def test_one_retransmission_fills_several_holes():
    """RFC 9293 s3.10.7.4 with SHLD-31: a retransmission that covers two holes and the
    held ranges between them fills both; RCV.NXT moves to its end at once and every
    byte is written once."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        await _send(b, c, 10, 10)  # [10, 20) held
        await _send(b, c, 30, 10)  # [30, 40) held
        assert await _send(b, c, 0, 50) == (h + 50) % MOD
        await b.settle()
        assert _copied(b, h) == set(range(50))
        assert b.counters["tcp_ooo_dropped"] == 0
    run(body)


def test_out_of_order_segment_across_held_ranges():
    """A segment beyond RCV.NXT that spans held ranges stores each new part and merges
    everything into one held range: the hole before it is all that is missing."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        await _send(b, c, 20, 5)  # [20, 25)
        await _send(b, c, 30, 5)  # [30, 35)
        assert await _send(b, c, 15, 30) == h  # [15, 45): three new parts
        assert await _send(b, c, 0, 15) == (h + 45) % MOD
        await b.settle()
        assert _copied(b, h) == set(range(45))
    run(body)


def test_table_full_drops_and_counts_nothing_held_lost():
    """With every interval in use, a segment that needs a new one is dropped and counted
    (``tcp_ooo_dropped``); everything held before is kept and delivered once the holes
    fill; the dropped text comes again and is taken."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        for i in range(K):
            await _send(b, c, 10 + 20 * i, 10)  # [10,20) [30,40) ... held, holes between
        await _send(b, c, 10 + 20 * K, 10)  # a fifth range: no interval left
        assert b.counters["tcp_ooo_dropped"] == 1
        for i in range(K + 1):
            await _send(b, c, 20 * i, 10)  # fill each hole
        assert _acks(b)[-1] == (h + 20 * K + 10) % MOD  # up to the dropped range
        assert await _send(b, c, 20 * K, 20) == (h + 20 * K + 20) % MOD
        await b.settle()
        assert sum(d[2] for d in b.deliveries) == 20 * K + 20
    run(body)


def test_fin_beyond_a_hole_counts_when_the_hole_fills():
    """RFC 9293 s3.10.7.4 eighth: a FIN is processed only once every byte before it has
    arrived; a FIN that arrives beyond a hole is remembered and takes effect when the
    hole fills (ACK = RCV.NXT + 1, PEER_FIN after the whole stream, CLOSE-WAIT)."""
    async def body(b):
        c = await _open(b)
        h = c.hole
        assert await _send(b, c, 10, 10, "FPA") == h  # text and FIN beyond the hole
        await b.settle()
        assert b.state(c.id) == TcpState.ESTABLISHED
        assert await _send(b, c, 0, 10) == (h + 21) % MOD
        ev = await b.event(EventKind.PEER_FIN, conn=c.id)
        assert ev.value == 20
        await b.settle()
        assert b.state(c.id) == TcpState.CLOSE_WAIT
    run(body)


def test_held_text_stays_inside_the_window():
    """RFC 9293 SHLD-14 / s3.10.7.4: text beyond the advertised window is not stored
    (the part inside it is), so held text never takes ring space the window did not
    offer, and the right edge never moves left."""
    ring = BENCH_CONFIG.rx_ring_bytes

    async def body(b):
        c = await established(b, credit=0)  # the host takes nothing: the ring fills
        c.hole = c.rcv_nxt
        h = c.hole
        await _send(b, c, ring - 40, 80)  # half beyond the right edge
        await _send(b, c, 0, ring - 40)
        await b.settle()
        assert _copied(b, h) == set(range(ring))
        last = b.segments[-1]
        assert last.ack == (h + ring) % MOD and last.window == 0
    run(body)
