"""Unit tests of hdl/tcp/rto.py (RtoEstimator, RtoBackoff) against plain-Python models.

The reference below is written from RFC 6298 and the fixed-point representation that the
estimator's docstring documents (SRTT kept as 8 * SRTT, RTTVAR as 4 * RTTVAR, times in
microseconds, clock granularity G = 1 us):

- s2.1: before any measurement RTO is 1 s (``initial_rto``).
- s2.2: first measurement R: SRTT <- R, RTTVAR <- R/2.
- s2.3: later measurement R': RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'| with the SRTT from
  before its update, then SRTT <- 7/8 SRTT + 1/8 R'.  In the scaled integers the kept
  part of each average (7/8 of 8 * SRTT, 3/4 of 4 * RTTVAR) is rounded up, |SRTT - R'| is
  rounded down to whole microseconds.
- s2.2/s2.3: RTO <- SRTT + max(G, K * RTTVAR), K = 4, SRTT rounded up to a microsecond.
- s2.4: RTO below the minimum (1 s) is rounded up to it; s2.5: a maximum (60 s) caps it.
- s5.5: each expiry doubles RTO, bounded by the s2.5 maximum.

The gateware is driven the way the engine uses it: every connection's SRTT and RTTVAR
live outside the estimator and are fed back with each sample, and samples of different
connections are interleaved so the pipeline stays full.  A separate exact model (Python
``Fraction`` arithmetic, the RFC's real-valued recurrence) bounds the fixed-point error.
"""

import gc
import random
import warnings
from collections import deque
from fractions import Fraction

import pytest
from amaranth.back import verilog
from amaranth_helpers import run

from toe.hdl.tcp.rto import (
    INITIAL_RTO_US,
    MAX_RTO_US,
    MIN_RTO_US,
    RTO_LATENCY,
    RTTVAR_BITS,
    SRTT_BITS,
    RtoBackoff,
    RtoEstimator,
)

SEED = 6298
MAX_TIME = 2**32 - 1


class RtoReference:
    """RFC 6298 s2 estimator in the fixed point of hdl/tcp/rto.py, in plain Python.

    ``update`` takes the stored ``srtt`` (8 * SRTT) and ``rttvar`` (4 * RTTVAR) and a
    measurement ``rtt`` in microseconds and returns the new ``(srtt, rttvar, rto)``.
    """

    def __init__(self, min_rto: int = MIN_RTO_US, max_rto: int = MAX_RTO_US):
        self.min_rto = min_rto
        self.max_rto = max_rto

    @staticmethod
    def _ceil_div(a: int, b: int) -> int:
        return -(-a // b)

    def update(self, rtt: int, srtt: int = 0, rttvar: int = 0, first: bool = False):
        if first:
            srtt, rttvar = 8 * rtt, 2 * rtt  # s2.2: SRTT <- R, RTTVAR <- R/2
        else:
            deviation = abs(srtt - 8 * rtt) // 8  # |SRTT - R'| (old SRTT), whole us
            rttvar = self._ceil_div(3 * rttvar, 4) + deviation  # s2.3, beta = 1/4
            srtt = self._ceil_div(7 * srtt, 8) + rtt  # s2.3, alpha = 1/8
        rto = self._ceil_div(srtt, 8) + max(1, rttvar)  # SRTT + max(G, K*RTTVAR)
        rto = min(max(rto, self.min_rto), self.max_rto)  # s2.4 floor, s2.5 cap
        return srtt, rttvar, rto


class ExactRto:
    """RFC 6298 s2.2/s2.3 in exact rational arithmetic (no fixed point, no floor or cap)."""

    def __init__(self):
        self.srtt = self.rttvar = None

    def update(self, rtt: int):
        r = Fraction(rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
        else:
            self.rttvar = Fraction(3, 4) * self.rttvar + Fraction(1, 4) * abs(self.srtt - r)
            self.srtt = Fraction(7, 8) * self.srtt + Fraction(1, 8) * r
        return self.srtt, self.rttvar, self.srtt + max(1, 4 * self.rttvar)


def random_rtt(rng: random.Random, regime: str) -> int:
    if regime == "tiny":
        return rng.randrange(0, 16)
    if regime == "lan":
        return rng.randrange(10, 2_000)
    if regime == "wan":
        return rng.randrange(1_000, 2_000_000)
    if regime == "huge":
        return rng.randrange(2**31, 2**32)
    return rng.randrange(0, 2**32)  # "any"


def random_sequences(rng: random.Random, count: int, max_len: int = 8):
    """``count`` sample sequences ``(start, rtts)``.

    Most start with a first measurement (``start`` None); some start from an arbitrary
    stored state anywhere in the field widths, to reach the extremes of the datapath.
    Within a sequence the RTT regime may change from sample to sample (jumps between tiny
    and huge RTTs stress the deviation term).
    """
    regimes = ["tiny", "lan", "wan", "huge", "any"]
    sequences = []
    for _ in range(count):
        length = rng.randint(1, max_len)
        if rng.random() < 0.5:
            regime = rng.choice(regimes)
            rtts = [random_rtt(rng, regime) for _ in range(length)]
        else:
            rtts = [random_rtt(rng, rng.choice(regimes)) for _ in range(length)]
        start = None
        if rng.random() < 0.15:
            extreme = rng.choice([0, 2**SRTT_BITS - 1, 8 * MAX_TIME])
            start = (rng.choice([extreme, rng.randrange(2**SRTT_BITS)]),
                     rng.choice([0, 2**RTTVAR_BITS - 1, rng.randrange(2**RTTVAR_BITS)]))
        sequences.append((start, rtts))
    return sequences


def drive_sequences(dut, sequences, rng, ready_prob=0.85, valid_prob=0.9):
    """Run ``sequences`` through ``dut`` like an engine with one TCB per sequence.

    A sequence's next sample goes in once its previous estimate has come back (its new
    SRTT and RTTVAR are the next sample's inputs); sequences waiting for their turn are
    served round-robin.  Returns, per sequence, the list of ``(sample, estimate)``.
    """
    log = [[] for _ in sequences]
    waiting = deque(range(len(sequences)))
    state = [(start, 0) for start, _ in sequences]  # (stored srtt/rttvar or None, index)
    in_flight = deque()

    async def bench(ctx):
        offered = None
        while waiting or in_flight or offered is not None:
            if offered is None and waiting and rng.random() < valid_prob:
                i = waiting.popleft()
                stored, k = state[i]
                rtt = sequences[i][1][k]
                srtt, rttvar = stored if stored is not None else (0, 0)
                offered = (i, {"rtt_us": rtt, "srtt": srtt, "rttvar": rttvar,
                               "first": int(stored is None)})
            ctx.set(dut.sample.valid, int(offered is not None))
            if offered is not None:
                ctx.set(dut.sample.p, offered[1])
            ctx.set(dut.estimate.ready, int(rng.random() < ready_prob))
            _, _, s_ready, e_valid, e_ready, e_p = await ctx.tick().sample(
                dut.sample.ready, dut.estimate.valid, dut.estimate.ready, dut.estimate.p)
            if e_valid and e_ready:
                assert in_flight, "estimate without a sample"
                i, sample = in_flight.popleft()
                estimate = (e_p.srtt, e_p.rttvar, e_p.rto)
                log[i].append((sample, estimate))
                _, k = state[i]
                state[i] = (estimate[:2], k + 1)
                if k + 1 < len(sequences[i][1]):
                    waiting.append(i)
            if offered is not None and s_ready:
                in_flight.append(offered)
                offered = None

    run(dut, bench)
    return log


def check_against_reference(sequences, log, reference):
    for (start, rtts), entries in zip(sequences, log, strict=True):
        assert len(entries) == len(rtts)
        stored = start
        for rtt, (sample, estimate) in zip(rtts, entries, strict=True):
            assert sample["rtt_us"] == rtt
            if stored is None:
                expected = reference.update(rtt, first=True)
            else:
                expected = reference.update(rtt, *stored)
            assert estimate == expected, (start, rtts, sample, estimate, expected)
            stored = estimate[:2]


def test_estimates_match_reference_model_on_random_sequences():
    """RFC 6298 s2.2, s2.3, s2.4, s2.5: 2000 random sample sequences, bit-exact.

    Tiny (0..15 us), LAN, WAN and huge (2**31..2**32-1 us) RTTs, mixed within sequences,
    some starting from arbitrary stored states; default 1 s floor and 60 s cap.  Samples
    of different sequences interleave in the pipeline, with random gaps on the input and
    backpressure on the output.
    """
    rng = random.Random(SEED)
    sequences = random_sequences(rng, 2000)
    dut = RtoEstimator()
    log = drive_sequences(dut, sequences, rng)
    check_against_reference(sequences, log, RtoReference())


def test_unclamped_rto_matches_formula():
    """RFC 6298 s2.2/s2.3: RTO = SRTT + max(G, K*RTTVAR) over the full 32-bit range.

    With the floor at 0 and the cap at 2**32 - 1 the raw formula is visible for every
    RTT, including RTO = 1 (G) for a zero RTT and the cap for huge ones.
    """
    rng = random.Random(SEED + 1)
    sequences = random_sequences(rng, 300)
    sequences.append((None, [0, 0, 0]))
    dut = RtoEstimator(min_rto_us=0, max_rto_us=MAX_TIME, initial_rto_us=0)
    log = drive_sequences(dut, sequences, rng)
    reference = RtoReference(min_rto=0, max_rto=MAX_TIME)
    check_against_reference(sequences, log, reference)
    assert [estimate for _, estimate in log[-1]] == [(0, 0, 1)] * 3  # G = 1 tick


def test_first_measurement_sets_srtt_r_and_rttvar_half_r():
    """RFC 6298 s2.2: SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max(G, 4*RTTVAR) = 3R."""
    sequences = [(None, [400_000]), (None, [1]), (None, [30_000_000]), (None, [MAX_TIME])]
    log = drive_sequences(RtoEstimator(), sequences, random.Random(1), 1.0, 1.0)
    estimates = [entries[0][1] for entries in log]
    assert estimates[0] == (8 * 400_000, 2 * 400_000, 1_200_000)
    assert estimates[1] == (8, 2, MIN_RTO_US)  # s2.4: rounded up to 1 s
    assert estimates[2] == (8 * 30_000_000, 2 * 30_000_000, MAX_RTO_US)  # s2.5 cap
    assert estimates[3] == (8 * MAX_TIME, 2 * MAX_TIME, MAX_RTO_US)


def test_later_measurement_uses_old_srtt_for_rttvar():
    """RFC 6298 s2.3: RTTVAR is updated with |SRTT - R'| from before SRTT's update.

    SRTT = 100 ms, RTTVAR = 0, R' = 500 ms: RTTVAR = 1/4 * 400 ms = 100 ms and
    SRTT = 150 ms (with the new SRTT the deviation would be 350 ms).
    """
    start = (8 * 100_000, 0)
    dut = RtoEstimator(min_rto_us=0)
    log = drive_sequences(dut, [(start, [500_000])], random.Random(1), 1.0, 1.0)
    srtt, rttvar, rto = log[0][0][1]
    assert (srtt, rttvar) == (8 * 150_000, 4 * 100_000)
    assert rto == 150_000 + 4 * 100_000  # SRTT + K*RTTVAR (no floor here)


def test_fixed_point_tracks_exact_rfc_recurrence():
    """RFC 6298 s2.2/s2.3: the scaled integers stay within their rounding bounds.

    Errors against exact arithmetic: SRTT in [0, 7/8) us (only the kept 7/8 is rounded
    up, each step adds < 7/8 of a 1/8 us unit and the error decays by 7/8); RTTVAR within
    (-15/8, 13/8) us; the unclamped RTO within (-7.5, 8.375) us.  Pure Python: the
    gateware is bit-exact with the reference by the tests above.
    """
    rng = random.Random(SEED + 2)
    reference = RtoReference(min_rto=0, max_rto=2**40)
    for _ in range(1000):
        exact = ExactRto()
        srtt = rttvar = None
        regime = rng.choice(["tiny", "lan", "wan", "huge", "any"])
        for k in range(rng.randint(1, 60)):
            rtt = random_rtt(rng, regime if rng.random() < 0.8 else "any")
            if k == 0:
                srtt, rttvar, rto = reference.update(rtt, first=True)
            else:
                srtt, rttvar, rto = reference.update(rtt, srtt, rttvar)
            e_srtt, e_rttvar, e_rto = exact.update(rtt)
            assert 0 <= Fraction(srtt, 8) - e_srtt < Fraction(7, 8)
            assert Fraction(-15, 8) < Fraction(rttvar, 4) - e_rttvar < Fraction(13, 8)
            assert Fraction(-15, 2) < rto - e_rto < Fraction(67, 8)
            assert srtt < 2**SRTT_BITS and rttvar < 2**RTTVAR_BITS


def test_latency_is_three_cycles_and_throughput_one_per_cycle():
    """Docstring contract: a sample's estimate transfers 3 edges after the sample; with
    the output always ready a sample is taken every cycle (RFC 6298 s2.2 per sample)."""
    dut = RtoEstimator()
    reference = RtoReference()
    rtts = [1000 * (k + 1) for k in range(10)]

    async def bench(ctx):
        ctx.set(dut.estimate.ready, 1)
        assert ctx.get(dut.sample.ready) and not ctx.get(dut.estimate.valid)
        results = []
        for k in range(len(rtts) + RTO_LATENCY + 2):
            if k < len(rtts):
                ctx.set(dut.sample.valid, 1)
                ctx.set(dut.sample.p, {"rtt_us": rtts[k], "srtt": 0, "rttvar": 0, "first": 1})
            else:
                ctx.set(dut.sample.valid, 0)
            _, _, s_ready, e_valid, e_p = await ctx.tick().sample(
                dut.sample.ready, dut.estimate.valid, dut.estimate.p)
            assert s_ready
            if e_valid:
                results.append((k, (e_p.srtt, e_p.rttvar, e_p.rto)))
        # Sample k transfers on edge k and its estimate on edge k + RTO_LATENCY.
        assert [c for c, _ in results] == [k + RTO_LATENCY for k in range(len(rtts))]
        assert [e for _, e in results] == [reference.update(r, first=True) for r in rtts]

    run(dut, bench)


def test_backpressure_holds_estimate_and_stalls_input():
    """Stream contract: a stalled estimate stays valid and unchanged; the pipeline fills
    (three samples, one per stage) and then refuses more until the output drains."""
    dut = RtoEstimator()
    reference = RtoReference()

    async def bench(ctx):
        ctx.set(dut.estimate.ready, 0)
        taken = 0
        for _ in range(5):
            ctx.set(dut.sample.valid, 1)
            ctx.set(dut.sample.p, {"rtt_us": 100 + taken, "srtt": 0, "rttvar": 0, "first": 1})
            _, _, s_ready = await ctx.tick().sample(dut.sample.ready)
            taken += s_ready
        assert taken == RTO_LATENCY
        assert ctx.get(dut.estimate.valid)
        first = ctx.get(dut.estimate.p)
        assert (first.srtt, first.rttvar, first.rto) == reference.update(100, first=True)
        ctx.set(dut.sample.valid, 0)
        ctx.set(dut.estimate.ready, 1)
        seen = []
        for _ in range(4):
            _, _, e_valid, e_p = await ctx.tick().sample(dut.estimate.valid, dut.estimate.p)
            if e_valid:
                seen.append(e_p.srtt)
        assert seen == [8 * (100 + k) for k in range(RTO_LATENCY)]

    run(dut, bench)


def test_initial_rto_is_one_second_and_configurable():
    """RFC 6298 s2.1: RTO <- 1 second until the first measurement (a parameter)."""
    for dut, expected in [(RtoEstimator(), 1_000_000),
                          (RtoEstimator(initial_rto_us=3_000_000), 3_000_000)]:
        async def bench(ctx, dut=dut, expected=expected):
            assert ctx.get(dut.initial_rto) == expected

        run(dut, bench, clock=False)
    assert INITIAL_RTO_US == 1_000_000


def test_floor_and_cap_are_parameters():
    """RFC 6298 s2.4 (floor, default 1 s) and s2.5 (cap, default 60 s) as parameters."""
    dut = RtoEstimator(min_rto_us=200_000, max_rto_us=120_000_000, initial_rto_us=1_000_000)
    sequences = [(None, [1_000]), (None, [39_000_000]), (None, [50_000_000])]
    log = drive_sequences(dut, sequences, random.Random(2), 1.0, 1.0)
    assert [entries[0][1][2] for entries in log] == [200_000, 117_000_000, 120_000_000]
    # At the boundaries: SRTT = R' = a and RTTVAR = 0 keep the state and give RTO = a + G.
    edges = [MIN_RTO_US - 2, MIN_RTO_US - 1, MIN_RTO_US, MAX_RTO_US - 1, MAX_RTO_US,
             MAX_RTO_US + 1]
    log = drive_sequences(RtoEstimator(), [((8 * a, 0), [a]) for a in edges],
                          random.Random(3), 1.0, 1.0)
    assert [entries[0][1][2] for entries in log] == [
        MIN_RTO_US, MIN_RTO_US, MIN_RTO_US + 1, MAX_RTO_US, MAX_RTO_US, MAX_RTO_US]
    with warnings.catch_warnings():  # the half-built components are never elaborated
        warnings.simplefilter("ignore")
        for bad in [{"min_rto_us": 2_000_000, "max_rto_us": 1_000_000},
                    {"max_rto_us": 2**32}, {"initial_rto_us": 61_000_000}]:
            with pytest.raises(ValueError):
                RtoEstimator(**bad)
        gc.collect()


def test_backoff_doubles_per_expiry_up_to_cap():
    """RFC 6298 s5.5: RTO <- RTO * 2 on each expiry, bounded by the s2.5 maximum."""
    rng = random.Random(SEED + 3)
    dut = RtoBackoff()
    cases = [(1_000_000, n) for n in range(32)] + [(0, 31), (MAX_TIME, 0), (MAX_TIME, 1)]
    cases += [(rng.randrange(2**32), rng.randrange(32)) for _ in range(500)]
    cases += [(rng.randrange(1, 2**rng.randint(1, 26)), rng.randrange(32)) for _ in range(500)]

    wide = RtoBackoff(max_rto_us=MAX_TIME, shift_bits=7)  # shifts past the 32-bit width
    wide_cases = [(1, n) for n in range(128)] + [(0, 127), (MAX_TIME, 127)]
    wide_cases += [(rng.randrange(2**32), rng.randrange(128)) for _ in range(300)]

    def bench_for(dut, cases, cap):
        async def bench(ctx):
            for rto, shift in cases:
                ctx.set(dut.rto, rto)
                ctx.set(dut.shift, shift)
                assert ctx.get(dut.backed_off) == min(rto << shift, cap), (rto, shift)
        return bench

    run(dut, bench_for(dut, cases, MAX_RTO_US), clock=False)
    run(wide, bench_for(wide, wide_cases, MAX_TIME), clock=False)
    assert [min(1_000_000 << n, MAX_RTO_US) for n in range(7)] == [
        1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000, 32_000_000, 60_000_000]


def test_components_elaborate_to_verilog():
    """Synthesizable: both components convert to Verilog with their stream ports."""
    text = verilog.convert(RtoEstimator(), name="rto_estimator")
    for port in ["sample__valid", "sample__ready", "sample__payload", "estimate__valid",
                 "estimate__payload", "initial_rto"]:
        assert port in text
    text = verilog.convert(RtoBackoff(), name="rto_backoff")
    assert "backed_off" in text
