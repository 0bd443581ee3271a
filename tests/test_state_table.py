"""The transition table of hdl/tcp/states.py and what is generated from it (fast, no
simulator): RFC 9293 figure 5 is in it, every state is reachable and can close, the
names match the engine's trace, and the markdown and SVG have one row / arrow each."""

import itertools
import json
import xml.etree.ElementTree as ET

from toe.hdl.host_if import CommandOp
from toe.hdl.tcp import states
from toe.hdl.tcp.states import TRANSITIONS, TcpState
from toe.hdl.tcp.tcb import TcpState as TcbTcpState
from toe.sim import state_coverage, state_diagram
from toe.sim.state_coverage import Transition, event_name

#: RFC 9293 s3.3.2 figure 5, written out from the RFC (not from the table), with the
#: engine's event names; SYN-RECEIVED --RST--> LISTEN is the engine's return to the
#: listener (the TCB goes to CLOSED); LISTEN --SEND--> SYN-SENT is not offered.
FIGURE_5 = {
    ("CLOSED", "LISTEN", "LISTEN"), ("LISTEN", "UNLISTEN", "CLOSED"),
    ("CLOSED", "CONNECT", "SYN_SENT"), ("LISTEN", "SYN", "SYN_RECEIVED"),
    ("SYN_SENT", "SYN", "SYN_RECEIVED"), ("SYN_SENT", "SYN-ACK", "ESTABLISHED"),
    ("SYN_SENT", "CLOSE", "CLOSED"), ("SYN_RECEIVED", "ACK", "ESTABLISHED"),
    ("SYN_RECEIVED", "CLOSE", "FIN_WAIT_1"), ("SYN_RECEIVED", "RST", "CLOSED"),
    ("ESTABLISHED", "CLOSE", "FIN_WAIT_1"), ("ESTABLISHED", "FIN", "CLOSE_WAIT"),
    ("FIN_WAIT_1", "ACK", "FIN_WAIT_2"), ("FIN_WAIT_1", "FIN", "CLOSING"),
    ("FIN_WAIT_2", "FIN", "TIME_WAIT"), ("CLOSING", "ACK", "TIME_WAIT"),
    ("TIME_WAIT", "timeout", "CLOSED"), ("CLOSE_WAIT", "CLOSE", "LAST_ACK"),
    ("LAST_ACK", "ACK", "CLOSED"),
}


def _event_names() -> set[str]:
    """Every name event_name can produce."""
    names = set()
    for flags, data in itertools.product(range(256), (False, True)):
        names.add(event_name("seg", flags, data, CommandOp.LISTEN))
    names.add(event_name("seg", 0, False, CommandOp.LISTEN, icmp=True))
    for op in CommandOp:
        names.add(event_name("cmd", 0, False, op))
    for source in ("delivered", "written", "output", "timer"):
        names.add(event_name(source, 0, False, CommandOp.LISTEN))
    return names


def test_tcb_reexports_the_state():
    assert TcbTcpState is TcpState
    assert len(TcpState) == 11


def test_figure_5_is_in_the_table():
    names = {t.names for t in TRANSITIONS}
    assert FIGURE_5 <= names, FIGURE_5 - names
    assert {t.names for t in states.figure_transitions()} == FIGURE_5


def test_no_duplicates_and_no_self_loops():
    keys = [t.names for t in TRANSITIONS]
    assert len(keys) == len(set(keys))
    assert all(t.before != t.after for t in TRANSITIONS)
    assert all(t.rfc for t in TRANSITIONS)


def test_every_state_reachable_from_closed():
    assert states.reachable(TcpState.CLOSED) == set(TcpState)


def test_every_state_can_reach_closed():
    for state in TcpState:
        assert TcpState.CLOSED in states.reachable(state), state


def test_states_are_members():
    for t in TRANSITIONS:
        assert isinstance(t.before, TcpState) and isinstance(t.after, TcpState)


def test_events_are_trace_event_names():
    produced = _event_names()
    assert {t.event for t in TRANSITIONS} <= produced
    assert set(states.EVENTS) == produced


def test_lookup_helpers():
    assert states.allowed("ESTABLISHED", "FIN", "CLOSE_WAIT")
    assert states.allowed(TcpState.SYN_SENT, "SYN-ACK", TcpState.ESTABLISHED)
    assert states.allowed("ESTABLISHED", "data", "ESTABLISHED")  # no state change
    assert not states.allowed("ESTABLISHED", "SYN", "CLOSED")
    assert not states.allowed("CLOSED", "SYN", "ESTABLISHED")
    assert states.find("TIME-WAIT", "timeout", "CLOSED").in_figure
    assert states.find("ESTABLISHED", "SYN", "CLOSED") is None
    out = states.transitions_from(TcpState.SYN_SENT)
    assert {t.after for t in out} == {TcpState.ESTABLISHED, TcpState.SYN_RECEIVED,
                                      TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1,
                                      TcpState.CLOSED}
    assert all(t.after == TcpState.TIME_WAIT for t in states.transitions_to("TIME_WAIT"))
    assert set(states.required_transitions()) >= set(states.figure_transitions())


def test_coverage_uses_the_table():
    assert [t.names for t in TRANSITIONS if t.in_figure] == [
        (t.before, t.event, t.after) for t in state_coverage.DIAGRAM]
    records = [Transition("CLOSED", "LISTEN", "LISTEN"),
               Transition("ESTABLISHED", "data", "ESTABLISHED"),
               Transition("ESTABLISHED", "SYN", "CLOSED")]
    assert Transition("CLOSED", "LISTEN", "LISTEN") not in state_coverage.missing(records)
    assert len(state_coverage.missing(records)) == len(state_coverage.REQUIRED) - 1
    assert state_coverage.undeclared(records) == [Transition("ESTABLISHED", "SYN", "CLOSED")]
    text = state_coverage.report(records)
    assert "| ESTABLISHED | SYN | CLOSED | 1 |" in text.split("does not list")[1]


def _coverage_file(tmp_path):
    records = [Transition(*t.names) for t in TRANSITIONS[:5]]
    records.append(Transition("ESTABLISHED", "SYN", "CLOSED"))
    hits = {r: {"test_x"} for r in records}
    return state_coverage.write_coverage(tmp_path / "state_coverage.json", records, hits)


def test_svg_has_an_arrow_per_transition(tmp_path):
    for coverage in (None, state_diagram.load_coverage([_coverage_file(tmp_path)])):
        root = ET.fromstring(state_diagram.svg(coverage))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        arrows = [e for e in root.iter("{http://www.w3.org/2000/svg}path")
                  if e.get("class") == "transition"]
        keys = [(e.get("data-from"), e.get("data-event"), e.get("data-to")) for e in arrows]
        assert sorted(keys) == sorted(t.names for t in TRANSITIONS)
        dashed = {k for k, e in zip(keys, arrows, strict=True) if e.get("stroke-dasharray")}
        assert dashed == {t.names for t in TRANSITIONS if not t.in_figure}
        drawn = {e.get("data-state") for e in root.iter("{http://www.w3.org/2000/svg}g")
                 if e.get("class") == "state"}
        assert drawn == {s.name for s in TcpState}
        if coverage is not None:
            colours = {k: e.get("stroke") for k, e in zip(keys, arrows, strict=True)}
            assert colours[TRANSITIONS[0].names] == state_diagram.COVERED
            assert colours[TRANSITIONS[-1].names] == state_diagram.UNCOVERED


def test_markdown_has_a_row_per_transition(tmp_path):
    coverage = state_diagram.load_coverage([_coverage_file(tmp_path)])
    for cov in (None, coverage):
        text = state_diagram.markdown(cov)
        rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
        assert len(rows) == len(TRANSITIONS)
        for row, t in zip(rows, TRANSITIONS, strict=True):
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[:3] == [state_diagram.label(t.before), t.event,
                                 state_diagram.label(t.after)]
    text = state_diagram.markdown(coverage)
    assert "test_x" in text and "not covered" in text and "ESTABLISHED --SYN--> CLOSED" in text


def test_main_writes_both(tmp_path):
    md, svg = tmp_path / "t.md", tmp_path / "d.svg"
    path = _coverage_file(tmp_path)
    assert state_diagram.main(["--coverage", str(path), "--markdown", str(md),
                               "--svg", str(svg)]) == 0
    ET.fromstring(svg.read_text())
    assert md.read_text().count("\n| ") == len(TRANSITIONS) + 1
    assert json.loads(path.read_text())["records"]


def test_committed_docs_are_current():
    """docs/state-table.md and docs/state-diagram.svg list the table as it is (regenerate
    with ``make state-diagram``)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    root = ET.fromstring((docs / "state-diagram.svg").read_text())
    keys = sorted((e.get("data-from"), e.get("data-event"), e.get("data-to"))
                  for e in root.iter("{http://www.w3.org/2000/svg}path")
                  if e.get("class") == "transition")
    assert keys == sorted(t.names for t in TRANSITIONS)
    rows = [line for line in (docs / "state-table.md").read_text().splitlines()
            if line.startswith("| ")][1:]
    assert len(rows) == len(TRANSITIONS)
