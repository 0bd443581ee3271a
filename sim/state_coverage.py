"""State coverage of the TCP engine: which (state, event) pairs and transitions tests hit.

The engine reports every event it processes on its ``trace`` port
(:data:`hdl.tcp.engine.trace_layout`): the state before and after, the source of the
event, the segment's flags or the command.  :class:`TraceMonitor` records these from the
simulation; :func:`report` turns records into a table, and :data:`DIAGRAM` lists the
transitions of the RFC 9293 state diagram (s3.3.2, figure 5) that the tests must hit.
"""

from collections import Counter
from dataclasses import dataclass

import cocotb
from cocotb.triggers import RisingEdge, ValueChange

from hdl.host_if import CommandOp
from hdl.tcp.engine import TRACE_SOURCES, trace_layout
from hdl.tcp.tcb import TcpState

__all__ = ["TraceMonitor", "Transition", "DIAGRAM", "event_name", "report", "missing"]


@dataclass(frozen=True)
class Transition:
    before: str
    event: str
    after: str


#: RFC 9293 figure 5, by (from, event, to); events as :func:`event_name` names them.
#: "LISTEN --SEND--> SYN-SENT" is not offered (a listener never sends).
DIAGRAM = [
    Transition("CLOSED", "LISTEN", "LISTEN"),
    Transition("LISTEN", "UNLISTEN", "CLOSED"),
    Transition("CLOSED", "CONNECT", "SYN_SENT"),
    Transition("LISTEN", "SYN", "SYN_RECEIVED"),
    Transition("SYN_SENT", "SYN", "SYN_RECEIVED"),
    Transition("SYN_SENT", "SYN-ACK", "ESTABLISHED"),
    Transition("SYN_SENT", "CLOSE", "CLOSED"),
    Transition("SYN_RECEIVED", "ACK", "ESTABLISHED"),
    Transition("SYN_RECEIVED", "CLOSE", "FIN_WAIT_1"),
    Transition("SYN_RECEIVED", "RST", "CLOSED"),  # back to LISTEN: the listener stays
    Transition("ESTABLISHED", "CLOSE", "FIN_WAIT_1"),
    Transition("ESTABLISHED", "FIN", "CLOSE_WAIT"),
    Transition("FIN_WAIT_1", "ACK", "FIN_WAIT_2"),
    Transition("FIN_WAIT_1", "FIN", "CLOSING"),
    Transition("FIN_WAIT_2", "FIN", "TIME_WAIT"),
    Transition("CLOSING", "ACK", "TIME_WAIT"),
    Transition("TIME_WAIT", "timeout", "CLOSED"),
    Transition("CLOSE_WAIT", "CLOSE", "LAST_ACK"),
    Transition("LAST_ACK", "ACK", "CLOSED"),
]

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


def event_name(source: str, flags: int, data: bool, op: CommandOp) -> str:
    """A short name of the event: segment kind, command, ``timeout`` or ``output``."""
    if source == "seg":
        if flags & _RST:
            return "RST"
        if flags & _SYN:
            return "SYN-ACK" if flags & _ACK else "SYN"
        if flags & _FIN:
            return "FIN"
        if data:
            return "data"
        return "ACK" if flags & _ACK else "no-ACK"
    if source == "cmd":
        # SHUTDOWN is the RFC's CLOSE (half-close); CLOSE adds the release of the id.
        return "CLOSE" if op in (CommandOp.SHUTDOWN, CommandOp.CLOSE) else op.name
    if source == "timer":
        return "timeout"
    return source


class TraceMonitor:
    """Records the engine's trace port (``trace_data`` of the top) into ``records``."""

    def __init__(self, dut, records: list[Transition]):
        self.records = records
        self._signal = dut.trace_data
        self._edge = RisingEdge(dut.clk)
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        change = ValueChange(self._signal)
        while True:
            await change
            bits = self._signal.value.to_unsigned()
            if not bits & 1:
                continue
            view = trace_layout.from_bits(bits)
            source = TRACE_SOURCES[view.source]
            self.records.append(Transition(
                view.before.name, event_name(source, view.flags, bool(view.data), view.op),
                view.after.name))


def missing(records) -> list[Transition]:
    """The :data:`DIAGRAM` transitions not in ``records``."""
    seen = set(records)
    return [t for t in DIAGRAM if t not in seen]


def report(records) -> str:
    """A markdown report: each (state, event) pair hit with its outcomes and count, then
    the diagram transitions, hit or not."""
    counts = Counter(records)
    states = [s.name for s in TcpState]
    lines = ["# TCP engine state coverage", "",
             "| state | event | next state | times |", "|---|---|---|---|"]
    for t, n in sorted(counts.items(), key=lambda kv: (states.index(kv[0].before),
                                                       kv[0].event, kv[0].after)):
        lines.append(f"| {t.before} | {t.event} | {t.after} | {n} |")
    lines += ["", "## RFC 9293 figure 5 transitions", "",
              "| from | event | to | hit |", "|---|---|---|---|"]
    for t in DIAGRAM:
        lines.append(f"| {t.before} | {t.event} | {t.after} | {'yes' if counts[t] else 'NO'} |")
    pairs = {(t.before, t.event) for t in counts}
    lines += ["", f"{len(pairs)} (state, event) pairs, {len(counts)} distinct transitions, "
              f"{len(DIAGRAM) - len(missing(records))}/{len(DIAGRAM)} diagram transitions."]
    return "\n".join(lines) + "\n"
