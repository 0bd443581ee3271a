"""CongestionControl with CUBIC (hdl/tcp/cc_cubic.py) at its own ports, against RFC 9438
computed in plain Python with real numbers.

Every test puts the algorithm straight into the state under test through the request's
``state`` (an epoch under way with a chosen W_max and K, or none yet) and reads the
result's cwnd, ssthresh and state.  The RFC's quantities are in segments and seconds;
the gateware's in bytes and units of 1.024 ms (hdl/tcp/cc_cubic.py), so the reference
converts.  Cycle counts (request taken to result valid) are printed and bounded.
"""

import pytest
from amaranth_helpers import run

from toe.hdl.config import ToeConfig
from toe.hdl.tcp.cc_cubic import U_US, Cubic
from toe.hdl.tcp.congestion import SSTHRESH_MAX, CcEvent, CongestionControl

SMSS = 1448
C = 0.4
BETA = 0.7
U_PER_S = 1e6 / U_US


def k_seconds(w_max_seg: float, cwnd_seg: float) -> float:
    """RFC 9438 eq. 2: K = cbrt((W_max - cwnd_epoch) / C)."""
    return ((w_max_seg - cwnd_seg) / C) ** (1 / 3)


def w_cubic_seg(t_s: float, k_s: float, w_max_seg: float) -> float:
    """RFC 9438 eq. 1: W_cubic(t) = C * (t - K)^3 + W_max."""
    return C * (t_s - k_s) ** 3 + w_max_seg


def state_value(**fields) -> int:
    layout = Cubic.state_layout
    value = 0
    for name, v in fields.items():
        field = layout[name]
        value |= (v & ((1 << field.width) - 1)) << field.offset
    return value


def state_fields(value: int) -> dict:
    layout = Cubic.state_layout
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def request(dut, requests, congestion="cubic"):
    """Send each request dict to ``dut``; return [(result dict, cycles)]."""
    results = []

    async def bench(ctx):
        for req in requests:
            fields = {"event": CcEvent.ACK, "acked": SMSS, "flight": 0, "smss": SMSS,
                      "cwnd": 10 * SMSS, "ssthresh": SSTHRESH_MAX, "state": 0, "repeat": 0,
                      "syn_lost": 0, "now": 0, "srtt_us": 0, "algo": 0, **req}
            ctx.set(dut.request.valid, 1)
            ctx.set(dut.request.payload, fields)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            ctx.set(dut.result.ready, 1)
            cycles = 0
            while True:
                cycles += 1
                _, _, valid, payload = await ctx.tick().sample(dut.result.valid,
                                                               dut.result.payload)
                if valid:
                    break
                assert cycles < 200, "no result"
            ctx.set(dut.result.ready, 0)
            results.append(({"cwnd": payload.cwnd, "ssthresh": payload.ssthresh,
                             "state": int(payload.state)}, cycles))

    run(dut, bench)
    return results


def cubic(congestion="cubic"):
    return CongestionControl(ToeConfig(congestion=congestion))


def test_epoch_start_finds_k():
    """RFC 9438 s4.2 eq. 2: the first ACK of congestion avoidance after a reduction
    starts an epoch with K = cbrt((W_max - cwnd) / C); the search's K is within 2 units
    (2 ms) of the real cube root, W_est starts at cwnd (s4.3)."""
    cases = [(100, 70), (1000, 700), (20, 14), (12, 11)]
    reqs = [{"cwnd": c * SMSS, "ssthresh": c * SMSS, "now": 5_000_000,
             "state": state_value(w_max=w * SMSS)} for w, c in cases]
    out = request(cubic(), reqs)
    for (w, c), (res, cycles) in zip(cases, out, strict=True):
        st = state_fields(res["state"])
        want = k_seconds(w, c) * U_PER_S
        assert abs(st["k"] - want) <= 2, (w, c, st["k"], want)
        assert st["epoch_on"] == 1 and st["epoch"] == (5_000_000 // U_US) & ((1 << 22) - 1)
        assert st["w_max"] == w * SMSS
        assert c * SMSS <= st["w_est"] <= c * SMSS + SMSS
        print(f"epoch start W_max={w} cwnd={c}: K={st['k']} U (RFC {want:.1f}), "
              f"{cycles} cycles")
        assert cycles <= 80


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_window_follows_w_cubic(fraction):
    """RFC 9438 s4.2 eq. 1 and s4.4: at t = 0, K/2, K, 1.5K and 2K into an epoch (W_max
    = 100 segments, K for cwnd_epoch = 70), an ACK of a whole window moves cwnd onto
    W_cubic(t + RTT) (RTT = 50 ms), within 1 % and one byte per ACK of rounding; the
    target is clamped to 1.5 cwnd (s4.4), so cwnd starts from 0.9 W_cubic."""
    w_max, c0, rtt_s = 100, 70, 0.05
    k_s = k_seconds(w_max, c0)
    k_u = round(k_s * U_PER_S)
    t_s = fraction * k_s
    want = w_cubic_seg(t_s + rtt_s, k_u / U_PER_S, w_max) * SMSS
    cwnd = int(0.9 * want)
    st = state_value(w_max=w_max * SMSS, k=k_u, epoch=0, epoch_on=1, w_est=cwnd // 2)
    now = int(t_s * 1e6)
    [(res, cycles)] = request(cubic(), [{"cwnd": cwnd, "ssthresh": cwnd, "acked": cwnd,
                                         "state": st, "now": now,
                                         "srtt_us": int(rtt_s * 1e6)}])
    print(f"t={t_s:.2f}s: cwnd {cwnd} -> {res['cwnd']}, W_cubic {want:.0f}, {cycles} cycles")
    assert abs(res["cwnd"] - want) <= 0.01 * want + 1
    assert cycles <= 12


def test_growth_per_ack_is_a_fraction_of_the_gap():
    """RFC 9438 s4.4: each ACK of one SMSS adds (target - cwnd) / cwnd segments; ten
    ACKs from cwnd = 50 segments towards a target of 60 add what the real-valued
    recurrence adds, within 1 %."""
    w_max = 60
    st = state_value(w_max=w_max * SMSS, k=0, epoch=0, epoch_on=1, w_est=0)
    cwnd = 50 * SMSS
    out = []
    for _ in range(10):
        reqs = [{"cwnd": cwnd, "ssthresh": cwnd, "acked": SMSS, "state": st, "now": 0}]
        [(res, _)] = request(cubic(), reqs)
        expected = cwnd + SMSS * (w_max * SMSS - cwnd) / cwnd
        assert abs(res["cwnd"] - expected) <= 0.01 * (expected - cwnd) + 1
        out.append(res["cwnd"] - cwnd)
        cwnd = res["cwnd"]
        st = res["state"]
    real = 50.0
    for _ in range(10):
        real += (w_max - real) / real
    assert abs(sum(out) - (real - 50) * SMSS) <= 0.01 * (real - 50) * SMSS


def test_reno_friendly_region():
    """RFC 9438 s4.3: W_est grows by alpha_cubic = 3(1 - beta)/(1 + beta) segments per
    window acknowledged below W_max (1 above it), and cwnd = W_est when W_cubic is
    lower: with W_est already above the cubic target, the result is W_est + alpha."""
    cwnd = 40 * SMSS
    st = state_value(w_max=100 * SMSS, k=5000, epoch=0, epoch_on=1, w_est=45 * SMSS,
                     est_acked=cwnd - SMSS)
    [(res, _)] = request(cubic(), [{"cwnd": cwnd, "ssthresh": cwnd, "acked": SMSS,
                                    "state": st, "now": 0}])
    alpha = 3 * (1 - BETA) / (1 + BETA)
    assert abs(res["cwnd"] - (45 + alpha) * SMSS) <= 0.01 * SMSS
    st2 = state_fields(res["state"])
    assert st2["est_acked"] == 0 and st2["w_est"] == res["cwnd"]
    # Above W_max alpha is 1.
    st = state_value(w_max=40 * SMSS, k=0, epoch=0, epoch_on=1, w_est=45 * SMSS,
                     est_acked=cwnd - SMSS)
    [(res, _)] = request(cubic(), [{"cwnd": cwnd, "ssthresh": cwnd, "acked": SMSS,
                                    "state": st, "now": 0}])
    assert res["cwnd"] == 46 * SMSS


@pytest.mark.parametrize("event", [CcEvent.LOSS, CcEvent.RTO, CcEvent.ECE])
def test_reduction_and_fast_convergence(event):
    """RFC 9438 s4.6, s4.7: a congestion event sets ssthresh = cwnd * beta_cubic (0.7,
    at least 2 SMSS) and W_max = cwnd, or cwnd * (1 + beta) / 2 when cwnd is below the
    last W_max (fast convergence); the epoch ends."""
    cwnd = 100 * SMSS
    reqs = [{"event": event, "cwnd": cwnd, "flight": cwnd,
             "state": state_value(w_max=50 * SMSS, epoch_on=1)},
            {"event": event, "cwnd": cwnd, "flight": cwnd,
             "state": state_value(w_max=200 * SMSS, epoch_on=1)},
            {"event": event, "cwnd": 2 * SMSS, "flight": 2 * SMSS, "state": 0}]
    (grew, _), (shrank, _), (small, _) = request(cubic(), reqs)
    assert abs(grew["ssthresh"] - BETA * cwnd) <= 0.002 * cwnd
    assert state_fields(grew["state"])["w_max"] == cwnd
    assert state_fields(grew["state"])["epoch_on"] == 0
    assert abs(state_fields(shrank["state"])["w_max"] - (1 + BETA) / 2 * cwnd) <= 0.002 * cwnd
    assert small["ssthresh"] == 2 * SMSS


def test_slow_start_is_byte_counting():
    """RFC 9438 s4.10 with RFC 3465 s2.2: below ssthresh cwnd grows by the bytes
    acknowledged, at most 2 SMSS per ACK, in the request's two cycles."""
    out = request(cubic(), [{"cwnd": 10 * SMSS, "ssthresh": 100 * SMSS, "acked": SMSS},
                            {"cwnd": 10 * SMSS, "ssthresh": 100 * SMSS, "acked": 5 * SMSS}])
    assert [r["cwnd"] for r, _ in out] == [11 * SMSS, 12 * SMSS]
    assert all(cycles <= 3 for _, cycles in out)


def test_algorithm_chosen_per_request():
    """docs/congestion.md "Several algorithms in one build": with ``congestion =
    "cubic,newreno"`` the request's ``algo`` picks the rule; the same loss gives CUBIC's
    0.7 and NewReno's half of the flight (RFC 5681 eq. 4)."""
    cwnd = 100 * SMSS
    loss = {"event": CcEvent.LOSS, "cwnd": cwnd, "flight": cwnd}
    (cub, _), (reno, _) = request(cubic("cubic,newreno"), [{**loss, "algo": 0},
                                                           {**loss, "algo": 1}])
    assert abs(cub["ssthresh"] - 0.7 * cwnd) <= 0.002 * cwnd
    assert reno["ssthresh"] == cwnd // 2
