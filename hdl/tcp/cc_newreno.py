"""NewReno's window rules (RFC 5681 s3.1 with appropriate byte counting, RFC 3465).

- Slow start (cwnd < ssthresh): cwnd += min(bytes acknowledged, L * SMSS), L = 2
  (RFC 3465 s2.2, the limit RFC 5681 s3.1 allows).
- Congestion avoidance (cwnd >= ssthresh): the bytes acknowledged add up in
  ``bytes_acked``; each time they reach cwnd, cwnd grows by one SMSS and cwnd is taken
  off them (RFC 3465 s2.1: about one SMSS per round trip).
- A loss: ssthresh = max(FlightSize / 2, 2 * SMSS) (RFC 5681 eq. 4).

The recovery itself (fast retransmit, NewReno's partial ACKs) is the same for every
algorithm: :mod:`hdl.tcp.congestion` and :mod:`hdl.tcp.recovery`.
"""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data

from .congestion import CongestionAlgorithm, register

__all__ = ["NewReno"]

#: RFC 3465 s2.2: slow start grows by at most L * SMSS per ACK.
ABC_L = 2


@register
class NewReno(CongestionAlgorithm):
    name = "newreno"
    state_layout = data.StructLayout({"bytes_acked": 32})

    def elaborate(self, m, r, start):
        smss, cwnd = r.smss, r.cwnd
        bytes_acked = Signal(32)
        m.d.comb += bytes_acked.eq(self.state_of(r).bytes_acked)
        slow = cwnd < r.ssthresh
        ss_step = Mux(r.acked < ABC_L * smss, r.acked, ABC_L * smss)
        counted = Signal(33)
        m.d.comb += counted.eq(bytes_acked + r.acked)
        grow = counted >= cwnd
        on_ack = Mux(slow, cwnd + ss_step, Mux(grow, cwnd + smss, cwnd))
        ack_state = Mux(slow, 0, Mux(grow, counted - cwnd, counted))
        half = r.flight >> 1
        on_loss = Mux(half > 2 * smss, half, 2 * smss)
        return {"on_ack": on_ack, "ack_state": ack_state, "on_loss": on_loss,
                "loss_state": 0, "init_state": 0, "done": 1}
