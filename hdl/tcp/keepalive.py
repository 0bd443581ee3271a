"""Keep-alives (RFC 1122 s4.2.3.6; RFC 9293 MAY-5, MUST-24..29, SHLD-12), as steps of
the TCP engine.

Off by default (MUST-25); a connection turns them on with ``SET_OPTION
KEEPALIVE_IDLE`` (MUST-24).  Times are in ticks of the timestamp clock (1.024 ms,
:data:`~hdl.tcp.event_context.TS_TICK_BITS`), so an idle time of hours fits the TCB;
the driver converts seconds (:func:`ticks`).  The seed article's defaults: 2 hours idle
(MUST-28: at least 2 hours unless the host asks for less), then a probe every 75
seconds, 10 probes.

A connection in ESTABLISHED, CLOSE-WAIT or FIN-WAIT-2 with nothing outstanding
(SND.UNA = SND.MAX) and no timer running is probed when ``ka_due`` passes (MUST-26:
only when idle): a segment <SEQ=SND.NXT-1><ACK=RCV.NXT> without text (SHLD-12; MAY-6,
the garbage octet, is not sent), to which the peer answers with an ACK.  Every
acceptable ACK puts the next probe an idle time away and forgets the probes sent, so a
lost probe or a lost answer is no dead peer (MUST-29).  When ``ka_count`` probes went
unanswered, the connection is reset (RST) and the host gets TIMEOUT.
"""

from ..host_if import EventKind
from ..proto import tcp
from .event_context import TS_TICK_BITS, EventSlot
from .seq import seq_lt
from .states import TcpState

__all__ = ["ticks", "DEFAULT_INTERVAL_S", "DEFAULT_COUNT", "DEFAULT_IDLE_S", "KEEPALIVE_STATES",
           "keepalive_due", "probe_or_give_up", "rearm"]

S = TcpState
DEFAULT_IDLE_S = 2 * 3600
DEFAULT_INTERVAL_S = 75
DEFAULT_COUNT = 10
KEEPALIVE_STATES = (S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2)


def ticks(seconds: float) -> int:
    """Seconds in ticks of the timestamp clock (rounded to the nearest)."""
    return round(seconds * 1_000_000 / (1 << TS_TICK_BITS))


def rearm(e, idle=None):
    """The peer was heard from (or keep-alives were just set to ``idle``): the next
    probe an idle time from now, none unanswered."""
    t = e.t
    idle = t.ka_idle if idle is None else idle
    e.m.d.sync += [t.ka_probes.eq(0), t.ka_due.eq((e.ts_now + idle)[:32])]


def keepalive_due(e):
    """A probe (or the reset after the last) is due now."""
    t = e.t
    return ((t.ka_idle != 0) & e.in_states(*KEEPALIVE_STATES) & ~t.timer_on
            & (t.snd_una == t.snd_max) & ~seq_lt(e.ts_now, t.ka_due))


def probe_or_give_up(e):
    """In ``timer_check``: the next probe, or after ``ka_count`` unanswered ones a reset
    and TIMEOUT."""
    m, t = e.m, e.t
    with m.If(t.ka_probes >= t.ka_count):
        e.send(tcp.RST | tcp.ACK_FLAG, t.snd_nxt)
        e.to_closed(KEEPALIVE_STATES, "RFC 1122 s4.2.3.6: keep-alive probes unanswered")
        e.count("tcp_keepalive_timeouts")
        with m.If(t.owned):
            e.event(EventSlot.ENDING, EventKind.TIMEOUT)
    with m.Else():
        e.send(tcp.ACK_FLAG, (t.snd_nxt - 1)[:32])
        m.d.sync += [t.ka_probes.eq(t.ka_probes + 1),
                     t.ka_due.eq((e.ts_now + t.ka_intvl)[:32])]
        e.count("tcp_keepalive_probes")
