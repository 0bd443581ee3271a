"""CUBIC (RFC 9438) in fixed point: the window grows as a cubic function of the time
since the last congestion event, independent of the round-trip time.

Units: bytes for windows (as the engine keeps cwnd), and time in units U of 1.024 ms
(the microsecond time base shifted right by 10; Linux's ``BICTCP_HZ`` = 10 uses 1/1024
s).  Constants: C = 0.4 segments/s^3 and beta_cubic = 0.7 (RFC 9438 s5).

- **A congestion event** (fast retransmit, timeout, ECN echo; s4.6, s4.7):
  ssthresh = max(cwnd * beta, 2 * SMSS) with beta = 717/1024; W_max = cwnd, or
  cwnd * (1 + beta) / 2 (870/1024) when cwnd is below the last W_max (fast
  convergence); the epoch ends.
- **Slow start** (cwnd < ssthresh): cwnd += min(bytes acknowledged, 2 * SMSS), as
  NewReno (RFC 9438 s4.10 allows the RFC 5681 / RFC 3465 rule).
- **The first ACK in congestion avoidance** starts an epoch (s4.2): its time t0, the
  Reno-friendly estimate W_est = cwnd (s4.3), and K = cbrt((W_max - cwnd) / C) (eq. 2),
  found by a binary search of its 16 bits: 64 cycles, once per congestion event.  At or
  above W_max, W_max = cwnd and K = 0.
- **Every ACK in congestion avoidance** (s4.4, s4.5): target = W_cubic(t + RTT) with
  W_cubic(t) = C * SMSS * (t - K)^3 + W_max (eq. 1, in bytes), t = now - t0 and RTT =
  SRTT, clamped to [cwnd, 1.5 * cwnd]; cwnd grows by acked * (target - cwnd) / cwnd.
  The division is a multiplication by 1/cwnd from a 64-entry table over cwnd's six bits
  below its leading one (within 0.8 %).  W_est grows by alpha * SMSS each time the bytes
  acknowledged reach cwnd, alpha = 3 * (1 - beta) / (1 + beta) (17/32) below W_max and 1
  above it (s4.3); cwnd = max(that growth, W_est) (the Reno-friendly region).  Twelve
  cycles from the request to the result.

The cube (t - K)^3 * SMSS * C comes from one pipeline of three registered
multiplications, shared by the search for K and the target.  Times wrap after 2^22 U
(71 minutes); an epoch that long without a congestion event sees t start again near 0,
where the target is below cwnd, and cwnd then follows W_est.
"""

from amaranth.hdl import Const, Mux, Signal
from amaranth.lib import data

from .congestion import CcEvent, CongestionAlgorithm, register

__all__ = ["Cubic", "BETA_1024", "C_SCALE"]

#: beta_cubic = 0.7 and (1 + beta) / 2 = 0.85, in 1/1024.
BETA_1024 = 717
CONVERGE_1024 = 870
#: C = 0.4 segments/s^3 is 0.4 * SMSS bytes per s^3, and 1 s = 10^6 / 1024 U:
#: W = (d^3 * SMSS * C_SCALE) >> C_SHIFT with C_SCALE = 0.4 * 2^40 / (10^6 / 1024)^3.
U_US = 1024
C_SHIFT = 40
C_SCALE = round(0.4 * (1 << C_SHIFT) / (1e6 / U_US) ** 3)
#: alpha_cubic = 3 * (1 - 0.7) / (1 + 0.7) = 0.529, in 1/32.
ALPHA_32 = 17
K_BITS = 16
TIME_BITS = 22
#: 1/x for x = 1 + (i + 0.5) / 64, scaled by 2^16 (cwnd's bits below its leading one).
RECIP_BITS = 6
RECIP = [round((1 << 16) / (1 + (i + 0.5) / (1 << RECIP_BITS))) for i in range(1 << RECIP_BITS)]


@register
class Cubic(CongestionAlgorithm):
    name = "cubic"
    state_layout = data.StructLayout({
        "w_max": 32,  # the window before the last reduction (or the epoch's origin), bytes
        "k": K_BITS,  # K, in U
        "epoch": TIME_BITS,  # t0, in U
        "epoch_on": 1,  # an epoch of congestion avoidance is under way
        "w_est": 32,  # the Reno-friendly estimate (s4.3), bytes
        "est_acked": 32,  # bytes acknowledged towards W_est's next step
    })

    def elaborate(self, m, r, start):
        st = self.state_of(r)
        smss, cwnd = r.smss, r.cwnd

        # The congestion event (one cycle).
        beta_cwnd = (cwnd * BETA_1024)[10:42]
        on_loss = Mux(beta_cwnd > 2 * smss, beta_cwnd, 2 * smss)
        loss_state = Signal(self.state_layout)
        m.d.comb += loss_state.w_max.eq(
            Mux(cwnd < st.w_max, (cwnd * CONVERGE_1024)[10:42], cwnd))

        slow = cwnd < r.ssthresh
        ss_step = Mux(r.acked < 2 * smss, r.acked, 2 * smss)
        avoid = (r.event == CcEvent.ACK) & ~slow

        # The cube pipeline: f(d) = min((d^3 * SMSS * C_SCALE) >> C_SHIFT, 2^32 - 1),
        # three registered steps from ``cube_in``.
        cube_in = Signal(K_BITS)
        sq, d1 = Signal(2 * K_BITS), Signal(K_BITS)
        cu = Signal(3 * K_BITS)
        scale = Signal(16 + C_SCALE.bit_length())
        product = Signal(3 * K_BITS + len(scale))
        m.d.sync += [sq.eq(cube_in * cube_in), d1.eq(cube_in), cu.eq(sq * d1),
                     scale.eq(smss * C_SCALE), product.eq(cu * scale)]
        high = product[C_SHIFT:]
        cube = Mux(high[32:].any(), 0xFFFF_FFFF, high[:32])

        # Epoch state being built (registered, written to the result at the end).
        w_max, k, epoch, w_est = (Signal(32), Signal(K_BITS), Signal(TIME_BITS),
                                  Signal(32))
        est_acked = Signal(32)
        excess = Signal(32)  # W_max - cwnd, what K's cube must not exceed
        bit = Signal(range(K_BITS))
        wait = Signal(2)
        now_u = r.now[10:10 + TIME_BITS]
        on_ack, ack_state = Signal(32), Signal(self.state_layout)
        done = Signal()

        # Time since the epoch began, plus the RTT (s4.4: the window one RTT ahead).
        t = Signal(TIME_BITS + 1)
        m.d.comb += t.eq(((now_u - epoch)[:TIME_BITS]) + r.srtt_us[10:10 + TIME_BITS])
        d_full = Mux(t >= k, t - k, k - t)
        ahead = Signal()
        target = Signal(34)
        increase = Signal(32)
        norm = Signal(32)  # cwnd shifted so that its leading one is bit 31
        lead = Signal(range(32))
        recip = Signal(17)
        grow_prod = Signal(24 + 31)
        grow_scaled = Signal(24 + 31 + 17)

        with m.FSM(name="cubic"):
            with m.State("idle"):
                m.d.sync += wait.eq(0)
                with m.If(start & avoid):
                    with m.If(st.epoch_on):
                        m.d.sync += [w_max.eq(st.w_max), k.eq(st.k), epoch.eq(st.epoch),
                                     w_est.eq(st.w_est), est_acked.eq(st.est_acked)]
                        m.next = "target_cube"
                    with m.Elif(cwnd < st.w_max):
                        m.d.sync += [w_max.eq(st.w_max), k.eq(0), epoch.eq(now_u),
                                     w_est.eq(cwnd), est_acked.eq(0),
                                     excess.eq(st.w_max - cwnd), bit.eq(K_BITS - 1)]
                        m.next = "k_search"
                    with m.Else():
                        m.d.sync += [w_max.eq(cwnd), k.eq(0), epoch.eq(now_u),
                                     w_est.eq(cwnd), est_acked.eq(0)]
                        m.next = "target_cube"
            with m.State("k_search"):
                # Binary search, most significant bit first: keep the bit if
                # f(k | bit) <= W_max - cwnd.  Each trial waits for the pipeline.
                trial = k | (Const(1, K_BITS) << bit)
                m.d.comb += cube_in.eq(trial)
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == 3):
                    m.d.sync += wait.eq(0)
                    with m.If(cube <= excess):
                        m.d.sync += k.eq(trial)
                    m.d.sync += bit.eq(bit - 1)
                    with m.If(bit == 0):
                        m.next = "target_cube"
            with m.State("target_cube"):
                m.d.comb += cube_in.eq(Mux(d_full[K_BITS:].any(), (1 << K_BITS) - 1,
                                           d_full[:K_BITS]))
                m.d.sync += [ahead.eq(t >= k), wait.eq(wait + 1)]
                with m.If(wait == 3):
                    m.d.sync += wait.eq(0)
                    m.next = "target"
            with m.State("target"):
                # Hold the cube's input so the pipeline's output stays put.
                m.d.comb += cube_in.eq(Mux(d_full[K_BITS:].any(), (1 << K_BITS) - 1,
                                           d_full[:K_BITS]))
                wanted = Mux(ahead, w_max + cube, Mux(cube < w_max, w_max - cube, 0))
                ceiling = cwnd + (cwnd >> 1)
                m.d.sync += target.eq(Mux(wanted > ceiling, ceiling, wanted))
                for i in range(32):  # the leading one, for the reciprocal
                    with m.If(cwnd[i]):
                        m.d.sync += [lead.eq(i), norm.eq(cwnd << (31 - i))]
                m.next = "increase_product"
            with m.State("increase_product"):
                diff = Mux(target > cwnd, target - cwnd, 0)[:31]
                acked = Mux(r.acked[24:].any(), (1 << 24) - 1, r.acked[:24])
                m.d.sync += grow_prod.eq(acked * diff)
                m.next = "increase_scale"
            with m.State("increase_scale"):
                with m.Switch(norm[31 - RECIP_BITS:31]):
                    for i, value in enumerate(RECIP):
                        with m.Case(i):
                            m.d.comb += recip.eq(value)
                m.d.sync += grow_scaled.eq(grow_prod * recip)
                m.next = "increase"
            with m.State("increase"):
                m.d.sync += increase.eq((grow_scaled >> 16) >> lead)
                m.next = "friendly"
            with m.State("friendly"):
                counted = est_acked + r.acked
                alpha = Mux(w_est < w_max, (smss * ALPHA_32)[5:], smss)
                step = counted >= cwnd
                est = Mux(step, w_est + alpha, w_est)
                grown = cwnd + increase
                m.d.sync += [
                    on_ack.eq(Mux(est > grown, est, grown)),
                    ack_state.w_max.eq(w_max), ack_state.k.eq(k),
                    ack_state.epoch.eq(epoch), ack_state.epoch_on.eq(1),
                    ack_state.w_est.eq(est),
                    ack_state.est_acked.eq(Mux(step, counted - cwnd, counted)),
                    done.eq(1),
                ]
                m.next = "done"
            with m.State("done"):
                m.d.sync += done.eq(0)
                m.next = "idle"

        return {
            "on_ack": Mux(avoid, on_ack, cwnd + ss_step),
            "ack_state": Mux(avoid, ack_state, r.state[:self.state_layout.size]),
            "on_loss": on_loss,
            "loss_state": loss_state,
            "init_state": 0,
            "done": ~avoid | done,
        }
