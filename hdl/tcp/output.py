"""The output routine of the TCP engine: what a connection sends when it is its turn in
the output queue (RFC 9293 s3.10.2 SEND, s3.8.6 windows, s3.8.6.2.2 window updates).

Three registered steps, each ending in registers, so that no path chains more than two
32-bit carry chains: (1) ``output_measure``: bytes queued and room in the peer's
window; (2) ``output_length``: the segment length, at most SND.MSS; (3) ``output_send``:
the segment and the new SND.NXT.  Retransmission (:mod:`hdl.tcp.timers`) reuses the
length step's registers.
"""

from amaranth.hdl import Mux, Signal

from ..proto import tcp
from .seq import seq_diff, seq_lt, seq_min
from .states import TcpState

__all__ = ["OutputRegisters", "add_output_steps"]

S = TcpState


class OutputRegisters:
    """The intermediate results of the output and retransmission steps."""

    def __init__(self):
        self.avail = Signal(32)  # bytes queued beyond SND.NXT (or SND.UNA)
        self.room = Signal(32)  # room in the peer's window beyond SND.NXT
        self.length = Signal(16)
        self.fin_left = Signal()  # the FIN is not sent yet
        self.update = Signal()  # a window update is due

    def add_length_step(self, e, name: str, then: str):
        """Step ``name``: the segment length, min(bytes, window room, SND.MSS), then
        ``then`` (shared by the output and the retransmission routines)."""
        with e.m.State(name):
            e.m.d.sync += self.length.eq(seq_min(seq_min(self.avail, self.room), e.t.snd_mss))
            e.m.next = then


def add_output_steps(e, o, backoff):
    m, t = e.m, e.t

    with m.State("output_measure"):
        avail = seq_diff(t.snd_end, t.snd_nxt)
        room = seq_diff((t.snd_una + t.snd_wnd)[:32], t.snd_nxt)
        m.d.sync += [
            o.avail.eq(Mux(~avail[31], avail, 0)),
            o.fin_left.eq(~avail[31]),
            o.room.eq(Mux(~room[31], room, 0)),
            o.update.eq(e.window_update_due()),
        ]
        m.next = "output_length"

    o.add_length_step(e, "output_length", "output_send")

    with m.State("output_send"):
        m.next = "finish"
        data_pending = o.avail != 0
        room_ok = o.room != 0
        length = o.length
        sending = e.in_states(S.ESTABLISHED, S.CLOSE_WAIT) | e.closing_sends_fin
        last = o.fin_left & (length == o.avail)  # this segment takes every byte
        fin_now = e.closing_sends_fin & t.fin_queued & last
        with m.If(sending & ((length != 0) | (fin_now & ~data_pending))):
            e.send(tcp.ACK_FLAG | Mux(fin_now, tcp.FIN, 0)
                   | Mux((length != 0) & last, tcp.PSH, 0),
                   t.snd_nxt, pos=t.snd_nxt, length=length)
            next_nxt = (t.snd_nxt + length + fin_now)[:32]
            m.d.sync += t.snd_nxt.eq(next_nxt)
            # SND.NXT never passes SND.MAX except by sending new data, and then
            # SND.NXT == SND.MAX before (RFC 6298 / Karn: time new data only).
            with m.If(t.snd_nxt == t.snd_max):
                m.d.sync += t.snd_max.eq(next_nxt)
                with m.If(~t.rtt_active):
                    m.d.sync += [t.rtt_active.eq(1), t.rtt_seq.eq(next_nxt),
                                 t.rtt_time.eq(e.now)]
            with m.Elif(seq_lt(t.snd_max, next_nxt)):
                m.d.sync += t.snd_max.eq(next_nxt)
            with m.If(~t.timer_on):
                e.start_timer(backoff.backed_off)  # RFC 6298 (5.1)
            with m.If((length != 0) & ~last & (o.room > length)):
                e.enqueue()
        with m.Elif(sending & data_pending & ~room_ok & ~t.timer_on):
            # Zero window: the timer will send a probe (MUST-36).
            e.start_timer(backoff.backed_off)
        with m.Elif(e.synchronized & (t.state != S.TIME_WAIT) & o.update):
            e.send_ack()  # window update
