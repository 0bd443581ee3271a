"""Retransmission timeout estimator: RFC 6298 s2 (SRTT, RTTVAR, RTO) and s5.5 (back-off).

Times are microseconds of the engine's time base (``now`` in :mod:`hdl.csr`, one tick per
microsecond), so the clock granularity G of RFC 6298 s2 is one tick: 1 us.

Fixed-point representation (Jacobson, "Congestion Avoidance and Control", 1988, appendix A;
Linux ``tcp_rtt_estimator``): the smoothed RTT is kept with 3 fraction bits and the RTT
variance with 2, so that the gains alpha = 1/8 and beta = 1/4 of RFC 6298 s2.3 become
shifts and no precision is lost to them in the stored value:

- ``srtt``   = 8 * SRTT   (:data:`SRTT_BITS` = 35 bits: 32 integer + 3 fraction)
- ``rttvar`` = 4 * RTTVAR (:data:`RTTVAR_BITS` = 34 bits: 32 integer + 2 fraction)

Both widths hold every value the update can produce from any 32-bit RTT (the averages
never exceed the largest sample), so nothing wraps or saturates.
"""

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "RtoEstimator", "RtoBackoff", "rto_sample_layout", "rto_estimate_layout",
    "SRTT_FRAC_BITS", "RTTVAR_FRAC_BITS", "SRTT_BITS", "RTTVAR_BITS",
    "INITIAL_RTO_US", "MIN_RTO_US", "MAX_RTO_US", "RTO_LATENCY",
]

TIME_BITS = 32
SRTT_FRAC_BITS = 3  # SRTT scaled by 1/alpha = 8
RTTVAR_FRAC_BITS = 2  # RTTVAR scaled by 1/beta = 4
SRTT_BITS = TIME_BITS + SRTT_FRAC_BITS
RTTVAR_BITS = TIME_BITS + RTTVAR_FRAC_BITS

INITIAL_RTO_US = 1_000_000  # RFC 6298 s2.1: RTO <- 1 second before any measurement
MIN_RTO_US = 1_000_000  # RFC 6298 s2.4: RTO below 1 second SHOULD be rounded up to 1 second
MAX_RTO_US = 60_000_000  # RFC 6298 s2.5: a maximum MAY be placed on RTO, at least 60 seconds

RTO_LATENCY = 3  # clock edges from a ``sample`` transfer to the earliest ``estimate`` transfer

rto_sample_layout = data.StructLayout({
    "rtt_us": TIME_BITS,
    "srtt": SRTT_BITS,
    "rttvar": RTTVAR_BITS,
    "first": 1,
})

rto_estimate_layout = data.StructLayout({
    "srtt": SRTT_BITS,
    "rttvar": RTTVAR_BITS,
    "rto": TIME_BITS,
})


class RtoEstimator(wiring.Component):
    """Folds one RTT measurement into a connection's SRTT and RTTVAR and computes its RTO.

    The estimator holds no per-connection state: the engine reads SRTT and RTTVAR from the
    connection's TCB, sends them here with the new measurement R, and writes the returned
    values back.  Samples from any mix of connections may be streamed back to back; the
    estimates come out in the same order.

    With ``srtt`` = 8 * SRTT and ``rttvar`` = 4 * RTTVAR (see the module docstring), the
    rules of RFC 6298 become, in integers:

    - s2.2, first measurement (``first``): SRTT <- R, RTTVAR <- R/2, so
      ``srtt = 8 R`` and ``rttvar = 2 R`` (exact).
    - s2.3, later measurements R': RTTVAR <- (1 - beta) RTTVAR + beta |SRTT - R'| with
      beta = 1/4, using the value of SRTT from *before* its own update ("the value of SRTT
      used in the update to RTTVAR is its value before updating SRTT itself ... updating
      RTTVAR and SRTT MUST be computed in the above order"), then
      SRTT <- (1 - alpha) SRTT + alpha R' with alpha = 1/8::

          rttvar' = rttvar - (rttvar >> 2) + (|srtt - 8 R'| >> 3)
          srtt'   = srtt - (srtt >> 3) + R'

      ``|srtt - 8 R'| >> 3`` is |SRTT - R'| in whole microseconds, taken from the exact
      SRTT with its fraction bits.  Truncating the subtracted shifts rounds the kept
      part of each average up; against the exact real-valued recurrence the stored SRTT
      is within [0, 7/8) us and RTTVAR within (-15/8, 13/8) us, whatever the history.
    - s2.2/s2.3: RTO <- SRTT + max(G, K * RTTVAR) with K = 4 and G = 1 tick (1 us).
      K * RTTVAR is ``rttvar`` itself in microseconds; SRTT is rounded up to a whole
      microsecond, so the timer never fires before the fixed-point RTO::

          rto = ((srtt + 7) >> 3) + max(1, rttvar)

    - s2.4: an RTO below ``min_rto_us`` (default 1 s) is rounded up to it.
    - s2.5: an RTO above ``max_rto_us`` (default 60 s) is cut down to it.

    The engine applies the rest: Karn's algorithm (s3: no samples from retransmitted
    segments), the initial RTO (s2.1, the ``initial_rto`` port), the back-off of s5.5
    (:class:`RtoBackoff`) and the 3 s RTO after a SYN timed out (s5.7, in the engine).

    Latency: 3 cycles (:data:`RTO_LATENCY`).  A sample that transfers on clock edge t
    passes stage 1 (SRTT, and RTTVAR's kept part) on that edge, stage 2 (RTTVAR's
    deviation term) on edge t + 1 and stage 3 (RTO, floor and cap: the output register)
    on edge t + 2, so its estimate transfers on edge t + 3 at the earliest.  No stage
    has more than two carry chains in series.  A new sample is taken every cycle while
    the output is not stalled.

    Ports
    -----
    sample : In(stream)
        ``rtt_us``: the measurement R (us); ``srtt``: 8 * SRTT and ``rttvar``: 4 * RTTVAR
        from the TCB (ignored when ``first``); ``first``: the connection has no RTT
        measurement yet (RFC 6298 s2.2).
    estimate : Out(stream)
        ``srtt``, ``rttvar`` (same scaling) to store back into the TCB, and ``rto``:
        the new retransmission timeout (us).
    initial_rto : Out
        Constant ``initial_rto_us``: the RTO of a connection before its first
        measurement (RFC 6298 s2.1).
    """

    def __init__(self, min_rto_us: int = MIN_RTO_US, max_rto_us: int = MAX_RTO_US,
                 initial_rto_us: int = INITIAL_RTO_US):
        if not 0 <= min_rto_us <= max_rto_us < 2**TIME_BITS:
            raise ValueError(f"need 0 <= min_rto_us <= max_rto_us < 2**{TIME_BITS}")
        if not min_rto_us <= initial_rto_us <= max_rto_us:
            raise ValueError("initial_rto_us must lie between min_rto_us and max_rto_us")
        self.min_rto_us = min_rto_us
        self.max_rto_us = max_rto_us
        self.initial_rto_us = initial_rto_us
        super().__init__({
            "sample": In(stream.Signature(rto_sample_layout)),
            "estimate": Out(stream.Signature(rto_estimate_layout)),
            "initial_rto": Out(TIME_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.initial_rto.eq(self.initial_rto_us)

        # Each stage takes a new value when it is empty or its own value moves on.
        s1_valid = Signal()
        s2_valid = Signal()
        s1_take = Signal()
        s2_take = Signal()
        s3_take = Signal()
        m.d.comb += [
            s3_take.eq(~self.estimate.valid | self.estimate.ready),
            s2_take.eq(~s2_valid | s3_take),
            s1_take.eq(~s1_valid | s2_take),
            self.sample.ready.eq(s1_take),
        ]

        # Stage 1: SRTT, and the parts of RTTVAR that do not need |SRTT - R'| (s2.2, s2.3).
        p = self.sample.p
        r = p.rtt_us
        r8 = Cat(Const(0, SRTT_FRAC_BITS), r)  # R with SRTT's scaling
        s1_srtt = Signal(SRTT_BITS)
        s1_kept_rttvar = Signal(RTTVAR_BITS)  # (1 - beta) * RTTVAR, scaled
        s1_error = Signal(signed(SRTT_BITS + 1))  # 8 * (SRTT - R'), SRTT before its update
        with m.If(s1_take):
            m.d.sync += s1_valid.eq(self.sample.valid)
            with m.If(p.first):
                m.d.sync += [
                    s1_srtt.eq(r8),  # s2.2: SRTT <- R
                    s1_kept_rttvar.eq(Cat(Const(0, RTTVAR_FRAC_BITS - 1), r)),  # RTTVAR <- R/2
                    s1_error.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    s1_srtt.eq(p.srtt - (p.srtt >> SRTT_FRAC_BITS) + r),
                    s1_kept_rttvar.eq(p.rttvar - (p.rttvar >> RTTVAR_FRAC_BITS)),
                    s1_error.eq(p.srtt - r8),
                ]

        # Stage 2: RTTVAR += beta * |SRTT - R'| (s2.3); SRTT rounded up to a microsecond.
        s2_srtt = Signal(SRTT_BITS)
        s2_rttvar = Signal(RTTVAR_BITS)
        s2_srtt_us = Signal(TIME_BITS + 1)
        s2_rttvar_zero = Signal()  # found beside the addition, off stage 3's path
        scale = 2**SRTT_FRAC_BITS
        with m.If(s2_take):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_srtt.eq(s1_srtt),
                s2_rttvar.eq(s1_kept_rttvar + (abs(s1_error) >> SRTT_FRAC_BITS)),
                s2_srtt_us.eq((s1_srtt + (scale - 1)) >> SRTT_FRAC_BITS),
                s2_rttvar_zero.eq((s1_kept_rttvar == 0) & (s1_error > -scale)
                                  & (s1_error < scale)),
            ]

        # Stage 3: RTO <- SRTT + max(G, K*RTTVAR), then the floor and cap (s2.4, s2.5).
        k_rttvar = Signal(RTTVAR_BITS)
        m.d.comb += k_rttvar.eq(s2_rttvar)  # K * RTTVAR = 4 * RTTVAR = rttvar (us)
        with m.If(s2_rttvar_zero):
            m.d.comb += k_rttvar.eq(1)  # G = 1 tick
        raw_rto = Signal(RTTVAR_BITS + 1)
        m.d.comb += raw_rto.eq(s2_srtt_us + k_rttvar)
        with m.If(s3_take):
            m.d.sync += [
                self.estimate.valid.eq(s2_valid),
                self.estimate.p.srtt.eq(s2_srtt),
                self.estimate.p.rttvar.eq(s2_rttvar),
            ]
            with m.If(raw_rto < self.min_rto_us):
                m.d.sync += self.estimate.p.rto.eq(self.min_rto_us)
            with m.Elif(raw_rto > self.max_rto_us):
                m.d.sync += self.estimate.p.rto.eq(self.max_rto_us)
            with m.Else():
                m.d.sync += self.estimate.p.rto.eq(raw_rto)
        return m


class RtoBackoff(wiring.Component):
    """Back-off of the retransmission timer: RFC 6298 s5.5 and s2.5 (combinational).

    s5.5: when the retransmission timer expires, "the host MUST set RTO <- RTO * 2 ('back
    off the timer').  The maximum value discussed in (2.5) above may be used to provide
    an upper bound to this doubling operation."  After ``shift`` consecutive expiries the
    timer runs for ``min(rto << shift, max_rto_us)``.  The engine keeps the RTO from the
    last estimate and the count of expiries since, and asks this helper for the timer
    value; a new RTT sample gives a new RTO from s2 and the count starts again (RFC 6298
    s5, the note after rule 5.7: the new RTO may "collapse" the backed-off one).

    Ports
    -----
    rto : In
        The RTO from the last estimate (us).
    shift : In
        Number of back-offs (expiries of the timer for the same segment).
    backed_off : Out
        ``min(rto * 2**shift, max_rto_us)`` (us).
    """

    def __init__(self, max_rto_us: int = MAX_RTO_US, shift_bits: int = 5):
        if not 0 <= max_rto_us < 2**TIME_BITS:
            raise ValueError(f"need 0 <= max_rto_us < 2**{TIME_BITS}")
        self.max_rto_us = max_rto_us
        super().__init__({
            "rto": In(TIME_BITS),
            "shift": In(shift_bits),
            "backed_off": Out(TIME_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        # Any non-zero RTO shifted by 32 or more exceeds every 32-bit cap.
        shift = Signal(range(TIME_BITS + 1))
        with m.If(self.shift > TIME_BITS):
            m.d.comb += shift.eq(TIME_BITS)
        with m.Else():
            m.d.comb += shift.eq(self.shift)
        wide = Signal(2 * TIME_BITS)
        m.d.comb += wide.eq(self.rto << shift)
        with m.If(wide > self.max_rto_us):
            m.d.comb += self.backed_off.eq(self.max_rto_us)
        with m.Else():
            m.d.comb += self.backed_off.eq(wide)
        return m
