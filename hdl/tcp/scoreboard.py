"""The sender's SACK scoreboard (RFC 2018 s5, RFC 6675 s3-5): which ranges beyond
SND.UNA the peer holds, so that loss recovery resends the holes between them and not
what arrived.

Each TCB keeps ``ToeConfig.sack_ranges`` disjoint, non-adjacent ranges ``sb`` of
sequence space within SND.UNA..SND.MAX, and ``high_rxt`` (RFC 6675 HighRxt): the end of
what this recovery has resent.

- **Merging** (step ``sack_merge``, after an acceptable ACK that carries SACK blocks,
  or any while the scoreboard holds a range, on a connection that agreed SACK): first
  the ranges at or below the new SND.UNA are dropped and those that straddle it cut;
  then each block, two cycles each: a block that lies wholly in SND.UNA..SND.MAX is
  joined with every range it overlaps or touches, or takes a free place.  A D-SACK
  block (RFC 2883, below SND.UNA or inside a held range) changes nothing.  A block
  with no place is left out and counted in ``tcp_sack_dropped``: the scoreboard may
  know less than the peer holds, never more.
- **Entering recovery** (RFC 6675 s5): on the third duplicate ACK, or on an earlier
  one after whose SACK blocks IsLost(SND.UNA) holds (:func:`is_lost`: three ranges, or
  more than two SMSS SACKed), so that a lost ACK or a peer that delays its duplicate
  ACKs does not hold the retransmission back (step ``sack_lost``).
- **IsLost** (RFC 6675 s4, steps ``output_pipe`` .. ``output_pipe_count``): the hole
  just below a range is lost when DupThresh ranges lie from it upwards or more than
  (DupThresh - 1) * SMSS are SACKed from it upwards (:func:`pipe_lost`).  IsLost is
  monotone, so the *lost boundary* is the end of the highest lost range: unSACKed
  bytes below it are lost, above it in the network (:func:`pipe_boundary`).
- **The next segment** (RFC 6675 s4 NextSeg, steps ``output_hole``, ``output_hole_end``
  and ``output_send`` in hdl/tcp/output.py): from max(HighRxt, SND.UNA), past the range
  that covers it, up to the next range's start.  (1) It goes if it is lost (below the
  boundary) or at SND.UNA (the first retransmission of a recovery, RFC 5681 s3.2,
  SACK or not); (2) else new data; (3) else, if a SACKed range lies above it; (4)
  else once per recovery the rescue retransmission, the last SMSS below the hole's
  end, HighRxt unchanged.
- **The window in recovery** (RFC 6675 s5, steps ``output_pipe`` .. ``output_pipe_window``):
  cwnd = ssthresh, not inflated, and what may go is cwnd - pipe.  The pipe counts each
  unSACKed byte once above the boundary ``bound`` and once more below ``rxt`` =
  max(HighRxt, SND.UNA): FlightSize - pipe = ``credit`` = (bound - rxt) + the SACKed
  bytes above ``bound`` + those below ``rxt`` (:func:`pipe_credit`).  New data goes in
  min(SND.WND, cwnd + credit) beyond SND.UNA (= cwnd - pipe beyond SND.NXT); a hole
  goes while cwnd - pipe >= SMSS (s5 (C)), one after another.  The first
  retransmission of a recovery and the one after a partial ACK (both at SND.UNA, RFC
  5681 s3.2, RFC 6582 s3.2 step 5) go outside it.
- **After a timeout** the scoreboard is cleared (RFC 6675 s5.1) and go-back-N resends
  from SND.UNA.
"""

from amaranth.hdl import Cat, Const, Mux, Signal, signed

from .seq import seq_le, seq_lt

__all__ = ["ScoreboardRegisters", "add_scoreboard_steps", "begin_merge", "clear",
           "note_first_block",
           "hole_from", "hole_end", "resent", "is_lost", "pipe_bounds", "pipe_lost",
           "pipe_boundary", "pipe_credit", "rexmit_lost", "DUP_THRESH"]

#: RFC 5681 s3.2 and RFC 6675 s2: duplicate ACKs (or SACKed segments) that mean a loss.
DUP_THRESH = 3


class ScoreboardRegisters:
    """The merge loop's registers."""

    def __init__(self, config):
        self.block = Signal(3)  # the SACK block being merged
        self.pruned = Signal()  # the ranges below SND.UNA are gone
        self.rtt_due = Signal()  # after the merge: an RTT sample (hdl/tcp/arrival.py)
        # The block being merged, clamped at SND.UNA, and what it overlaps.
        self.ok = Signal()
        self.left = Signal(32)
        self.right = Signal(32)
        self.overlaps = Signal(config.sack_ranges)
        # A duplicate ACK that did not start recovery by its count: after the merge,
        # check IsLost(SND.UNA) (``lost``; RFC 6675 s5).
        self.check_lost = Signal()
        self.lost = Signal()
        # The ACK's first SACK block reports octets the scoreboard does not hold
        # (registered in ``seg_check_seq``, read in ``seg_check_ack``).
        self.first_new = Signal()


def is_lost(e):
    """RFC 6675 s4 IsLost(SND.UNA) from the scoreboard: DupThresh discontiguous SACKed
    ranges, or more than (DupThresh - 1) * SMSS bytes SACKed.  The ranges lie in
    SND.UNA..SND.MAX, within the TX ring: their sizes are short differences."""
    t, n = e.t, e.cfg.sack_ranges
    bits = e.cfg.tx_ring_bytes.bit_length() + 1
    sizes = [Mux(t.sb[i].valid, (t.sb[i].end - t.sb[i].start)[:bits], 0) for i in range(n)]
    sacked = sum(sizes[1:], sizes[0])
    ranges = sum((t.sb[i].valid for i in range(1, n)), t.sb[0].valid.as_unsigned())
    return (sacked > (DUP_THRESH - 1) * t.snd_mss) | (ranges >= DUP_THRESH)


def note_first_block(e):
    """In ``seg_check_seq``, before ``seg_check_ack``: whether the segment's first SACK
    block (the latest segment, RFC 2018 s4) lies in SND.UNA..SND.MAX and outside every
    range the scoreboard holds, i.e. reports octets not yet SACKed.  RFC 6675 s2 counts
    such an ACK as a duplicate even if its window changed (a receiver's window grows as
    its reader catches up, and RFC 5681's same-window rule then hides the duplicates
    that would start recovery)."""
    m, t, opts = e.m, e.t, e.s.tcp_options
    left, right = opts.sack[0].left, opts.sack[0].right
    held = 0
    for i in range(e.cfg.sack_ranges):
        r = t.sb[i]
        held = held | (r.valid & seq_le(r.start, left) & seq_le(right, r.end))
    m.d.sync += e.sb.first_new.eq(
        t.sack_ok & (opts.sack_count != 0) & seq_lt(t.snd_una, right)
        & seq_le(right, t.snd_max) & seq_lt(left, right) & ~held)


def rexmit_lost(e):
    """A duplicate ACK in a recovery with SACK says the retransmission at SND.UNA is
    lost: SND.UNA went again in this recovery (it lies below HighRxt), and the ACK's
    first block (the latest segment, RFC 2018 s4) reaches DupThresh segments beyond
    SND.MAX as it was when the last hole went (``rxt_fence``), i.e. data sent after
    that retransmission has arrived: IsLost (RFC 6675 s4) for the retransmission, in
    sequence space (RACK's rule, RFC 8985 s6.2, without its timestamps).  A block
    beyond SND.MAX reports nothing sent and says nothing (as in ``sack_merge``); a
    resend already due (``rexmit_lost``) is not due again."""
    t, opts = e.t, e.s.tcp_options
    right = opts.sack[0].right
    return ((opts.sack_count != 0) & ~t.rexmit_lost & seq_lt(t.snd_una, t.high_rxt)
            & seq_le(t.rxt_fence, right) & seq_le(right, t.snd_max))


def clear(e):
    """Forget every SACKed range (a timeout, RFC 6675 s5.1; a new connection)."""
    m, t = e.m, e.t
    m.d.sync += [t.sb[i].valid.eq(0) for i in range(e.cfg.sack_ranges)]


def begin_merge(e, rtt_due):
    """In ``seg_check_ack``, an acceptable ACK: merge its SACK blocks, if any, before
    what follows (``rtt_due``: an RTT sample is next).  An ACK without blocks still
    goes through the merge's first cycle while the scoreboard holds a range, so that
    the ranges it acknowledges leave (a partial ACK that covers every SACKed range
    carries none, and a stale range would count in the pipe as SACKed)."""
    m, t, s = e.m, e.t, e.s
    held = Cat(*(t.sb[i].valid for i in range(e.cfg.sack_ranges))) != 0
    with m.If(t.sack_ok & ((s.tcp_options.sack_count != 0) | held)):
        sb = e.sb
        m.d.sync += [sb.block.eq(0), sb.pruned.eq(0), sb.rtt_due.eq(rtt_due)]
        m.next = "sack_merge"


def add_scoreboard_steps(e):
    m, t, s = e.m, e.t, e.s
    sb, n = e.sb, e.cfg.sack_ranges
    blocks = s.tcp_options.sack
    una, smax = t.snd_una, t.snd_max  # SND.UNA as this ACK left it

    with m.State("sack_merge"):
        with m.If(~sb.pruned):
            # Ranges at or below SND.UNA are acknowledged; one that straddles it starts
            # at SND.UNA.
            m.d.sync += sb.pruned.eq(1)
            for i in range(n):
                r = t.sb[i]
                with m.If(r.valid & seq_le(r.end, una)):
                    m.d.sync += r.valid.eq(0)
                with m.Elif(r.valid & seq_lt(r.start, una)):
                    m.d.sync += r.start.eq(una)
        with m.Elif(sb.block == s.tcp_options.sack_count):
            m.next = "seg_text"
            with m.If(sb.rtt_due):
                m.next = "rtt_sample"
            with m.Elif(e.cc.on):
                m.next = "cwnd_update"
            with m.Elif(sb.check_lost):
                m.d.sync += sb.lost.eq(is_lost(e))
                m.next = "sack_lost"  # hdl/tcp/recovery.py
        with m.Else():
            # The block, and which ranges it overlaps or touches (registered).
            blk = blocks[sb.block]
            left = Mux(seq_lt(blk.left, una), una, blk.left)
            right = blk.right
            m.d.sync += [
                sb.ok.eq(seq_lt(una, right) & seq_le(right, smax) & seq_lt(blk.left, right)),
                sb.left.eq(left), sb.right.eq(right),
                sb.overlaps.eq(Cat(*(t.sb[i].valid & seq_le(left, t.sb[i].end)
                                     & seq_le(t.sb[i].start, right) for i in range(n)))),
            ]
            m.next = "sack_join"

    with m.State("sack_join"):
        # The union of the block and every range it overlaps goes into the first of
        # them (or the first free place); the others are freed.
        m.next = "sack_merge"
        m.d.sync += sb.block.eq(sb.block + 1)
        start, end = sb.left, sb.right
        for i in range(n):
            r = t.sb[i]
            start = Mux(sb.overlaps[i] & seq_lt(r.start, start), r.start, start)
            end = Mux(sb.overlaps[i] & seq_lt(end, r.end), r.end, end)
        # The place: the first range it overlaps, or else the first free one.
        place = Signal(n)
        taken = 0
        for i in range(n):
            want = Mux(sb.overlaps != 0, sb.overlaps[i], ~t.sb[i].valid)
            m.d.comb += place[i].eq(want & ~taken)
            taken = taken | want
        with m.If(sb.ok):
            with m.If(place == 0):
                e.count("tcp_sack_dropped")
            for i in range(n):
                r = t.sb[i]
                with m.If(place[i]):
                    m.d.sync += [r.valid.eq(1), r.start.eq(start), r.end.eq(end)]
                with m.Elif(sb.overlaps[i]):
                    m.d.sync += r.valid.eq(0)


def hole_from(e, o):
    """Step ``output_hole``: where the next retransmission starts, max(HighRxt,
    SND.UNA) moved past the range that holds it (registered in ``o.hole``)."""
    m, t = e.m, e.t
    p = Mux(t.sack_ok & seq_lt(t.snd_una, t.high_rxt) & ~t.rexmit_lost, t.high_rxt,
            t.snd_una)
    hole = p
    for i in range(e.cfg.sack_ranges):
        r = t.sb[i]
        hole = Mux(t.sack_ok & r.valid & seq_le(r.start, p) & seq_lt(p, r.end), r.end, hole)
    m.d.sync += o.hole.eq(hole)


def hole_end(e, o):
    """Step ``output_hole_end``: where the retransmission from the hole must stop (the
    next SACKed range above it, the data's end, SND.MAX), registered in ``o.limit``;
    whether the hole is lost (``o.lost``: at SND.UNA, or below the lost boundary of
    ``output_pipe_count``, RFC 6675 s4 IsLost) and whether any SACKed range lies above
    it (``o.sacked_above``: NextSeg rule 3).  A step of its own: the minimum over the
    ranges is a chain of comparisons that, followed by the length arithmetic, was the
    core's critical path."""
    m, t = e.m, e.t
    end, above = t.snd_max, 0
    for i in range(e.cfg.sack_ranges):
        r = t.sb[i]
        here = t.sack_ok & r.valid & seq_lt(o.hole, r.start)
        end = Mux(here & seq_lt(r.start, end), r.start, end)
        above = above | here
    # The data's end (the FIN, if sent, is not data) or SND.MAX.
    data_end = Mux(seq_lt(t.snd_end, t.snd_max), t.snd_end, t.snd_max)
    lost = t.sack_ok & t.in_recovery & seq_lt(o.hole, o.pipe.bound)
    m.d.sync += [o.limit.eq(Mux(seq_lt(end, data_end), end, data_end)),
                 o.lost.eq(lost | (o.hole == t.snd_una)),
                 o.sacked_above.eq(above)]


def _size_bits(config):
    """Sizes within SND.UNA..SND.MAX, which lie in the TX ring."""
    return config.tx_ring_bytes.bit_length() + 1


class PipeRegisters:
    """The registered terms of RFC 6675's pipe and IsLost (steps ``output_pipe`` ..)."""

    def __init__(self, config):
        bits = _size_bits(config)
        n = config.sack_ranges
        self.rxt = Signal(32)  # max(HighRxt, SND.UNA): what this recovery has resent
        self.size = [Signal(bits, name=f"pipe_size{i}") for i in range(n)]
        # above[i][j]: range j lies above range i (both valid).
        self.above = [Signal(n, name=f"pipe_above{i}") for i in range(n)]
        self.lost = Signal(n)  # the hole just below range i is lost (IsLost)
        self.sacked = [Signal(bits, name=f"pipe_sacked{i}") for i in range(n)]
        self.bound = Signal(32)  # the lost boundary: the end of the highest lost range
        self.span = Signal(signed(bits + 1))  # bound - rxt
        self.upper = Signal(bits + 3)  # the SACKed bytes above the boundary
        self.lower = Signal(bits + 3)  # the SACKed bytes below ``rxt``
        self.credit = Signal(signed(bits + 4))  # FlightSize - pipe


def pipe_bounds(e, p):
    """Step ``output_pipe``: ``rxt``, each range's size, and which ranges lie above
    which (the ranges are disjoint, so comparing starts is enough)."""
    m, t = e.m, e.t
    n, bits = e.cfg.sack_ranges, _size_bits(e.cfg)
    una = t.snd_una
    m.d.sync += p.rxt.eq(Mux(seq_lt(una, t.high_rxt), t.high_rxt, una))
    for i in range(n):
        r = t.sb[i]
        m.d.sync += [
            p.size[i].eq(Mux(r.valid, (r.end - r.start)[:bits], 0)),
            p.above[i].eq(Cat(*(Const(0) if j == i else
                                (t.sb[j].valid & seq_lt(r.start, t.sb[j].start))
                                for j in range(n)))),
        ]


def pipe_lost(e, p):
    """Step ``output_pipe_sum``: IsLost (RFC 6675 s4) for the hole just below each
    range: DupThresh ranges from it upwards, or more than (DupThresh - 1) * SMSS SACKed
    from it upwards; and each range's SACKed bytes below ``rxt``."""
    m, t = e.m, e.t
    n, bits = e.cfg.sack_ranges, _size_bits(e.cfg)
    lost = []
    for i in range(n):
        r = t.sb[i]
        count = 1 + sum((p.above[i][j] for j in range(n) if j != i), Const(0, 4))
        sacked = p.size[i] + sum((Mux(p.above[i][j], p.size[j], 0)
                                  for j in range(n) if j != i), Const(0, bits + 3))
        lost.append(r.valid & ((count >= DUP_THRESH)
                               | (sacked > (DUP_THRESH - 1) * t.snd_mss)))
        top = Mux(seq_lt(r.end, p.rxt), r.end, p.rxt)
        m.d.sync += p.sacked[i].eq(Mux(r.valid & seq_lt(r.start, p.rxt),
                                       (top - r.start)[:bits], 0))
    m.d.sync += p.lost.eq(Cat(*lost))


def pipe_boundary(e, p):
    """Step ``output_pipe_count``: the lost boundary, the end of the highest range with
    a lost hole below it (IsLost is monotone: every range below a lost one is lost too,
    so the highest is the one with no lost range above it; none: SND.UNA); unSACKed
    bytes above it are in the network, below it lost.  The SACKed bytes above it are
    those of the ranges that are not lost."""
    m, t = e.m, e.t
    n = e.cfg.sack_ranges
    bound = t.snd_una
    for i in range(n):
        top = p.lost[i] & ((p.above[i] & p.lost) == 0)
        bound = Mux(top, t.sb[i].end, bound)
    upper = sum((Mux(p.lost[j], 0, p.size[j]) for j in range(n)),  # size 0: not valid
                Const(0, len(p.upper)))
    m.d.sync += [
        p.bound.eq(bound),
        p.span.eq((bound - p.rxt)[:len(p.span)].as_signed()),
        p.upper.eq(upper),
        p.lower.eq(sum(p.sacked, Const(0, len(p.lower)))),
    ]


def pipe_credit(e, p):
    """Step ``output_pipe_credit``: FlightSize - pipe.  RFC 6675's pipe counts each
    unSACKed byte once if it is not lost (above the boundary) and once more if this
    recovery resent it (below ``rxt``): pipe = (SND.NXT - bound - upper) + (rxt -
    SND.UNA - lower), so FlightSize - pipe = (bound - rxt) + upper + lower."""
    e.m.d.sync += p.credit.eq(p.span + p.upper + p.lower)


def resent(e, o, length):
    """In the retransmission: HighRxt moves to the end of what went (not for the rescue
    retransmission, RFC 6675 s4 NextSeg rule 4).  In a recovery with SACK the next hole
    is looked for at once (RFC 6675 s5 (C): while cwnd - pipe allows), within the
    pipe."""
    m, t = e.m, e.t
    end = (o.hole + length)[:32]
    # A lost retransmission resent at SND.UNA leaves HighRxt where it was.
    keep = o.rescue | (t.rexmit_lost & seq_lt(end, t.high_rxt))
    m.d.sync += t.high_rxt.eq(Mux(keep, t.high_rxt, end))
    with m.If(~o.rescue):
        m.d.sync += t.rxt_fence.eq(t.snd_max + DUP_THRESH * t.snd_mss)
    m.d.sync += t.rexmit_dup.eq(0)
    with m.If(t.sack_ok & t.in_recovery):
        m.d.sync += [t.rexmit.eq(1), t.rexmit_dup.eq(1)]
