"""The TCP states and every transition the engine makes between them, in one table.

:class:`TcpState` holds the eleven states of RFC 9293 s3.3.2.  :data:`TRANSITIONS` lists
each state change of :class:`hdl.tcp.engine.TcpEngine` as (from, event, to) with its RFC
9293 basis, and whether it is an arrow of the RFC's state diagram (s3.3.2, figure 5).
The table is plain Python data, read by the state-coverage report of the tests
(:mod:`sim.state_coverage`), the generated ``docs/state-table.md`` and
``docs/state-diagram.svg`` (:mod:`sim.state_diagram`), and meant for a check of every
state change the engine makes (:func:`allowed`).

Events are named as the engine's ``trace`` port reports them
(:func:`sim.state_coverage.event_name`), listed in :data:`EVENTS`:

- a segment, by its most significant control bit: ``RST``, ``SYN``, ``SYN-ACK``, ``FIN``
  (with or without data), ``data`` (payload, no FIN), ``ACK`` (no payload), ``no-ACK``;
  a segment that carries an ACK is processed by the ACK step of s3.10.7.4 whatever else
  it carries, so a transition made by that step is listed for ``ACK``, ``data`` and
  ``FIN`` alike;
- a host command: ``LISTEN``, ``UNLISTEN``, ``CONNECT`` (OPEN), ``CLOSE`` (SHUTDOWN and
  CLOSE of :mod:`hdl.host_if`, the RFC's CLOSE), ``ABORT``, ``ACCEPT``, ``CREDIT``,
  ``SET_OPTION``, ``GET_INFO``, ``NOP``;
- ``written``: the TX writer's report of host bytes, which can carry the end of the
  stream in band (a CLOSE);
- ``timeout``: the connection's timer (TIME-WAIT, or R2 of the retransmission timer);
- ``ICMP``: an ICMP error about the connection's segments (s3.9.2.2);
- ``delivered``, ``output``: bytes handed to the host, a turn of the output queue (these
  never change the state).

LISTEN is not a TCB state: a listener lives in the engine's listener table, and a
passive open takes a fresh connection id, so the engine's trace shows it as
LISTEN --SYN--> SYN-RECEIVED and a return "to LISTEN" as SYN-RECEIVED --> CLOSED (the
listener keeps listening).
"""

from dataclasses import dataclass

from amaranth.lib import enum

__all__ = ["TcpState", "TcpTransition", "TRANSITIONS", "EVENTS", "SEGMENT_EVENTS",
           "SYNCHRONIZED", "allowed", "find", "transitions_from", "transitions_to",
           "figure_transitions", "required_transitions", "reachable"]


class TcpState(enum.Enum, shape=4):
    """The eleven states of RFC 9293 s3.3.2 (LISTEN lives in the listener table)."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


#: Segment events, most significant control bit first.
SEGMENT_EVENTS = ("RST", "SYN", "SYN-ACK", "FIN", "data", "ACK", "no-ACK")
#: Every event name the engine's trace can report (see the module docstring).
EVENTS = SEGMENT_EVENTS + ("LISTEN", "UNLISTEN", "CONNECT", "CLOSE", "ABORT", "ACCEPT",
                           "CREDIT", "SET_OPTION", "GET_INFO", "NOP", "written", "timeout",
                           "ICMP", "delivered", "output")

S = TcpState
#: The synchronized states (RFC 9293 s3.5: every state after the handshake).
SYNCHRONIZED = (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING,
                S.LAST_ACK, S.TIME_WAIT)


@dataclass(frozen=True)
class TcpTransition:
    """One state change: ``before --event--> after``.

    ``rfc`` is the RFC 9293 basis (section, figure, requirement id); ``in_figure`` says
    the arrow is in figure 5; ``required`` that the tests must show it (the state
    coverage check); ``note`` what the engine does, where the event name alone is not
    enough."""

    before: TcpState
    event: str
    after: TcpState
    rfc: str
    in_figure: bool = False
    required: bool = False
    note: str = ""

    @property
    def names(self) -> tuple[str, str, str]:
        """(before, event, after) with the states as :class:`TcpState` names, as the
        engine's trace records them."""
        return (self.before.name, self.event, self.after.name)


def _t(before, event, after, rfc, note="", *, figure=False, required=None):
    return TcpTransition(before, event, after, rfc, figure,
                         figure if required is None else required, note)


def _on_ack(before, after, rfc, note, *, figure=False, events=("ACK", "data", "FIN")):
    """A transition of the ACK step (s3.10.7.4 fifth): any segment with an acceptable
    ACK; ``ACK`` is figure 5's arrow, ``data`` and ``FIN`` do the same."""
    return tuple(_t(before, e, after, rfc, note, figure=figure and e == "ACK")
                 for e in events)


_R2 = "s3.8.3 R2, MUST-20..23"
_RESET = "s3.10.7.4 second check, RFC 5961 s3.2"

#: Every state change the engine makes, grouped by the state it leaves.
TRANSITIONS: tuple[TcpTransition, ...] = (
    # --- CLOSED and LISTEN ------------------------------------------------------------
    _t(S.CLOSED, "LISTEN", S.LISTEN, "s3.10.1 OPEN (passive), figure 5",
       "a listener enters the listener table", figure=True),
    _t(S.LISTEN, "UNLISTEN", S.CLOSED, "s3.10.4 CLOSE in LISTEN, figure 5",
       "the listener leaves the table", figure=True),
    _t(S.CLOSED, "CONNECT", S.SYN_SENT, "s3.10.1 OPEN (active), figure 5",
       "SYN sent", figure=True),
    _t(S.LISTEN, "SYN", S.SYN_RECEIVED, "s3.10.7.2, figure 5",
       "passive open on a fresh id; SYN-ACK sent", figure=True),
    _t(S.LISTEN, "ACK", S.SYN_RECEIVED, "RFC 4987 s3.6 (SYN cookies)",
       "the ACK of a cookie SYN-ACK rebuilds the half-open connection; the same ACK then "
       "takes it to ESTABLISHED"),
    _t(S.LISTEN, "SYN", S.CLOSED, "s3.10.7.2",
       "the socket pair could not enter the lookup table: the SYN is dropped, the id "
       "freed, the listener keeps listening"),
    # --- SYN-SENT ------------------------------------------------------------------------
    _t(S.SYN_SENT, "SYN-ACK", S.ESTABLISHED, "s3.10.7.3 fourth, figure 5",
       "ACK sent", figure=True),
    _t(S.SYN_SENT, "SYN", S.SYN_RECEIVED, "s3.10.7.3 fourth, s3.5 figure 8, figure 5",
       "simultaneous open: SYN-ACK sent", figure=True),
    _t(S.SYN_SENT, "SYN-ACK", S.CLOSE_WAIT, "s3.10.7.3 fourth, then s3.10.7.4 eighth",
       "a SYN-ACK that carries the peer's FIN: ESTABLISHED, then CLOSE-WAIT"),
    _t(S.SYN_SENT, "SYN-ACK", S.FIN_WAIT_1, "s3.10.7.3 fourth, s3.10.4 CLOSE in SYN-SENT",
       "SHUTDOWN came during SYN-SENT: the FIN goes out once the open completes"),
    _t(S.SYN_SENT, "CLOSE", S.CLOSED, "s3.10.4 CLOSE in SYN-SENT, figure 5",
       "CLOSE (not SHUTDOWN) deletes the TCB", figure=True),
    _t(S.SYN_SENT, "RST", S.CLOSED, "s3.10.7.3 second",
       "RST with an acceptable ACK: connection refused", required=True),
    _t(S.SYN_SENT, "ABORT", S.CLOSED, "s3.10.5 ABORT in SYN-SENT"),
    _t(S.SYN_SENT, "timeout", S.CLOSED, f"{_R2} (SYN)", "the SYN's R2", required=True),
    _t(S.SYN_SENT, "ICMP", S.CLOSED, "s3.9.2.2 SHLD-26, RFC 1122 s4.2.3.9",
       "protocol or port unreachable quoting our SYN: the open fails (RESET, UNREACHABLE)"),
    # --- SYN-RECEIVED ----------------------------------------------------------------------
    *_on_ack(S.SYN_RECEIVED, S.ESTABLISHED, "s3.10.7.4 fifth, figure 5",
             "the ACK of our SYN", figure=True),
    _t(S.SYN_RECEIVED, "SYN-ACK", S.ESTABLISHED, "s3.5 figure 8 (simultaneous open)",
       "the peer's SYN-ACK acknowledges our SYN"),
    _t(S.SYN_RECEIVED, "FIN", S.CLOSE_WAIT, "s3.10.7.4 fifth and eighth",
       "the ACK of our SYN with the peer's FIN: ESTABLISHED, then CLOSE-WAIT"),
    *_on_ack(S.SYN_RECEIVED, S.FIN_WAIT_1, "s3.10.4 CLOSE in SYN-RECEIVED, s3.10.7.4 fifth",
             "a CLOSE queued behind data: FIN-WAIT-1 on the ACK of our SYN"),
    _t(S.SYN_RECEIVED, "FIN", S.CLOSING, "s3.10.4, s3.10.7.4 fifth and eighth",
       "a CLOSE queued behind data, then the ACK of our SYN with the peer's FIN"),
    _t(S.SYN_RECEIVED, "CLOSE", S.FIN_WAIT_1, "s3.10.4 CLOSE in SYN-RECEIVED, figure 5",
       "nothing queued: FIN sent", figure=True),
    _t(S.SYN_RECEIVED, "written", S.FIN_WAIT_1, "s3.10.4 CLOSE in SYN-RECEIVED",
       "the end of stream in band, nothing queued: FIN sent"),
    _t(S.SYN_RECEIVED, "RST", S.CLOSED, "s3.10.7.4 second check, MUST-10/11, figure 5",
       "passive open: back to LISTEN (figure 5's arrow); active open: refused",
       figure=True),
    _t(S.SYN_RECEIVED, "SYN", S.CLOSED, "s3.10.7.4 fourth check",
       "an in-window SYN of a passive open: back to LISTEN"),
    _t(S.SYN_RECEIVED, "SYN-ACK", S.CLOSED, "s3.10.7.4 fourth check",
       "an in-window SYN of a passive open: back to LISTEN"),
    _t(S.SYN_RECEIVED, "ABORT", S.CLOSED, "s3.10.5 ABORT in SYN-RECEIVED", "RST sent"),
    _t(S.SYN_RECEIVED, "timeout", S.CLOSED, f"{_R2} (SYN)", "the SYN-ACK's R2",
       required=True),
    _t(S.SYN_RECEIVED, "ICMP", S.CLOSED, "s3.9.2.2 SHLD-26",
       "protocol or port unreachable quoting the SYN-ACK of a passive open: back to LISTEN"),
    # --- ESTABLISHED -------------------------------------------------------------------------
    _t(S.ESTABLISHED, "CLOSE", S.FIN_WAIT_1, "s3.10.4 CLOSE in ESTABLISHED, figure 5",
       "FIN queued after the data", figure=True),
    _t(S.ESTABLISHED, "written", S.FIN_WAIT_1, "s3.10.4 CLOSE in ESTABLISHED",
       "the end of stream in band"),
    _t(S.ESTABLISHED, "FIN", S.CLOSE_WAIT, "s3.10.7.4 eighth, figure 5",
       "ACK sent", figure=True),
    _t(S.ESTABLISHED, "data", S.CLOSE_WAIT, "s3.10.7.4 seventh and eighth, SHLD-31",
       "text fills the hole before a FIN held out of order: the FIN takes effect"),
    # --- FIN-WAIT-1 --------------------------------------------------------------------------
    *_on_ack(S.FIN_WAIT_1, S.FIN_WAIT_2, "s3.10.7.4 fifth (FIN-WAIT-1), figure 5",
             "the ACK of our FIN (a FIN that is not yet in order does not count)",
             figure=True),
    _t(S.FIN_WAIT_1, "FIN", S.CLOSING, "s3.10.7.4 eighth, s3.6 figure 13, figure 5",
       "simultaneous close: the peer's FIN does not acknowledge ours", figure=True),
    _t(S.FIN_WAIT_1, "FIN", S.TIME_WAIT, "s3.10.7.4 eighth (FIN-WAIT-1)",
       "the peer's FIN acknowledges ours; 2 MSL timer"),
    # --- FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT ---------------------------
    _t(S.FIN_WAIT_2, "FIN", S.TIME_WAIT, "s3.10.7.4 eighth, figure 5",
       "2 MSL timer", figure=True),
    _t(S.FIN_WAIT_2, "timeout", S.CLOSED, "none in RFC 9293; as Linux's tcp_fin_timeout",
       "the host closed and the peer's FIN never came (ToeConfig.fin_wait_2_us)"),
    _t(S.CLOSE_WAIT, "CLOSE", S.LAST_ACK, "s3.10.4 CLOSE in CLOSE-WAIT, figure 5",
       "FIN queued after the data", figure=True),
    _t(S.CLOSE_WAIT, "written", S.LAST_ACK, "s3.10.4 CLOSE in CLOSE-WAIT",
       "the end of stream in band"),
    *_on_ack(S.CLOSING, S.TIME_WAIT, "s3.10.7.4 fifth (CLOSING), figure 5",
             "the ACK of our FIN; 2 MSL timer", figure=True),
    *_on_ack(S.LAST_ACK, S.CLOSED, "s3.10.7.4 fifth (LAST-ACK), figure 5",
             "the ACK of our FIN", figure=True),
    _t(S.TIME_WAIT, "timeout", S.CLOSED, "s3.10.8 time-wait timeout, figure 5",
       "2 MSL after the last FIN", figure=True),
    # --- Resets, aborts and R2 from the synchronized states -------------------------------
    # (ESTABLISHED's are required: the connection tests show each.)
    *(_t(state, "RST", S.CLOSED, _RESET, "RST at exactly RCV.NXT",
         required=state == S.ESTABLISHED)
      for state in SYNCHRONIZED),
    *(_t(state, "ABORT", S.CLOSED, "s3.10.5 ABORT",
         "no RST in TIME-WAIT" if state == S.TIME_WAIT else "RST sent",
         required=state == S.ESTABLISHED)
      for state in SYNCHRONIZED),
    *(_t(state, "CLOSE", S.CLOSED, "SHLD-3, RFC 2525 s2.17, RFC 1122 s4.2.2.13",
         "CLOSE with received data the host has not read: RST instead of FIN")
      for state in SYNCHRONIZED if state != S.TIME_WAIT),
    *(_t(state, "written", S.CLOSED, "s3.10.5 (the engine resets), docs/host-driver.md",
         "the host wrote beyond its send credit: the stream cannot be whole, RST")
      for state in (S.SYN_SENT, S.SYN_RECEIVED) + SYNCHRONIZED),
    *(_t(state, "timeout", S.CLOSED, _R2, "R2 of the retransmission timer",
         required=state == S.ESTABLISHED)
      for state in (S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK)),
)
del S

_BY_KEY = {(t.before, t.event, t.after): t for t in TRANSITIONS}
assert len(_BY_KEY) == len(TRANSITIONS), "a transition is listed twice"


def _state(value) -> TcpState:
    """A :class:`TcpState` from a member, its name or its value."""
    if isinstance(value, TcpState):
        return value
    if isinstance(value, str):
        return TcpState[value.replace("-", "_").upper()]
    return TcpState(value)


def find(before, event: str, after) -> TcpTransition | None:
    """The table's entry for ``before --event--> after`` (states as members or names)."""
    return _BY_KEY.get((_state(before), event, _state(after)))


def allowed(before, event: str, after) -> bool:
    """Whether the engine may go from ``before`` to ``after`` on ``event``: the
    transition is in the table, or the state does not change (no transition)."""
    before, after = _state(before), _state(after)
    return before == after or (before, event, after) in _BY_KEY


def transitions_from(state) -> tuple[TcpTransition, ...]:
    """The transitions leaving ``state``, in table order."""
    state = _state(state)
    return tuple(t for t in TRANSITIONS if t.before == state)


def transitions_to(state) -> tuple[TcpTransition, ...]:
    """The transitions entering ``state``, in table order."""
    state = _state(state)
    return tuple(t for t in TRANSITIONS if t.after == state)


def figure_transitions() -> tuple[TcpTransition, ...]:
    """The arrows of RFC 9293 figure 5 (LISTEN --SEND--> SYN-SENT is not offered: a
    listener never sends)."""
    return tuple(t for t in TRANSITIONS if t.in_figure)


def required_transitions() -> tuple[TcpTransition, ...]:
    """The transitions the tests must show (the state-coverage check)."""
    return tuple(t for t in TRANSITIONS if t.required)


def reachable(start=TcpState.CLOSED, *, reverse: bool = False) -> set[TcpState]:
    """The states reachable from ``start`` through the table (with ``reverse``: the
    states from which ``start`` can be reached)."""
    seen = {_state(start)}
    todo = list(seen)
    while todo:
        state = todo.pop()
        for t in TRANSITIONS:
            here, there = (t.after, t.before) if reverse else (t.before, t.after)
            if here == state and there not in seen:
                seen.add(there)
                todo.append(there)
    return seen
