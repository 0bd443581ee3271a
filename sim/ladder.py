"""TCP ladder (sequence) diagrams as SVG, drawn from any pcap or pcapng file.

The figure is the one of every TCP textbook: two vertical lines for the two ends of one
connection, time running downward, and one slanted arrow per segment from the sender's line
to the receiver's, labelled with its flags and numbers (``SYN seq=0 win=4096 <mss 1460>``,
``ACK seq=1 ack=1 len=100 win=4096``).  Beside each line is written the TCP state of that
end, as in the state diagram of RFC 9293 s3.3.2 (figure 5): CLOSED, LISTEN, SYN-SENT,
SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK and
TIME-WAIT.  States that change at a segment are written in bold where the change happens
(the sender's at the tail of the arrow, the receiver's at its head); the others in grey.

The states are inferred by a passive tracker for each end, which follows the segments
through the transitions of RFC 9293 s3.3.2 and the segment processing rules of s3.10.7:

* the end that sends the first SYN starts CLOSED; the other is assumed to be in LISTEN
  (unless it opens actively too, or answers the SYN with a RST: then it starts CLOSED);
* sending SYN: SYN-SENT; receiving a SYN when not synchronized: SYN-RECEIVED (from LISTEN,
  or from SYN-SENT in a simultaneous open, s3.5 figure 8); an ACK of our SYN in
  SYN-SENT/SYN-RECEIVED: ESTABLISHED;
* sending FIN: ESTABLISHED -> FIN-WAIT-1, CLOSE-WAIT -> LAST-ACK; receiving FIN:
  ESTABLISHED -> CLOSE-WAIT, FIN-WAIT-1 -> CLOSING, FIN-WAIT-2 -> TIME-WAIT (s3.6); our FIN
  acknowledged (``SEG.ACK == FIN's seq + 1``): FIN-WAIT-1 -> FIN-WAIT-2, CLOSING ->
  TIME-WAIT, LAST-ACK -> CLOSED;
* RST sent or received: CLOSED, or back to LISTEN for a SYN-RECEIVED that came from LISTEN
  (s3.10.7.4); a RST without ACK in SYN-SENT, or in LISTEN, is ignored (s3.10.7.2-3).

A capture sees each segment at one point; the receiver's change is drawn as happening on
arrival.  When the receiver's own next segments show that it had not yet received a SYN or
FIN (they do not acknowledge it, as in a simultaneous open or close, s3.5 figure 8 and s3.6
figure 13), the arrival is moved after those segments and the arrows cross, as in the
RFC's figures.  A caller with an authoritative source (the engine's own trace) can pass the
states explicitly instead.

Long transfers are summarised: a run of more than ``collapse_after`` consecutive segments
without SYN, FIN or RST and without a state change is drawn as its first two and last two
segments around one row such as ``⋮ 1,234 segments: A→B 1,048,576 bytes, B→A 0 bytes,
3 retransmissions`` (the counts are of the segments not drawn; bytes are payload bytes on
the wire, retransmissions included).  Retransmissions (a segment occupying sequence space
that was already sent) and, optionally, duplicate ACKs (RFC 5681 s2) are marked.

Sequence and acknowledgment numbers are relative to each side's initial sequence number
(the seq of its SYN, or one less than the first seq seen) unless ``relative=False``; the
window is the raw header field.  Usage::

    python -m toe.sim.ladder capture.pcapng -o ladder.svg --names engine Linux
    python -m toe.sim.ladder capture.pcapng --list
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet
from scapy.utils import rdpcap

from toe.hdl.proto.tcp import (
    ACK_FLAG,
    FIN,
    RST,
    SEQ_MOD,
    SYN,
    flag_names,
    seq_before,
    seq_before_eq,
    seq_diff,
)
from toe.hdl.tcp.states import TcpState
from toe.sim import state_diagram
from toe.sim.decode import describe
from toe.sim.peer import tcp_payload

__all__ = [
    "STATES",
    "Connection",
    "ConnectionInfo",
    "StateChange",
    "Row",
    "Ladder",
    "list_connections",
    "ladder_from_packets",
    "render_ladder",
    "main",
]

#: The states of RFC 9293 s3.3.2 with the RFC's hyphenated names: those of
#: :class:`hdl.tcp.states.TcpState`, spelt by :func:`sim.state_diagram.label`.
STATES = tuple(state_diagram.label(state) for state in TcpState)


# --------------------------------------------------------------------------- connections


@dataclass(frozen=True)
class Connection:
    """A connection's 4-tuple, oriented: end A is drawn on the left, end B on the right."""

    ip_a: str
    port_a: int
    ip_b: str
    port_b: int

    @property
    def endpoint_a(self) -> str:
        return f"{self.ip_a}:{self.port_a}"

    @property
    def endpoint_b(self) -> str:
        return f"{self.ip_b}:{self.port_b}"

    @property
    def key(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """The orientation-free identity of the connection."""
        a, b = (self.ip_a, self.port_a), (self.ip_b, self.port_b)
        return (a, b) if a <= b else (b, a)

    def reversed(self) -> Connection:
        return Connection(self.ip_b, self.port_b, self.ip_a, self.port_a)

    def __str__(self) -> str:
        return f"{self.endpoint_a} <-> {self.endpoint_b}"


@dataclass(frozen=True)
class ConnectionInfo:
    """One line of :func:`list_connections`."""

    index: int
    connection: Connection
    segments: int
    bytes_ab: int
    bytes_ba: int
    first_time: float

    def __str__(self) -> str:
        c = self.connection
        return (f"{self.index}: {c}  {self.segments} segments, "
                f"{c.endpoint_a} sent {self.bytes_ab:,} bytes, "
                f"{c.endpoint_b} sent {self.bytes_ba:,} bytes")


@dataclass(frozen=True)
class _Segment:
    index: int  # in the connection
    time: float  # seconds, absolute
    from_a: bool
    flags: int
    seq: int
    ack: int
    length: int
    window: int
    options: tuple
    packet: Packet

    @property
    def space(self) -> int:
        """Sequence space occupied: payload plus one for SYN and one for FIN."""
        return self.length + bool(self.flags & SYN) + bool(self.flags & FIN)

    @property
    def end(self) -> int:
        return (self.seq + self.space) % SEQ_MOD


def _tcp_frames(packets: Iterable[Packet]) -> list[tuple[float, Packet, IP, TCP]]:
    out = []
    for pkt in packets:
        if IP not in pkt or TCP not in pkt:
            continue
        ip = pkt[IP]
        if ip.version != 4 or not isinstance(ip.payload, TCP):
            continue
        out.append((float(pkt.time), pkt, ip, ip[TCP]))
    return out


def _orient(frames: list[tuple[float, Packet, IP, TCP]]) -> Connection:
    """A is the sender of the first pure SYN, else the receiver of the first SYN+ACK, else
    the sender of the first segment."""
    for _, _, ip, tcp in frames:
        if int(tcp.flags) & (SYN | ACK_FLAG) == SYN:
            return Connection(ip.src, tcp.sport, ip.dst, tcp.dport)
    for _, _, ip, tcp in frames:
        if int(tcp.flags) & (SYN | ACK_FLAG) == SYN | ACK_FLAG:
            return Connection(ip.dst, tcp.dport, ip.src, tcp.sport)
    _, _, ip, tcp = frames[0]
    return Connection(ip.src, tcp.sport, ip.dst, tcp.dport)


def _group(packets: Iterable[Packet]) -> list[tuple[Connection, list]]:
    """The TCP frames by connection, in order of first appearance."""
    groups: dict[tuple, list] = {}
    for frame in _tcp_frames(packets):
        _, _, ip, tcp = frame
        a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        groups.setdefault((a, b) if a <= b else (b, a), []).append(frame)
    return [(_orient(frames), frames) for frames in groups.values()]


def _load(source: str | Path | Iterable[Packet]) -> list[Packet]:
    if isinstance(source, (str, Path)):
        return list(rdpcap(str(source)))
    return list(source)


def list_connections(source: str | Path | Iterable[Packet]) -> list[ConnectionInfo]:
    """The IPv4 TCP connections (by 4-tuple) in a pcap/pcapng file or a list of packets,
    in order of first appearance; ``index`` is what ``connection=`` accepts."""
    infos = []
    for i, (conn, frames) in enumerate(_group(_load(source))):
        sent = {True: 0, False: 0}
        for _, _, ip, tcp in frames:
            sent[ip.src == conn.ip_a and tcp.sport == conn.port_a] += len(tcp_payload(ip))
        infos.append(ConnectionInfo(i, conn, len(frames), sent[True], sent[False], frames[0][0]))
    return infos


def _select(groups: list[tuple[Connection, list]], connection) -> tuple[Connection, list]:
    if not groups:
        raise ValueError("no IPv4 TCP segments in the capture")
    available = ", ".join(f"{i}: {c}" for i, (c, _) in enumerate(groups))
    if connection is None:
        return groups[0]
    if isinstance(connection, int):
        if not 0 <= connection < len(groups):
            raise ValueError(f"no connection {connection}; the capture has {available}")
        return groups[connection]
    wanted = connection if isinstance(connection, Connection) else Connection(*connection)
    for conn, frames in groups:
        if conn.key == wanted.key:
            return wanted, frames  # the caller's orientation
    raise ValueError(f"no connection {wanted}; the capture has {available}")


def _segments(conn: Connection, frames: list) -> list[_Segment]:
    return [
        _Segment(
            index=i, time=t, from_a=(ip.src == conn.ip_a and tcp.sport == conn.port_a),
            flags=int(tcp.flags), seq=tcp.seq, ack=tcp.ack,
            length=len(tcp_payload(ip)), window=tcp.window,
            options=tuple(tcp.options), packet=pkt,
        )
        for i, (t, pkt, ip, tcp) in enumerate(frames)
    ]


# --------------------------------------------------------------------------- state tracker


@dataclass(frozen=True)
class StateChange:
    """End ``end`` ("A" or "B") entered ``state`` when sending (``on="send"``, drawn at the
    tail of the arrow) or on arrival of a segment (``on="arrival"``, at the head)."""

    end: str
    state: str
    on: str


@dataclass
class _End:
    """A passive RFC 9293 state tracker for one end of the connection."""

    state: str
    listener: bool  # a listener stands behind this end (a SYN to it when CLOSED opens)
    passive: bool = False  # the current connection came from LISTEN (MUST-10/11 on RST)
    iss: int | None = None
    snd_max: int | None = None
    fin_seq: int | None = None  # sequence number of our FIN
    trail: list[str] = field(default_factory=list)

    def goto(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.trail.append(state)

    def _acks_syn(self, ack: int) -> bool:
        if self.iss is None:
            return True
        return seq_before(self.iss, ack) and (self.snd_max is None
                                              or seq_before_eq(ack, self.snd_max))

    def send(self, seg: _Segment) -> None:
        f = seg.flags
        if self.snd_max is None or seq_before(self.snd_max, seg.end):
            self.snd_max = seg.end
        if f & RST:
            # A RST from LISTEN, CLOSED or SYN-SENT answers an unacceptable segment and
            # leaves the state (s3.10.7.1-3); otherwise it is an abort (s3.10.4).
            if self.state in ("CLOSED", "LISTEN", "SYN-SENT"):
                return
            self.goto("LISTEN" if self.state == "SYN-RECEIVED" and self.passive else "CLOSED")
            return
        if f & SYN:
            if not f & ACK_FLAG and self.state in ("CLOSED", "LISTEN", "TIME-WAIT"):
                self.iss, self.fin_seq, self.passive = seg.seq, None, False
                self.snd_max = seg.end
                self.goto("SYN-SENT")
            elif f & ACK_FLAG and self.state in ("CLOSED", "LISTEN", "SYN-SENT"):
                self.passive = self.state == "LISTEN" or (self.state == "CLOSED"
                                                          and self.listener)
                self.iss, self.fin_seq, self.snd_max = seg.seq, None, seg.end
                self.goto("SYN-RECEIVED")
            if self.iss is None:
                self.iss = seg.seq
        if f & FIN:
            self.fin_seq = (seg.end - 1) % SEQ_MOD
            if self.state in ("ESTABLISHED", "SYN-RECEIVED"):
                self.goto("FIN-WAIT-1")
            elif self.state == "CLOSE-WAIT":
                self.goto("LAST-ACK")

    def receive(self, seg: _Segment) -> None:
        f, state = seg.flags, self.state
        if f & RST:
            if state in ("CLOSED", "LISTEN"):
                return
            if state == "SYN-SENT":
                if f & ACK_FLAG and self._acks_syn(seg.ack):
                    self.goto("CLOSED")
                return
            self.goto("LISTEN" if state == "SYN-RECEIVED" and self.passive else "CLOSED")
            return
        if f & SYN:
            if state == "LISTEN" or (state == "CLOSED" and self.listener):
                if not f & ACK_FLAG:
                    self.passive = True
                    self.goto("SYN-RECEIVED")
            elif state == "SYN-SENT":
                if not f & ACK_FLAG:
                    self.goto("SYN-RECEIVED")  # simultaneous open (s3.5 figure 8)
                elif self._acks_syn(seg.ack):
                    self.goto("ESTABLISHED")
            elif state == "SYN-RECEIVED" and f & ACK_FLAG and self._acks_syn(seg.ack):
                self.goto("ESTABLISHED")
            # A SYN in a synchronized state draws a challenge ACK (s3.10.7.4): no change.
            return
        if not f & ACK_FLAG or state in ("CLOSED", "LISTEN", "SYN-SENT"):
            return
        if state == "SYN-RECEIVED":
            if not self._acks_syn(seg.ack):
                return
            self.goto("ESTABLISHED")
        fin_acked = self.fin_seq is not None and seg.ack == (self.fin_seq + 1) % SEQ_MOD
        if fin_acked:
            if self.state == "FIN-WAIT-1":
                self.goto("FIN-WAIT-2")
            elif self.state == "CLOSING":
                self.goto("TIME-WAIT")
            elif self.state == "LAST-ACK":
                self.goto("CLOSED")
                return
        if f & FIN:
            after = {"ESTABLISHED": "CLOSE-WAIT", "FIN-WAIT-1": "CLOSING",
                     "FIN-WAIT-2": "TIME-WAIT"}.get(self.state)
            if after:
                self.goto(after)


def _initial_ends(segs: list[_Segment]) -> tuple[_End, _End]:
    """Trackers for A and B in their state before the first segment."""
    first = segs[0]
    if first.flags & (SYN | ACK_FLAG | RST) == SYN:
        opener, other = _End("CLOSED", False), _End("LISTEN", True)
        # The other end opens actively too (simultaneous open) or refuses with a RST.
        reply = next((s for s in segs if s.from_a != first.from_a), None)
        if reply is not None and (reply.flags & RST
                                  or reply.flags & (SYN | ACK_FLAG) == SYN):
            other = _End("CLOSED", False)
        return (opener, other) if first.from_a else (other, opener)
    if first.flags & (SYN | ACK_FLAG | RST) == SYN | ACK_FLAG:
        server = _End("LISTEN", True)
        client = _End("SYN-SENT", False, iss=(first.ack - 1) % SEQ_MOD, snd_max=first.ack)
        return (server, client) if first.from_a else (client, server)
    return _End("ESTABLISHED", False), _End("ESTABLISHED", False)


def _arrival_after(segs: list[_Segment]) -> dict[int, int]:
    """Segment index -> index of the receiver's segment after which it arrives.

    A SYN or FIN whose receiver then sends segments that do not acknowledge it crossed
    them on the wire: it arrives after the last of those, before the first that
    acknowledges it (s3.5 figure 8, s3.6 figure 13).  If none acknowledges it, it arrives
    at once."""
    deferred = {}
    for k, seg in enumerate(segs):
        if not seg.flags & (SYN | FIN) or seg.flags & RST:
            continue
        covered = seg.end if seg.flags & FIN else (seg.seq + 1) % SEQ_MOD
        last = None
        for j in range(k + 1, len(segs)):
            reply = segs[j]
            if reply.from_a == seg.from_a:
                continue
            if reply.flags & ACK_FLAG and seq_before_eq(covered, reply.ack):
                if last is not None:
                    deferred[k] = last
                break
            last = j
    return deferred


def _normalize_state(state) -> str | None:
    if state is None:
        return None
    name = str(getattr(state, "name", state)).upper().replace("_", "-")
    if name not in STATES:
        raise ValueError(f"unknown TCP state {state!r}; expected one of {', '.join(STATES)}")
    return name


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One row of the ladder: a segment (``kind="segment"``) or a summary of collapsed
    segments (``kind="summary"``).

    ``time`` is in seconds since the connection's first segment; ``direction`` is
    ``"A->B"``, ``"B->A"`` or ``""`` (summary); ``state_a``/``state_b`` are the states after
    the row; ``changes`` the states entered at this row, in order.  Segment rows carry the
    header fields (``seq``/``ack`` as drawn: relative or absolute), summary rows the counts
    of the segments they stand for."""

    kind: str
    time: float
    direction: str
    label: str
    state_a: str
    state_b: str
    notes: str = ""  # the end of ``label``: options and marks such as "(retransmission)"
    changes: tuple[StateChange, ...] = ()
    index: int | None = None
    flags: str = ""
    seq: int | None = None
    ack: int | None = None
    length: int = 0
    window: int | None = None
    retransmission: bool = False
    dup_ack: int = 0
    arrives_after: int | None = None  # segment index after which it arrives, if deferred
    description: str = ""
    collapsed: int = 0
    end_time: float | None = None
    bytes_ab: int = 0
    bytes_ba: int = 0
    retransmissions: int = 0
    dup_acks: int = 0


def _flag_text(flags: int) -> str:
    return flag_names(flags) or "none"


def _options_text(seg: _Segment, rel_peer) -> str:
    parts = []
    syn = seg.flags & SYN
    for name, value in seg.options:
        if name in ("NOP", "EOL"):
            continue
        if name == "MSS" and syn:
            parts.append(f"mss {value}")
        elif name == "WScale" and syn:
            parts.append(f"wscale {value}")
        elif name == "SAckOK" and syn:
            parts.append("sackOK")
        elif name == "Timestamp" and syn:
            parts.append(f"TS {value[0]}/{value[1]}")
        elif name == "SAck" and value:
            edges = [rel_peer(v) for v in value]
            parts.append("SACK " + " ".join(f"{edges[i]}-{edges[i + 1]}"
                                            for i in range(0, len(edges) - 1, 2)))
        elif syn and name not in ("MSS", "WScale", "SAckOK", "Timestamp", "SAck"):
            parts.append(str(name))
    return f"<{', '.join(parts)}>" if parts else ""


@dataclass
class _Annotated:
    seg: _Segment
    main: str
    extra: str
    seq: int
    ack: int | None
    retransmission: bool
    dup_ack: int


def _annotate(segs: list[_Segment], relative: bool, dup_acks: bool) -> list[_Annotated]:
    # Initial sequence numbers: the seq of each side's SYN, or one less than its first seq.
    base = {True: None, False: None}
    for seg in segs:
        if seg.flags & SYN and base[seg.from_a] is None:
            base[seg.from_a] = seg.seq
    for seg in segs:
        if base[seg.from_a] is None:
            base[seg.from_a] = (seg.seq - 1) % SEQ_MOD
    for seg in segs:
        if base[not seg.from_a] is None and seg.flags & ACK_FLAG:
            base[not seg.from_a] = (seg.ack - 1) % SEQ_MOD

    def rel(from_a: bool):
        b = base[from_a] if relative else None
        return (lambda v: seq_diff(v, b)) if b is not None else (lambda v: v)

    snd_max: dict[bool, int | None] = {True: None, False: None}
    last_ack: dict[bool, tuple[int, int] | None] = {True: None, False: None}
    dups = {True: 0, False: 0}
    syn_acked = {True: False, False: False}
    out = []
    for seg in segs:
        side = seg.from_a
        # A first SYN+ACK after our SYN (simultaneous open, s3.5 figure 8) resends the SYN
        # on purpose: not counted as a retransmission.
        first_syn_ack = seg.flags & (SYN | ACK_FLAG) == SYN | ACK_FLAG and not syn_acked[side]
        retrans = (seg.space > 0 and snd_max[side] is not None and not first_syn_ack
                   and seq_before(seg.seq, snd_max[side]))
        if first_syn_ack:
            syn_acked[side] = True
        if seg.space and (snd_max[side] is None or seq_before(snd_max[side], seg.end)):
            snd_max[side] = seg.end
        dup = 0
        if seg.flags & ACK_FLAG:
            pure = seg.space == 0 and not seg.flags & RST
            peer_max = snd_max[not side]
            if (pure and last_ack[side] == (seg.ack, seg.window) and peer_max is not None
                    and seq_before(seg.ack, peer_max)):
                dups[side] += 1
                dup = dups[side]
            elif last_ack[side] is None or seq_before(last_ack[side][0], seg.ack):
                dups[side] = 0
            if last_ack[side] is None or not seq_before(seg.ack, last_ack[side][0]):
                last_ack[side] = (seg.ack, seg.window)
        seq = rel(side)(seg.seq)
        ack = rel(not side)(seg.ack) if seg.flags & ACK_FLAG else None
        main = f"{_flag_text(seg.flags)} seq={seq}"
        if ack is not None:
            main += f" ack={ack}"
        if seg.length:
            main += f" len={seg.length}"
        main += f" win={seg.window}"
        notes = [_options_text(seg, rel(not side))]
        if retrans:
            notes.append("(retransmission)")
        if dup and dup_acks:
            notes.append(f"(dup ACK #{dup})")
        out.append(_Annotated(seg, main, " ".join(n for n in notes if n), seq, ack,
                              retrans, dup if dup_acks else 0))
    return out


def _rows(
    segs: list[_Segment],
    names: tuple[str, str],
    states: Sequence | None,
    relative: bool,
    collapse_after: int | None,
    dup_acks: bool,
) -> tuple[tuple[str, str], list[Row]]:
    if states is not None and len(states) > len(segs):
        raise ValueError(f"{len(states)} explicit states for {len(segs)} segments")
    ends = _initial_ends(segs)
    initial = (ends[0].state, ends[1].state)
    notes = _annotate(segs, relative, dup_acks)
    deferred = _arrival_after(segs)
    arrivals: dict[int, list[int]] = {}
    for k, m in deferred.items():
        arrivals.setdefault(m, []).append(k)
    t0 = segs[0].time
    rows: list[Row] = []
    for seg, note in zip(segs, notes, strict=True):
        sender, receiver = (ends[0], ends[1]) if seg.from_a else (ends[1], ends[0])
        s_name, r_name = ("A", "B") if seg.from_a else ("B", "A")
        before = (ends[0].state, ends[1].state)
        for end in ends:
            end.trail = []
        sender.send(seg)
        changes = [StateChange(s_name, s, "send") for s in sender.trail]
        sender.trail = []
        for k in arrivals.get(seg.index, ()):
            sender.receive(segs[k])  # a SYN/FIN that crossed this segment arrives now
        changes += [StateChange(s_name, s, "arrival") for s in sender.trail]
        if seg.index not in deferred:
            receiver.receive(seg)
        changes += [StateChange(r_name, s, "arrival") for s in receiver.trail]
        if states is not None and seg.index < len(states):
            for i, end in enumerate(("A", "B")):
                wanted = _normalize_state(states[seg.index][i])
                if wanted is None or wanted == ends[i].state:
                    continue
                ends[i].state = wanted
                changes = [c for c in changes if c.end != end]
                if wanted != before[i]:
                    on = "send" if (i == 0) == seg.from_a else "arrival"
                    changes.append(StateChange(end, wanted, on))
        rows.append(Row(
            kind="segment", time=seg.time - t0, direction="A->B" if seg.from_a else "B->A",
            label=f"{note.main} {note.extra}".strip(), notes=note.extra, state_a=ends[0].state,
            state_b=ends[1].state, changes=tuple(changes), index=seg.index,
            flags=_flag_text(seg.flags), seq=note.seq, ack=note.ack, length=seg.length,
            window=seg.window, retransmission=note.retransmission, dup_ack=note.dup_ack,
            arrives_after=deferred.get(seg.index), description=describe(seg.packet),
        ))
    return initial, _collapse(rows, segs, deferred, names, collapse_after)


def _collapse(rows: list[Row], segs: list[_Segment], deferred: dict[int, int],
              names: tuple[str, str], collapse_after: int | None) -> list[Row]:
    if not collapse_after:
        return rows
    busy = set()  # rows a crossing SYN/FIN is in flight over
    for k, m in deferred.items():
        busy.update(range(k, m + 1))

    def plain(row: Row) -> bool:
        return (not row.changes and row.index not in busy
                and not segs[row.index].flags & (SYN | FIN | RST))

    out: list[Row] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and plain(rows[j]):
            j += 1
        run = rows[i:j]
        if len(run) > max(collapse_after, 4):
            hidden = run[2:-2]
            out += run[:2]
            out.append(_summary(hidden, segs, names))
            out += run[-2:]
        else:
            out += run
        if j < len(rows):
            out.append(rows[j])
        i = j + 1
    return out


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _summary(hidden: list[Row], segs: list[_Segment], names: tuple[str, str]) -> Row:
    ab = sum(segs[r.index].length for r in hidden if r.direction == "A->B")
    ba = sum(segs[r.index].length for r in hidden if r.direction == "B->A")
    retrans = sum(r.retransmission for r in hidden)
    dups = sum(1 for r in hidden if r.dup_ack)
    label = (f"⋮ {_plural(len(hidden), 'segment')}: {names[0]}→{names[1]} {ab:,} bytes, "
             f"{names[1]}→{names[0]} {ba:,} bytes, {_plural(retrans, 'retransmission')}")
    if dups:
        label += f", {_plural(dups, 'duplicate ACK')}"
    last = hidden[-1]
    return Row(kind="summary", time=hidden[0].time, direction="", label=label,
               state_a=last.state_a, state_b=last.state_b, collapsed=len(hidden),
               end_time=last.time, bytes_ab=ab, bytes_ba=ba, retransmissions=retrans,
               dup_acks=dups)


# --------------------------------------------------------------------------- SVG

_FONT = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
_CHAR = 0.6  # advance of a monospace glyph, in ems
_ROW, _SUMMARY_ROW, _DROP, _TOP_PAD = 46, 44, 16, 14
_COLORS = {"A->B": "#1f5fbf", "B->A": "#2e7d32", "RST": "#c62828"}


def _attr(value) -> str:
    return escape(str(value), {'"': "&quot;"})


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start",
          cls: str = "", weight: str | None = None, fill: str = "#000",
          style: str | None = None, rotate: float | None = None,
          max_width: float | None = None) -> str:
    attrs = [f'x="{x:.1f}"', f'y="{y:.1f}"', f'font-size="{size}"', f'fill="{fill}"']
    if anchor != "start":
        attrs.append(f'text-anchor="{anchor}"')
    if cls:
        attrs.append(f'class="{cls}"')
    if weight:
        attrs.append(f'font-weight="{weight}"')
    if style:
        attrs.append(f'font-style="{style}"')
    if rotate:
        attrs.append(f'transform="rotate({rotate:.2f} {x:.1f} {y:.1f})"')
    if max_width is not None and len(text) * size * _CHAR > max_width:
        attrs.append(f'textLength="{max_width:.0f}" lengthAdjust="spacingAndGlyphs"')
    return f"<text {' '.join(attrs)}>{escape(text)}</text>"


def _time_unit(rows: list[Row]) -> tuple[str, float]:
    span = max((r.end_time or r.time) for r in rows) if rows else 0.0
    return ("µs", 1e6) if span < 1e-3 else ("ms", 1e3)


def _svg(ladder_rows: list[Row], conn: Connection, names: tuple[str, str],
         initial: tuple[str, str], title: str, width: int) -> str:
    x_time, x_a, x_b = 74, 230, width - 160
    unit, scale = _time_unit(ladder_rows)
    y = 108.0
    tops = []
    for row in ladder_rows:
        tops.append(y)
        y += _SUMMARY_ROW if row.kind == "summary" else _ROW
    height = int(y + 24)
    by_index = {r.index: t for r, t in zip(ladder_rows, tops, strict=True)
                if r.kind == "segment"}

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{_attr(_FONT)}">',
        f"<title>{escape(title)}</title>",
        "<desc>TCP ladder diagram drawn by sim/ladder.py; states after RFC 9293 s3.3.2."
        "</desc>",
        "<defs>",
    ]
    for key, color in _COLORS.items():
        out.append(f'<marker id="head-{key.replace(">", "")}" viewBox="0 0 10 10" refX="10" '
                   f'refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
                   f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>')
    out += ["</defs>", f'<rect width="{width}" height="{height}" fill="#fff"/>',
            _text(12, 22, title, size=13, weight="bold", cls="title",
                  max_width=width - 24)]

    # The two ends: name, address, initial state, and their lines (dashed over summaries).
    for x, name, endpoint, state, anchor, dx in (
        (x_a, names[0], conn.endpoint_a, initial[0], "end", -8),
        (x_b, names[1], conn.endpoint_b, initial[1], "start", 8),
    ):
        out.append(f'<rect x="{x - 90}" y="36" width="180" height="38" rx="4" '
                   f'fill="#f3f3f3" stroke="#555"/>')
        out.append(_text(x, 52, name, size=13, anchor="middle", weight="bold", cls="name"))
        out.append(_text(x, 67, endpoint, size=11, anchor="middle", cls="endpoint"))
        out.append(_text(x + dx, 94, state, anchor=anchor, weight="bold", cls="state"))
        spans, start = [], 74.0
        for row, top in zip(ladder_rows, tops, strict=True):
            if row.kind == "summary":
                spans.append((start, top, False))
                spans.append((top, top + _SUMMARY_ROW, True))
                start = top + _SUMMARY_ROW
        spans.append((start, height - 12, False))
        for y0, y1, dashed in spans:
            if y1 > y0:
                dash = ' stroke-dasharray="3 4"' if dashed else ""
                out.append(f'<line class="lifeline" x1="{x}" y1="{y0:.1f}" x2="{x}" '
                           f'y2="{y1:.1f}" stroke="#555" stroke-width="1.5"{dash}/>')
    out.append(_text(x_time, 94, f"time ({unit})", anchor="end", fill="#666", cls="time"))

    span = x_b - x_a
    for row, top in zip(ladder_rows, tops, strict=True):
        if row.kind == "summary":
            mid = top + _SUMMARY_ROW / 2 + 4
            out.append('<g class="summary">')
            out.append(_text(x_time, mid - 7, f"{row.time * scale:.3f}", anchor="end",
                             fill="#666", cls="time"))
            out.append(_text(x_time, mid + 7, f"…{(row.end_time or row.time) * scale:.3f}",
                             anchor="end", fill="#666", cls="time"))
            # Two lines: "⋮ N segments:" and the counts (the text is the whole label).
            head, sep, counts = row.label.partition(":")
            cx = (x_a + x_b) / 2
            out.append(f'<text x="{cx:.1f}" y="{mid - 7:.1f}" font-size="11" fill="#444" '
                       f'text-anchor="middle" font-style="italic" class="summary-label">'
                       f"<tspan>{escape(head + sep)}</tspan>"
                       f'<tspan x="{cx:.1f}" dy="14">{escape(counts)}</tspan></text>')
            for x, state, anchor, dx in ((x_a, row.state_a, "end", -8),
                                         (x_b, row.state_b, "start", 8)):
                out.append(_text(x + dx, mid, state, anchor=anchor, fill="#999",
                                 cls="state-same"))
            out.append("</g>")
            continue
        y0 = top + _TOP_PAD
        arrival_top = by_index.get(row.arrives_after, top) if row.arrives_after else top
        y1 = arrival_top + _TOP_PAD + _DROP
        from_a = row.direction == "A->B"
        xs, xr = (x_a, x_b) if from_a else (x_b, x_a)
        color = _COLORS["RST"] if "RST" in row.flags else _COLORS[row.direction]
        marker = "head-RST" if "RST" in row.flags else f"head-{row.direction.replace('>', '')}"
        dash = ' stroke-dasharray="6 3"' if row.retransmission else ""
        extra = row.notes
        main = row.label[: len(row.label) - len(extra)].rstrip() if extra else row.label
        out.append(f'<g class="segment" id="segment-{row.index}">')
        out.append(f"<title>{escape(row.description)}</title>")
        out.append(_text(x_time, y0 + 4, f"{row.time * scale:.3f}", anchor="end",
                         fill="#666", cls="time"))
        out.append(f'<line class="arrow" x1="{xs}" y1="{y0:.1f}" x2="{xr}" y2="{y1:.1f}" '
                   f'stroke="{color}" stroke-width="1.5"{dash} marker-end="url(#{marker})"/>')
        # Label along the arrow (further from the head when the arrow crosses others).
        t = 0.5 if row.arrives_after is None else 0.3
        lx = xs + (xr - xs) * t
        ly = y0 + (y1 - y0) * t
        angle = math.degrees(math.atan2(y1 - y0, abs(xr - xs))) * (1 if from_a else -1)
        out.append(_text(lx, ly - 5, main, anchor="middle", fill=color, cls="label",
                         rotate=angle, max_width=span - 16))
        if extra:
            extra_color = _COLORS["RST"] if row.retransmission else "#555"
            out.append(_text(lx, ly + 13, extra, size=10, anchor="middle", fill=extra_color,
                             cls="label-extra", rotate=angle, max_width=span - 16))
        drawn = {c.end for c in row.changes}
        for change in row.changes:
            x, anchor, dx = (x_a, "end", -8) if change.end == "A" else (x_b, "start", 8)
            mine = (change.end == "A") == from_a
            if change.on == "send":
                sy = y0
            elif mine:  # a SYN/FIN that crossed this segment, arriving after it left
                sy = top + _TOP_PAD + _DROP
            else:
                sy = y1
            if sum(1 for c in row.changes if c.end == change.end and c.on == change.on) > 1:
                same = [c for c in row.changes if c.end == change.end and c.on == change.on]
                sy += 12 * same.index(change)
            out.append(_text(x + dx, sy + 4, change.state, anchor=anchor, weight="bold",
                             cls="state"))
        for end, x, state, anchor, dx in (("A", x_a, row.state_a, "end", -8),
                                          ("B", x_b, row.state_b, "start", 8)):
            if end not in drawn:
                out.append(_text(x + dx, top + _TOP_PAD + _DROP + 4, state, anchor=anchor,
                                 fill="#999", cls="state-same"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- API


@dataclass
class Ladder:
    """A drawn ladder: the chosen connection, the rows drawn and the SVG text."""

    connection: Connection
    names: tuple[str, str]
    initial_states: tuple[str, str]
    rows: list[Row]
    svg: str
    segments: int  # segments of the connection in the capture (drawn or summarised)

    def save(self, path: str | Path) -> Path:
        """Write the SVG to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.svg, encoding="utf-8")
        return path


def ladder_from_packets(
    packets: Iterable[Packet],
    *,
    connection: Connection | tuple[str, int, str, int] | int | None = None,
    names: tuple[str, str] = ("A", "B"),
    states: Sequence[tuple[str | None, str | None]] | None = None,
    relative: bool = True,
    collapse_after: int | None = 6,
    dup_acks: bool = True,
    title: str | None = None,
    width: int = 900,
) -> Ladder:
    """Draw the ladder of one connection of ``packets`` (scapy packets, e.g. from rdpcap).

    ``connection`` picks it: ``None`` for the first seen, an index into
    :func:`list_connections`, or ``(ip_a, port_a, ip_b, port_b)`` (either direction; the
    tuple's first end is drawn on the left).  ``states`` overrides the inferred states: one
    ``(state_a, state_b)`` per segment of the connection in capture order (``None`` keeps
    the inferred one; names as in RFC 9293 or ``TcpState``).  ``collapse_after`` (0 or
    ``None``: never) is the longest run of plain segments drawn in full; ``dup_acks`` marks
    duplicate ACKs."""
    conn, frames = _select(_group(_load(packets)), connection)
    segs = _segments(conn, frames)
    names = (str(names[0]), str(names[1]))
    initial, rows = _rows(segs, names, states, relative, collapse_after, dup_acks)
    if title is None:
        title = f"TCP {conn.endpoint_a} ↔ {conn.endpoint_b}"
    title += f" — {len(segs)} segments" + ("" if relative else ", absolute seq/ack")
    svg = _svg(rows, conn, names, initial, title, width)
    return Ladder(conn, names, initial, rows, svg, len(segs))


def render_ladder(
    pcap_path: str | Path,
    svg_path: str | Path | None = None,
    *,
    connection: Connection | tuple[str, int, str, int] | int | None = None,
    names: tuple[str, str] = ("A", "B"),
    states: Sequence[tuple[str | None, str | None]] | None = None,
    relative: bool = True,
    collapse_after: int | None = 6,
    dup_acks: bool = True,
    width: int = 900,
) -> Ladder:
    """Read ``pcap_path`` (pcap or pcapng), draw one connection, write the SVG to
    ``svg_path`` if given; see :func:`ladder_from_packets` for the options."""
    pcap_path = Path(pcap_path)
    packets = rdpcap(str(pcap_path))
    conn, _ = _select(_group(packets), connection)
    ladder = ladder_from_packets(
        packets, connection=conn, names=names, states=states, relative=relative,
        collapse_after=collapse_after, dup_acks=dup_acks, width=width,
        title=f"TCP {conn.endpoint_a} ↔ {conn.endpoint_b} in {pcap_path.name}",
    )
    if svg_path is not None:
        ladder.save(svg_path)
    return ladder


def _parse_connection(text: str | None):
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        a, b = text.split(",")
        ip_a, port_a = a.rsplit(":", 1)
        ip_b, port_b = b.rsplit(":", 1)
        return Connection(ip_a, int(port_a), ip_b, int(port_b))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--connection {text!r}: expected an index or IP:PORT,IP:PORT") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toe.sim.ladder in.pcap -o out.svg [--names A B] [--absolute]
    [--connection N] [--list]``."""
    parser = argparse.ArgumentParser(
        prog="python -m toe.sim.ladder",
        description="Draw a TCP ladder diagram (SVG) of one connection of a pcap/pcapng.")
    parser.add_argument("pcap", type=Path)
    parser.add_argument("-o", "--output", type=Path,
                        help="SVG file (default: the capture's name with .svg)")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), default=("A", "B"),
                        help="names of the left and right ends")
    parser.add_argument("--absolute", action="store_true",
                        help="absolute sequence numbers (default: relative to the ISNs)")
    parser.add_argument("--connection", metavar="N|IP:PORT,IP:PORT",
                        help="which connection (index from --list, default 0)")
    parser.add_argument("--collapse-after", type=int, default=6, metavar="N",
                        help="summarise runs of more than N plain segments (0: never)")
    parser.add_argument("--no-dup-acks", action="store_true", help="do not mark dup ACKs")
    parser.add_argument("--list", action="store_true", help="list the connections and exit")
    args = parser.parse_args(argv)
    try:
        connection = _parse_connection(args.connection)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if args.list:
        for info in list_connections(args.pcap):
            print(info)
        return 0
    output = args.output or args.pcap.with_suffix(".svg")
    try:
        ladder = render_ladder(
            args.pcap, output, connection=connection, names=tuple(args.names),
            relative=not args.absolute, collapse_after=args.collapse_after,
            dup_acks=not args.no_dup_acks)
    except ValueError as e:
        print(f"toe.sim.ladder: {e}", file=sys.stderr)
        return 1
    print(f"{output}: {ladder.connection}, {ladder.segments} segments in "
          f"{len(ladder.rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
