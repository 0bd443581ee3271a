"""Segment text with out-of-order reassembly: RFC 9293 s3.10.7.4 "seventh, process the
segment text" (SHLD-31: segments beyond RCV.NXT are kept), as steps of the TCP engine.

The RX ring is indexed by sequence number, so a segment that arrives beyond RCV.NXT is
copied straight to its place in the ring; the TCB records which ranges beyond RCV.NXT
are held, in ``reassembly_intervals`` disjoint, non-touching intervals ``[start, end)``
(``t.ooo``).  The ring space they use lies inside the window already advertised (from
RCV.NXT to the ring's read position + ring size), so the window never shrinks
(SHLD-14) and no byte outside it is stored.

A segment's new bytes are taken in runs: from its first byte not yet received or held
to the next byte already held (or its end, or the window's end), then again after that
held range.  So no byte is ever written twice: a later copy never changes a byte
received before (s3.10.7.4: "only the new parts are processed").

Steps (each ends in registers): ``seg_text`` -- in order with nothing held (the common
case), the new bytes are stored at once as without reassembly; otherwise the run's
first byte ``a`` (past a held interval that contains it) and last bound ``b``;
``seg_text_gap`` -- the distances from ``a`` to ``b`` and to each held interval;
``seg_text_run`` -- the run ends at the next held interval's start (or ``b``);
``seg_text_store`` -- copy the run, then either advance RCV.NXT (and over a held
interval it now touches) or record the run as held, merged with the intervals it
touches; when the run ended at a held interval and the segment goes on past it,
``seg_text_copy`` sends the run's copy and the steps repeat from ``seg_text_start``
for the text after that interval, so a retransmission that covers several holes fills
them all.  A run that needs an interval when all are in use is dropped and counted
(``tcp_ooo_dropped``); nothing held is ever lost.  Every segment with text is ACKed at
once: a duplicate ACK for an out-of-order one, the new RCV.NXT when a hole fills
(RFC 5681 s4.2).  A FIN beyond a hole is remembered (``fin_held``, ``fin_at``) and takes
effect when RCV.NXT reaches it (:mod:`hdl.tcp.arrival`, ``seg_fin``).
"""

from amaranth.hdl import Cat, Mux, Signal

from ..proto import ipv4
from .seq import NEAR_BITS, near_diff, near_le, seq_diff, seq_lt, seq_min
from .states import TcpState

__all__ = ["TextRegisters", "add_text_steps"]

S = TcpState


class TextRegisters:
    """The intermediate results of the text steps."""

    def __init__(self, intervals: int):
        k = intervals
        self.text = Signal()  # the segment has text to process in a receiving state
        self.a = Signal(32)  # the run's first byte
        self.b = Signal(32)  # the end of the segment's text, within the window
        self.left = Signal(k)  # the interval that contains (then ends at) the run's start
        self.run = Signal(17)  # bytes in the run
        self.right = Signal(k)  # the interval that starts where the run ends
        self.fits = Signal()  # the segment's text ends inside the window
        self.whole = Signal()  # the run reaches the end of the segment's text
        self.first = Signal()  # the segment's first run


def _first(m, bits, name):
    """A one-hot vector of the lowest set bit of ``bits``."""
    out = Signal(len(bits), name=name)
    for i in reversed(range(len(bits))):
        with m.If(bits[i]):
            m.d.comb += out.eq(1 << i)
    return out


def add_text_steps(e, fin_acked_steps):
    """``seg_text`` (which runs ``fin_acked_steps()`` first: the FIN-acked state changes
    of the fifth step) to ``seg_text_store``, then ``seg_fin``."""
    m, cfg, t, s = e.m, e.cfg, e.t, e.s
    k = cfg.reassembly_intervals
    r = TextRegisters(k)
    e.text = r
    ooo = t.ooo

    with m.State("seg_text"):
        fin_acked_steps()
        # The run starts at RCV.NXT or at the segment's first byte, whichever is later;
        # the text ends at the segment's end or the window's right edge.
        data_end = (e.data_seq + s.tcp_payload_len)[:32]
        wnd_end = (t.rcv_read + cfg.rx_ring_bytes)[:32]  # RCV.NXT + the ring's free space
        text = e.in_states(S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2) & (
            s.tcp_payload_len != 0)
        ahead = seq_lt(t.rcv_nxt, e.data_seq)
        a = Mux(ahead, e.data_seq, t.rcv_nxt)
        b = Mux(seq_lt(wnd_end, data_end), wnd_end, data_end)
        held = Cat(ooo[i].valid for i in range(k)).any()
        fits = ~seq_lt(wnd_end, data_end)
        m.d.sync += [r.text.eq(text), r.b.eq(b), r.fits.eq(fits), r.whole.eq(fits),
                     r.first.eq(1)]
        m.next = "seg_fin"
        with m.If(text & ~ahead & (e.data_seq != t.rcv_nxt)):
            # RFC 2883 s4.1.1: the part below RCV.NXT was received before.
            e.report_duplicate(e.data_seq, Mux(seq_lt(t.rcv_nxt, data_end), t.rcv_nxt,
                                               data_end))
        with m.If(text & ~held & ~ahead):
            # Nothing held, in order: the run is the new bytes, at once.
            trim = seq_diff(t.rcv_nxt, e.data_seq)
            fresh = Mux(trim < s.tcp_payload_len, s.tcp_payload_len - trim, 0)
            take = seq_min(fresh, e.rx_free)[:17]
            # Delayed ACK (RFC 9293 SHLD-18/19, RFC 5681 s4.2): new text in order waits
            # while at most one MSS is unacknowledged; a duplicate is ACKed at once.
            owed = seq_diff(t.rcv_nxt, t.ack_sent)
            # A CE mark is echoed at once (RFC 3168 s6.1.3).
            delay = ((trim == 0) & (take != 0) & ~t.quickack & ~owed[16:].any()
                     & ~(t.ecn_ok & (s.ip_ecn == ipv4.CE))
                     & (owed[:16] + s.tcp_payload_len <= cfg.mss))
            with m.If(delay if cfg.ack_delay_us else 0):
                m.d.sync += t.ack_pending.eq(1)
                with m.If(~t.ack_pending):
                    m.d.sync += t.ack_due.eq((e.now + cfg.ack_delay_us)[:32])
            with m.Else():
                e.send_ack()
            with m.If(take != 0):
                _advance(e, (t.rcv_nxt + take)[:32], t.rcv_nxt, take)
        with m.Elif(text):
            m.d.sync += r.a.eq(a)
            m.next = "seg_text_start"

    with m.State("seg_text_start"):
        # A held interval containing the run's start, or ending right there: the run
        # starts at its end and grows it (so held intervals never touch).
        contains = Signal(k)
        m.d.comb += contains.eq(Cat(ooo[i].valid & near_le(ooo[i].start, r.a)
                                    & near_le(r.a, ooo[i].end) for i in range(k)))
        m.d.sync += r.left.eq(contains)
        for i in range(k):
            with m.If(contains[i]):
                m.d.sync += r.a.eq(ooo[i].end)
        m.next = "seg_text_gap"

    far = (1 << (NEAR_BITS - 1)) - 1  # beyond any distance inside a window
    dist = [Signal(NEAR_BITS - 1, name=f"text_dist{i}") for i in range(k)]
    room = Signal(NEAR_BITS - 1)

    with m.State("seg_text_gap"):
        # The distances from a to b and to every held interval that starts after a.
        # All of them lie inside the window, less than 2**21 apart: short differences
        # (near_diff) keep the carry chains short.
        span = near_diff(r.b, r.a)
        m.d.sync += room.eq(Mux(span[-1], 0, span[:-1]))
        for i in range(k):
            d = near_diff(ooo[i].start, r.a)
            m.d.sync += dist[i].eq(Mux(ooo[i].valid & ~d[-1] & (d != 0), d[:-1], far))
        m.next = "seg_text_run"

    with m.State("seg_text_run"):
        # The run ends at b or at the nearest held interval that starts after a (a
        # balanced minimum of the distances).
        level = dist
        while len(level) > 1:
            pairs = []
            for x, y in zip(level[::2], level[1::2], strict=False):  # odd: last left
                low = Signal(NEAR_BITS - 1)
                m.d.comb += low.eq(Mux(y < x, y, x))
                pairs.append(low)
            level = pairs + level[len(level) & ~1:]
        nearest = level[0]
        ends_at_held = nearest <= room
        m.d.sync += [
            r.run.eq(Mux(ends_at_held, nearest, room)),
            r.right.eq(Mux(ends_at_held,
                           Cat((dist[i] == nearest) & (nearest != far) for i in range(k)), 0)),
            r.whole.eq(r.fits & ~(ends_at_held & (nearest < room))),
        ]
        m.next = "seg_text_store"

    with m.State("seg_text_store"):
        m.next = "seg_fin"
        run_end = (r.a + r.run)[:32]
        # The run ended at a held interval and the segment goes on past it: the next
        # run starts after that interval, once this run's copy has left.
        more = (r.run != 0) & r.right.any() & ~r.whole
        right = _first(m, r.right, "text_right")
        left = _first(m, r.left, "text_left")
        right_end = Signal(32)
        for i in range(k):
            with m.If(right[i]):
                m.d.comb += right_end.eq(ooo[i].end)
        in_order = r.a == t.rcv_nxt
        free = _first(m, Cat(~ooo[i].valid for i in range(k)), "text_free")
        # The range that now holds the latest segment (one-hot) becomes the most recent
        # (RFC 2018 s4); the ranges more recent than it move down one.
        touch = Signal(k, name="sack_touch")
        touched_rank = Signal.like(t.sack_rank[0])
        for i in range(k):
            with m.If(touch[i]):
                m.d.comb += touched_rank.eq(t.sack_rank[i])
        with m.If(touch.any()):
            for i in range(k):
                with m.If(touch[i]):
                    m.d.sync += t.sack_rank[i].eq(0)
                with m.Elif(t.sack_rank[i] < touched_rank):
                    m.d.sync += t.sack_rank[i].eq(t.sack_rank[i] + 1)
        with m.If(r.text & (r.run != 0) & r.first & r.left.any() & (r.a != e.data_seq)):
            # RFC 2883 s4: the segment's first bytes were held already (the run starts
            # past them): they are reported as duplicate, the rest is stored.
            e.report_duplicate(e.data_seq, r.a)
        with m.If(r.text):
            e.send_ack()  # at once (RFC 5681 s4.2), also for a duplicate or no room
            with m.If(r.run == 0):
                # Nothing new: a duplicate, or no room in the window.  A duplicate of
                # held text is reported in a D-SACK block, followed by the interval
                # that holds it (RFC 2883 s4.1.2, RFC 2018 s4).
                m.d.comb += touch.eq(left)
                with m.If(r.left.any() & r.first):
                    e.report_duplicate(e.data_seq, r.b)
            with m.Elif(in_order):
                # Fills the hole at RCV.NXT, and reaches the interval it touches.
                _advance(e, Mux(r.right.any(), right_end, run_end), r.a, r.run)
                for i in range(k):
                    with m.If(right[i]):
                        m.d.sync += ooo[i].valid.eq(0)
            with m.Elif(t.host_closed):
                e.count("tcp_out_of_order")  # nobody reads: not kept
            with m.Elif(r.left.any() | r.right.any() | free.any()):
                e.count("tcp_out_of_order")
                _copy(e, r.a, r.run)
                # The interval that now holds the segment comes first in the SACK
                # option (RFC 2018 s4: the block of the most recent segment first).
                with m.If(r.left.any()):
                    # Grows the interval that ends at its start (and swallows the one
                    # that starts at its end).
                    m.d.comb += touch.eq(left)
                    for i in range(k):
                        with m.If(left[i]):
                            m.d.sync += ooo[i].end.eq(Mux(r.right.any(), right_end, run_end))
                        with m.If(right[i]):
                            m.d.sync += ooo[i].valid.eq(0)
                with m.Elif(r.right.any()):
                    m.d.comb += touch.eq(right)
                    for i in range(k):
                        with m.If(right[i]):
                            m.d.sync += ooo[i].start.eq(r.a)
                with m.Else():
                    m.d.comb += touch.eq(free)
                    for i in range(k):
                        with m.If(free[i]):
                            m.d.sync += [ooo[i].valid.eq(1), ooo[i].start.eq(r.a),
                                         ooo[i].end.eq(run_end)]
            with m.Else():
                e.count("tcp_ooo_dropped")  # every interval in use: nothing stored
                m.d.sync += r.whole.eq(0)
            with m.If(more & (in_order | ~t.host_closed)):
                # The run was taken (a run that ends at a held interval is always
                # recorded): the next one starts after that interval.
                m.d.sync += r.a.eq(right_end)
                m.next = "seg_text_copy"

    with m.State("seg_text_copy"):
        # The run's copy goes now (the next run needs the product register); then the
        # next run from the end of the held interval.
        m.d.sync += r.first.eq(0)
        with m.If(e.do_copy):
            with m.If(e.issue_copy()):
                m.d.sync += e.do_copy.eq(0)
                m.next = "seg_text_start"
        with m.Else():
            m.next = "seg_text_start"


def _advance(e, new_nxt, first, length):
    """In-order text: RCV.NXT moves to ``new_nxt``; ``length`` new bytes from ``first``
    go to the ring (or, once the host has closed, are consumed at once)."""
    m, t = e.m, e.t
    m.d.sync += t.rcv_nxt.eq(new_nxt)
    with m.If(t.host_closed):
        # Nobody reads any more: the bytes are consumed.
        m.d.sync += t.rcv_dlv.eq(new_nxt)
        with m.If(t.dlv_out == 0):
            m.d.sync += t.rcv_read.eq(new_nxt)
    with m.Else():
        _copy(e, first, length)


def _copy(e, first, length):
    """Copy ``length`` bytes of the segment's text, from sequence number ``first``."""
    m = e.m
    m.d.sync += [
        e.do_copy.eq(1),
        e.cp.offset.eq(e.payload_at + seq_diff(first, e.data_seq)),
        e.cp.length.eq(length),
        e.cp.pos.eq(first),
    ]
