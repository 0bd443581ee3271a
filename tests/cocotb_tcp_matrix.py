"""Connection tests on Verilator: every synchronized state against every kind of segment.

A systematic (state x event) matrix, run through tests/test_tcp.py.  For each
synchronized state of RFC 9293 s3.3.2 a driver brings a fresh passive connection into
that state, and each event is then applied to it:

==========================  =======================================================
state                       how the connection gets there
==========================  =======================================================
ESTABLISHED                 passive open (LISTEN, SYN, SYN-ACK, ACK)
FIN_WAIT_1                  host SHUTDOWN: the engine's FIN, not acknowledged
FIN_WAIT_2                  FIN_WAIT_1, then the peer acknowledges the FIN
CLOSE_WAIT                  the peer's FIN
CLOSING                     FIN_WAIT_1, then the peer's FIN not acknowledging ours
LAST_ACK                    CLOSE_WAIT, then host CLOSE: the engine's FIN, not ACKed
TIME_WAIT                   FIN_WAIT_2, then the peer's FIN
==========================  =======================================================

events: ``rst_exact`` (RST at RCV.NXT), ``rst_in_window``, ``rst_outside_window``,
``syn``, ``ack_too_new`` (SEG.ACK > SND.NXT), ``data_outside_window``,
``data_in_window``.  The tests are generated in a loop as ``test_<state>_<event>``;
each docstring cites the RFC clause it checks.

Every segment the engine sends is checked (flags, seq, ack, window, payload length),
the engine's own trace port (:class:`sim.state_coverage.TraceMonitor`) shows the state
before and after each segment it processed, and the host events are checked.  The
RFC 5961 s7 challenge ACK budget (5 per second, reset with the DUT at each test) allows
each test at most a few challenge ACKs: every test here provokes at most two.
"""

from dataclasses import dataclass

import cocotb
from cocotb.triggers import Timer
from cocotb_tcp import US, Bench, check_ack, start
from scapy.layers.inet import TCP

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.hdl.proto.tcp import seq_before_eq
from toe.sim.state_coverage import TraceMonitor, Transition
from toe.sim.tcp_peer import ScriptedPeer, flags_of

MOD = 2**32
#: Trace event names (sim.state_coverage.event_name) of a segment arrival.
SEGMENT_EVENTS = {"RST", "SYN", "SYN-ACK", "FIN", "data", "ACK", "no-ACK"}
#: Host events that would mean the connection ended.
ENDING = {EventKind.RESET, EventKind.TIMEOUT, EventKind.CLOSED, EventKind.ERROR,
          EventKind.RELEASED}
FAR = 0x1000_0000  # a sequence offset far outside any window


@dataclass
class Conn:
    """One connection brought into a state: what the events and checks need."""

    b: Bench
    peer: ScriptedPeer  # peer.snd_nxt is the engine's RCV.NXT, peer.rcv_nxt our SND.UNA
    conn: int
    state: str  # the engine's state (a TcpState name), confirmed by its trace
    snd_nxt: int  # the engine's SND.NXT
    trace: list[Transition]
    right_edge: int  # RCV.NXT + RCV.WND as last advertised by the engine
    fin_seq: int | None = None  # our FIN: its retransmissions (RTO) are skipped


# -- Segments from the engine ---------------------------------------------------------------


def _fin_again(st: Conn, segment) -> bool:
    """A retransmission of our FIN (the RTO may expire during a test in FIN_WAIT_1,
    CLOSING, LAST_ACK): not an answer to the event."""
    return (st.fin_seq is not None and flags_of(segment) == "FA"
            and segment[TCP].seq == st.fin_seq and not bytes(segment[TCP].payload))


async def _answer(st: Conn, timeout_us: float = 100):
    """The engine's next TCP segment, retransmitted FINs skipped."""
    while True:
        segment = await st.b.recv_tcp(timeout_us=timeout_us)
        if not _fin_again(st, segment):
            return segment


async def _quiet(st: Conn, us: float = 50) -> None:
    """No TCP segment (other than a retransmitted FIN) for ``us`` microseconds."""
    first = len(st.b.tb.sent)
    await Timer(us * US, "ns")
    extra = [f.ether for f in st.b.tb.sent[first:]
             if TCP in f.ether and not _fin_again(st, f.ether)]
    assert not extra, f"unexpected answer in {st.state}: {[e.summary() for e in extra]}"


def _check_window(st: Conn, segment) -> None:
    """The window is the free RX ring (here never full) and its right edge never moves
    left (RFC 9293 s3.8.6, SHLD-14: the receiver should not shrink the window)."""
    tcp = segment[TCP]
    assert 0 < tcp.window <= st.b.config.rx_ring_bytes, tcp.window
    edge = (tcp.ack + tcp.window) % MOD
    assert seq_before_eq(st.right_edge, edge), f"window shrank: {edge} < {st.right_edge}"
    st.right_edge = edge


def _check_ack(st: Conn, segment) -> None:
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, no text, the window as above."""
    check_ack(segment, st.peer)  # flags "A", ack = RCV.NXT, no payload
    assert segment[TCP].seq == st.snd_nxt % MOD, (segment[TCP].seq, st.snd_nxt)
    _check_window(st, segment)


# -- The engine's trace and host events -------------------------------------------------------


def _last_state(st: Conn) -> str | None:
    return st.trace[-1].after if st.trace else None


async def _reach(st: Conn, state: str) -> None:
    """Wait until the engine's trace shows the connection in ``state``."""
    for _ in range(200):
        if _last_state(st) == state:
            st.state = state
            return
        await Timer(US / 2, "ns")
    raise AssertionError(f"not in {state}: trace ends {st.trace[-3:]}")


async def _steps(st: Conn, since: int, *afters: str) -> None:
    """The engine processed exactly ``len(afters)`` segments since trace index ``since``,
    each starting in ``st.state`` and ending in the state given."""

    def steps():
        return [t for t in st.trace[since:] if t.event in SEGMENT_EVENTS]

    for _ in range(200):
        if len(steps()) >= len(afters):
            break
        await Timer(US / 2, "ns")
    got = [(t.before, t.after) for t in steps()]
    assert got == [(st.state, a) for a in afters], (got, st.state, afters)


def _still_open(st: Conn, since: int) -> None:
    """No host event that ends the connection."""
    ended = [e for e in st.b.host.events[since:] if e.kind in ENDING]
    assert not ended, [str(e) for e in ended]


async def _alive(st: Conn) -> None:
    """The TCB is still there with the same SND.NXT and RCV.NXT: a segment far outside
    the window is answered <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293 s3.10.7.4
    first), the state unchanged."""
    since = len(st.trace)
    st.b.tb.send(st.peer.segment("A", seq=st.peer.snd_nxt + FAR))
    _check_ack(st, await _answer(st))
    await _steps(st, since, st.state)


async def _counter(st: Conn, name: str) -> int:
    return (await st.b.counters())[name]


# -- Drivers: a fresh passive connection in each state ---------------------------------------


async def _established(dut) -> Conn:
    b = await start(dut)
    trace: list[Transition] = []
    TraceMonitor(dut, trace)
    await b.listen(80)
    peer = ScriptedPeer(b.config, isn=0x3000_0000)
    conn, synack = await b.accept(peer)
    st = Conn(b, peer, conn, "ESTABLISHED", (synack[TCP].seq + 1) % MOD, trace,
              right_edge=(synack[TCP].ack + synack[TCP].window) % MOD)
    await _reach(st, "ESTABLISHED")
    return st


async def _send_fin(st: Conn, op: CommandOp) -> None:
    """SHUTDOWN or CLOSE: the engine's FIN <SEQ=SND.NXT><ACK=RCV.NXT><CTL=FIN,ACK>."""
    st.b.host.command(op, conn=st.conn)
    fin = await _answer(st)
    assert flags_of(fin) == "FA" and fin[TCP].seq == st.snd_nxt, fin.summary()
    assert fin[TCP].ack == st.peer.snd_nxt and not bytes(fin[TCP].payload)
    _check_window(st, fin)
    st.fin_seq = st.snd_nxt
    st.snd_nxt = (st.snd_nxt + 1) % MOD


async def _peer_fin(st: Conn) -> None:
    """The peer's FIN (acknowledging what ``peer.rcv_nxt`` says): ACKed, PEER_FIN."""
    since = len(st.b.host.events)
    st.b.tb.send(st.peer.segment("FA"))
    _check_ack(st, await _answer(st))
    event = await st.b.host.event(EventKind.PEER_FIN, conn=st.conn, since=since)
    assert event.value == 0  # no data before it


async def _fin_wait_1(dut) -> Conn:
    st = await _established(dut)
    await _send_fin(st, CommandOp.SHUTDOWN)
    await _reach(st, "FIN_WAIT_1")
    return st


async def _fin_wait_2(dut) -> Conn:
    st = await _fin_wait_1(dut)
    st.peer.rcv_nxt = st.snd_nxt  # acknowledges our FIN
    st.b.tb.send(st.peer.segment("A"))
    await _reach(st, "FIN_WAIT_2")
    return st


async def _close_wait(dut) -> Conn:
    st = await _established(dut)
    await _peer_fin(st)
    await _reach(st, "CLOSE_WAIT")
    return st


async def _closing(dut) -> Conn:
    st = await _fin_wait_1(dut)
    await _peer_fin(st)  # its ACK field is our FIN's sequence number: not acknowledged
    await _reach(st, "CLOSING")
    return st


async def _last_ack(dut) -> Conn:
    st = await _close_wait(dut)
    await _send_fin(st, CommandOp.CLOSE)
    await _reach(st, "LAST_ACK")
    return st


async def _time_wait(dut) -> Conn:
    st = await _fin_wait_2(dut)
    await _peer_fin(st)
    await _reach(st, "TIME_WAIT")
    return st


DRIVERS = {
    "established": (_established, "ESTABLISHED (passive open)"),
    "fin_wait_1": (_fin_wait_1, "FIN-WAIT-1 (host SHUTDOWN, our FIN not acknowledged)"),
    "fin_wait_2": (_fin_wait_2, "FIN-WAIT-2 (our FIN acknowledged)"),
    "close_wait": (_close_wait, "CLOSE-WAIT (the peer's FIN received)"),
    "closing": (_closing, "CLOSING (host SHUTDOWN, then the peer's FIN crossing ours)"),
    "last_ack": (_last_ack, "LAST-ACK (the peer's FIN, then host CLOSE: our FIN not "
                            "acknowledged)"),
    "time_wait": (_time_wait, "TIME-WAIT (FIN-WAIT-2, then the peer's FIN)"),
}
#: States in which the peer has not sent FIN: text is still received.
RECEIVING = ("established", "fin_wait_1", "fin_wait_2")


# -- Events ---------------------------------------------------------------------------------


async def _rst_exact(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    b.tb.send(peer.segment("R", seq=peer.snd_nxt))
    await _steps(st, trace, "CLOSED")
    # The engine tells the host whenever the host holds the id (every state here).
    event = await b.host.event(EventKind.RESET, conn=st.conn, since=events)
    assert event.code == ErrorCode.RESET, event
    if st.state == "LAST_ACK":  # CLOSE was issued: the id is free again
        await b.host.event(EventKind.RELEASED, conn=st.conn, since=events)
    await _quiet(st)  # no answer to a RST
    assert await _counter(st, "tcp_resets_in") == 1
    # The TCB is gone: a segment to the pair reaches the closed-port handler,
    # <SEQ=SEG.ACK><CTL=RST> (RFC 9293 s3.10.7.1).
    probe = (st.snd_nxt + 7) % MOD
    b.tb.send(peer.segment("A", seq=peer.snd_nxt, ack=probe))
    rst = await _answer(st)
    assert flags_of(rst) == "R" and rst[TCP].seq == probe, rst.summary()
    assert not bytes(rst[TCP].payload)


async def _rst_in_window(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    b.tb.send(peer.segment("R", seq=peer.snd_nxt + b.config.rx_ring_bytes // 2))
    _check_ack(st, await _answer(st))
    await _steps(st, trace, st.state)
    assert await _counter(st, "tcp_challenge_acks") == 1
    _still_open(st, events)
    await _alive(st)


async def _rst_outside_window(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    b.tb.send(peer.segment("R", seq=peer.snd_nxt + 100_000))  # beyond the window
    b.tb.send(peer.segment("R", seq=peer.snd_nxt - 100_000))  # before it
    await _quiet(st)
    await _steps(st, trace, st.state, st.state)
    counts = await b.counters()
    assert counts["tcp_challenge_acks"] == 0 and counts["tcp_resets_in"] == 0
    _still_open(st, events)
    await _alive(st)


async def _syn(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    # At RCV.NXT (in the window) and far outside the window: the same answer.
    for offset in (0, FAR):
        b.tb.send(peer.segment("S", seq=peer.snd_nxt + offset, options=[("MSS", 1460)]))
        _check_ack(st, await _answer(st))
    await _steps(st, trace, st.state, st.state)
    counts = await b.counters()
    assert counts["tcp_challenge_acks"] >= 1 and counts["tcp_challenge_limited"] == 0
    _still_open(st, events)
    await _alive(st)


async def _ack_too_new(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    had = bytes(b.host.received[st.conn])
    b.tb.send(peer.segment("PA", b"zz", seq=peer.snd_nxt, ack=st.snd_nxt + 5000))
    _check_ack(st, await _answer(st))  # ACK = RCV.NXT: the text was dropped
    await _steps(st, trace, st.state)
    await _quiet(st)
    assert bytes(b.host.received[st.conn]) == had
    _still_open(st, events)
    await _alive(st)


async def _data_outside_window(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    had = bytes(b.host.received[st.conn])
    ring = b.config.rx_ring_bytes
    for seq in (peer.snd_nxt - 600, peer.snd_nxt + 2 * ring):  # all old, all beyond
        b.tb.send(peer.segment("PA", bytes(range(100)), seq=seq))
        _check_ack(st, await _answer(st))
    await _steps(st, trace, st.state, st.state)
    await _quiet(st)
    assert bytes(b.host.received[st.conn]) == had
    _still_open(st, events)
    await _alive(st)


async def _data_in_window(st: Conn) -> None:
    b, peer = st.b, st.peer
    events, trace = len(b.host.events), len(st.trace)
    had = bytes(b.host.received[st.conn])
    payload = b"matrix data"
    if st.state in ("ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2"):
        b.tb.send(peer.segment("PA", payload))  # at RCV.NXT; RCV.NXT moves past it
        _check_ack(st, await _answer(st))
        await _steps(st, trace, st.state)
        assert await b.host.bytes_received(st.conn, len(had) + len(payload)) == had + payload
    else:
        b.tb.send(peer.segment("PA", payload, seq=peer.snd_nxt))  # at RCV.NXT
        await _quiet(st)  # the text is ignored; nothing else in the segment asks for an answer
        await _steps(st, trace, st.state)
        assert bytes(b.host.received[st.conn]) == had
    _still_open(st, events)
    await _alive(st)  # RCV.NXT did not move past ignored text


def _doc_rst_exact(state: str) -> str:
    told = ("the user gets \"connection reset\" (RESET), enter CLOSED, delete the TCB"
            if state in RECEIVING + ("close_wait",) else
            "\"enter the CLOSED state, delete the TCB, and return\" (the engine still "
            "reports RESET: the host holds the id)")
    return ("RFC 5961 s3.2 / RFC 9293 s3.10.7.4 second: a RST at exactly RCV.NXT resets "
            f"the connection without an answer: {told}.  Afterwards a segment to the pair "
            "finds no TCB: <SEQ=SEG.ACK><CTL=RST> (s3.10.7.1).")


def _doc_data_in_window(state: str) -> str:
    if state in RECEIVING:
        return ("RFC 9293 s3.10.7.4 seventh: in-order text at RCV.NXT goes to the user, "
                "RCV.NXT advances and <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> acknowledges it; "
                "the window's right edge does not move left (s3.8.6).")
    return ("RFC 9293 s3.10.7.4 seventh, CLOSE-WAIT/CLOSING/LAST-ACK/TIME-WAIT: \"This "
            "should not occur since a FIN has been received from the remote side.  Ignore "
            "the segment text.\"  Text at RCV.NXT (acceptable, first check; its ACK of "
            "SND.UNA changes nothing, fifth) reaches no user and RCV.NXT stays; no step "
            "asks for an answer, so nothing is sent.")


EVENTS = {
    "rst_exact": (_rst_exact, _doc_rst_exact),
    "rst_in_window": (_rst_in_window, lambda state: (
        "RFC 5961 s3.2 (RFC 9293 s3.10.7.4 second): a RST in the window but not at "
        "RCV.NXT gets a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (rate limited, "
        "s7) and the connection stays.")),
    "rst_outside_window": (_rst_outside_window, lambda state: (
        "RFC 5961 s3.2 / RFC 9293 s3.10.7.4 first: a RST outside the window (beyond it, "
        "and before it) is dropped silently; the connection stays.")),
    "syn": (_syn, lambda state: (
        "RFC 5961 s4.2 / RFC 9293 s3.10.7.4 fourth: a SYN, whatever its sequence number "
        "(at RCV.NXT, far outside the window), is answered with <SEQ=SND.NXT><ACK=RCV.NXT>"
        "<CTL=ACK> and dropped; the connection stays.")),
    "ack_too_new": (_ack_too_new, lambda state: (
        "RFC 9293 s3.10.7.4 fifth / RFC 5961 s5.2: a segment acknowledging something not "
        "yet sent (SEG.ACK > SND.NXT) gets <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is "
        "dropped: its text at RCV.NXT is not delivered.")),
    "data_outside_window": (_data_outside_window, lambda state: (
        "RFC 9293 s3.10.7.4 first: text entirely outside the window (all before RCV.NXT, "
        "all beyond RCV.NXT + RCV.WND) is unacceptable: <SEQ=SND.NXT><ACK=RCV.NXT>"
        "<CTL=ACK>, the segment dropped, nothing delivered.")),
    "data_in_window": (_data_in_window, _doc_data_in_window),
}

#: (state, event) pairs where the engine deviates from the RFC: the assertion stays, the
#: test is marked expect_fail (see the comment at each entry).
DEVIATIONS: dict[tuple[str, str], str] = {}


def _make_test(state: str, event: str):
    drive, state_doc = DRIVERS[state]
    apply, event_doc = EVENTS[event]

    async def run(dut):
        st = await drive(dut)
        await apply(st)
        await st.b.finish()

    name = f"test_{state}_{event}"
    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"{state_doc}: {event_doc(state)}"
    return name, cocotb.test(expect_fail=(state, event) in DEVIATIONS)(run)


for _state in DRIVERS:
    for _event in EVENTS:
        _name, _test = _make_test(_state, _event)
        globals()[_name] = _test
del _state, _event, _name, _test
