"""State coverage of the TCP engine: which (state, event) pairs and transitions tests hit.

The engine reports every event it processes on its ``trace`` port
(:data:`hdl.tcp.engine.trace_layout`): the state before and after, the source of the
event, the segment's flags or the command.  :class:`TraceMonitor` records these from the
simulation; :func:`report` turns records into a table and :func:`write_coverage` into
JSON (read by ``python -m toe.sim.state_diagram --coverage``).  The transitions come from the
one table of :mod:`hdl.tcp.states`: :data:`DIAGRAM` is its RFC 9293 figure 5 part,
:data:`REQUIRED` the part the tests must hit (:func:`missing`), and a state change the
table does not list is reported (:func:`undeclared`).
"""

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge, ValueChange

from toe.hdl.host_if import CommandOp
from toe.hdl.proto.tcp import ACK_FLAG, FIN, RST, SYN
from toe.hdl.tcp.engine import TRACE_SOURCES, trace_layout
from toe.hdl.tcp.states import TRANSITIONS, TcpState, allowed, find

__all__ = ["TraceMonitor", "Transition", "TABLE", "DIAGRAM", "REQUIRED", "HITS", "COUNTS",
           "event_name", "report", "missing", "missing_from", "undeclared", "coverage_data",
           "write_coverage"]


@dataclass(frozen=True)
class Transition:
    """One traced event: state names (:class:`TcpState` names) and the event name."""

    before: str
    event: str
    after: str


#: Every transition of :data:`hdl.tcp.states.TRANSITIONS`, by state names.
TABLE = [Transition(*t.names) for t in TRANSITIONS]
#: RFC 9293 figure 5, by (from, event, to); events as :func:`event_name` names them.
#: "LISTEN --SEND--> SYN-SENT" is not offered (a listener never sends).
DIAGRAM = [Transition(*t.names) for t in TRANSITIONS if t.in_figure]
#: The transitions the tests must hit (:func:`missing`).
REQUIRED = [Transition(*t.names) for t in TRANSITIONS if t.required]
#: The cocotb tests in which each transition was seen, by every monitor of this process.
HITS: dict[Transition, set[str]] = defaultdict(set)
#: How often each transition was seen, by every monitor of this process.
COUNTS: Counter = Counter()

def event_name(source: str, flags: int, data: bool, op: CommandOp, icmp: bool = False) -> str:
    """A short name of the event: segment kind, ICMP error, command, ``timeout`` or
    ``output``."""
    if source == "seg" and icmp:
        return "ICMP"
    if source == "seg":
        if flags & RST:
            return "RST"
        if flags & SYN:
            return "SYN-ACK" if flags & ACK_FLAG else "SYN"
        if flags & FIN:
            return "FIN"
        if data:
            return "data"
        return "ACK" if flags & ACK_FLAG else "no-ACK"
    if source == "cmd":
        # SHUTDOWN is the RFC's CLOSE (half-close); CLOSE adds the release of the id.
        return "CLOSE" if op in (CommandOp.SHUTDOWN, CommandOp.CLOSE) else op.name
    if source == "timer":
        return "timeout"
    return source


class TraceMonitor:
    """Records the engine's trace port (``trace_data`` of the top) into ``records``, and
    the name of the running test under each transition in :data:`HITS` (and
    :data:`COUNTS`).  Each time a test shows a transition for the first time,
    ``state_coverage.json`` in the artefacts directory is rewritten from these (pass
    ``coverage_file=None`` not to), so that every cocotb module that uses a monitor
    leaves its coverage behind."""

    def __init__(self, dut, records: list[Transition],
                 coverage_file: str | Path | None = "state_coverage.json"):
        from .testbench import artifacts_path, current_test_name

        self.records = records
        self.test = current_test_name()
        self._file = None if coverage_file is None else artifacts_path() / coverage_file
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
            record = Transition(
                view.before.name, event_name(source, view.flags, bool(view.data), view.op,
                                                bool(view.icmp)),
                view.after.name)
            self.records.append(record)
            COUNTS[record] += 1
            if self.test not in HITS[record]:
                HITS[record].add(self.test)
                if self._file is not None:
                    write_coverage(self._file, COUNTS)


def missing(records) -> list[Transition]:
    """The :data:`REQUIRED` transitions not in ``records``."""
    seen = set(records)
    return [t for t in REQUIRED if t not in seen]


def undeclared(records) -> list[Transition]:
    """The state changes in ``records`` that the table does not list (engine bugs, or a
    table to complete), each once, in the order first seen."""
    return [t for t in dict.fromkeys(records) if not allowed(t.before, t.event, t.after)]


def _order(t: Transition):
    states = [s.name for s in TcpState]
    return (states.index(t.before), t.event, states.index(t.after))


def report(records) -> str:
    """A markdown report: each (state, event) pair hit with its outcomes and count, the
    table's transitions, hit or not, and the state changes the table does not list."""
    counts = Counter(records)
    lines = ["# TCP engine state coverage", "",
             "| state | event | next state | times |", "|---|---|---|---|"]
    for t, n in sorted(counts.items(), key=lambda kv: _order(kv[0])):
        lines.append(f"| {t.before} | {t.event} | {t.after} | {n} |")
    lines += ["", "## Transitions of the state table (hdl/tcp/states.py)", "",
              "| from | event | to | RFC 9293 figure 5 | required | hit |",
              "|---|---|---|---|---|---|"]
    for entry, t in zip(TRANSITIONS, TABLE, strict=True):
        hit = "yes" if counts[t] else ("NO" if entry.required else "no")
        lines.append(f"| {t.before} | {t.event} | {t.after} | "
                     f"{'yes' if entry.in_figure else ''} | "
                     f"{'yes' if entry.required else ''} | {hit} |")
    extra = undeclared(records)
    lines += ["", "## State changes the table does not list", ""]
    if extra:
        lines += ["| from | event | to | times |", "|---|---|---|---|"]
        lines += [f"| {t.before} | {t.event} | {t.after} | {counts[t]} |" for t in extra]
    else:
        lines.append("None.")
    pairs = {(t.before, t.event) for t in counts}
    hit_table = sum(1 for t in TABLE if counts[t])
    lines += ["", f"{len(pairs)} (state, event) pairs, {len(counts)} distinct transitions, "
              f"{len(DIAGRAM) - len(missing_from(DIAGRAM, records))}/{len(DIAGRAM)} "
              f"diagram transitions, {len(REQUIRED) - len(missing(records))}/"
              f"{len(REQUIRED)} required, {hit_table}/{len(TABLE)} of the table, "
              f"{len(extra)} not in the table."]
    return "\n".join(lines) + "\n"


def missing_from(transitions, records) -> list[Transition]:
    """The ``transitions`` not in ``records``."""
    seen = set(records)
    return [t for t in transitions if t not in seen]


def coverage_data(records, hits: dict[Transition, set[str]] | None = None) -> dict:
    """The coverage as JSON-ready data: every distinct traced (before, event, after) with
    its count, the tests that showed it (from ``hits``, default :data:`HITS`), and
    whether the table lists it (``in_table``; ``null`` for no state change).
    ``records``: a list of records, or a :class:`~collections.Counter` of them."""
    hits = HITS if hits is None else hits
    counts = Counter(records)
    rows = []
    for t, n in sorted(counts.items(), key=lambda kv: _order(kv[0])):
        in_table = None if t.before == t.after else find(t.before, t.event, t.after) is not None
        rows.append({"before": t.before, "event": t.event, "after": t.after, "count": n,
                     "tests": sorted(hits.get(t, ())), "in_table": in_table})
    return {"format": "toe-state-coverage", "version": 1, "records": rows}


def write_coverage(path: str | Path, records, hits=None) -> Path:
    """Write :func:`coverage_data` to ``path`` (for ``python -m toe.sim.state_diagram
    --coverage path``)."""
    path = Path(path)
    path.write_text(json.dumps(coverage_data(records, hits), indent=1) + "\n")
    return path
