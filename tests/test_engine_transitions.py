"""The TCP state changes the engine's steps can make against the transition table.

Every TCP state change of :class:`hdl.tcp.engine.TcpEngine` goes through
``EventContext.set_state``, which records, at elaboration, the states it can run in and
the state it sets.  The table of :mod:`hdl.tcp.states` is the one definition of the
transitions (RFC 9293 s3.3.2 figure 5 and the engine's additions): the two must agree
both ways.
"""

import pytest
from amaranth.hdl import Fragment

from toe.hdl.config import ToeConfig
from toe.hdl.tcp.engine import TcpEngine
from toe.hdl.tcp.states import TRANSITIONS, TcpState


@pytest.fixture(scope="module")
def declared() -> set[tuple[TcpState, TcpState]]:
    engine = TcpEngine(ToeConfig(connections=16, tx_ring_bytes=256, rx_ring_bytes=256), 9)
    Fragment.get(engine, None)
    pairs = set()
    for frm, to, reference in engine.transitions:
        assert reference, "a state change without its RFC reference"
        pairs |= {(before, to) for before in frm if before != to}
    return pairs


def _reachable(steps, start, hops):
    """States reachable from ``start`` in 1..``hops`` declared steps."""
    seen, frontier = set(), {start}
    for _ in range(hops):
        frontier = {to for (frm, to) in steps if frm in frontier}
        seen |= frontier
    return seen


def test_every_engine_state_change_is_in_the_table(declared):
    """No state change in the engine that the table does not list (RFC 9293 s3.3.2:
    the table is the engine's state diagram).  One event may run several steps (a
    SYN-ACK with FIN: SYN-SENT -> ESTABLISHED -> CLOSE-WAIT), so a step counts as
    listed when the table has an event from its state that goes through it."""
    table = {(t.before, t.after) for t in TRANSITIONS}
    unlisted = {(frm, to) for frm, to in declared
                if not any((frm, end) in table for end in {to} | _reachable(declared, to, 2))}
    assert unlisted == set()


def test_every_table_transition_is_made_by_the_engine(declared):
    """No table entry that no chain of the engine's steps makes (a stale table)."""
    table = {(t.before, t.after) for t in TRANSITIONS if t.before != t.after}
    stale = {(b, a) for b, a in table if a not in _reachable(declared, b, 3)}
    assert stale == set()
