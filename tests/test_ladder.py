"""sim/ladder.py: TCP ladder diagrams (SVG) from pcap/pcapng files.

Each test writes a capture with scapy (or the project's pcapng writer), draws it, and
checks both the rows (labels, inferred states, summaries) and the SVG: it must be
well-formed XML with one arrow per drawn segment, the right labels and the state names of
RFC 9293 s3.3.2.  No simulator is involved.
"""

import xml.etree.ElementTree as ET

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from toe.hdl.tcp.tcb import TcpState
from toe.sim.ladder import (
    Connection,
    ladder_from_packets,
    list_connections,
    main,
    render_ladder,
)
from toe.sim.pcap import INBOUND, OUTBOUND, PcapRecord, write_pcapng

SVG = "{http://www.w3.org/2000/svg}"
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)


class Talk:
    """Builds the segments of one connection between ends "A" and "B", keeping each end's
    next sequence number and the next byte it expects (every segment arrives at once
    unless ``seq``/``ack`` are given explicitly)."""

    def __init__(self, a=CLIENT, b=SERVER, isn_a=1000, isn_b=5000, packets=None, t=0.0):
        self.ends = {"A": a, "B": b}
        self.nxt = {"A": isn_a, "B": isn_b}
        self.rcv = {"A": 0, "B": 0}
        self.packets = [] if packets is None else packets
        self.t = t

    def send(self, who: str, flags: str, data: bytes = b"", *, seq=None, ack=None,
             win=4096, options=()):
        other = "B" if who == "A" else "A"
        s = self.nxt[who] if seq is None else seq
        a = self.rcv[who] if ack is None else ack
        (src_ip, sport), (dst_ip, dport) = self.ends[who], self.ends[other]
        pkt = Ether() / IP(src=src_ip, dst=dst_ip) / TCP(
            sport=sport, dport=dport, flags=flags, seq=s, ack=a if "A" in flags else 0,
            window=win, options=list(options))
        if data:
            pkt = pkt / Raw(data)
        pkt.time = self.t
        self.t += 0.001
        end = s + len(data) + ("S" in flags) + ("F" in flags)
        if seq is None:
            self.nxt[who] = end
        self.rcv[other] = max(self.rcv[other], end)
        self.packets.append(pkt)
        return pkt

    def handshake(self, options=()):
        self.send("A", "S", options=options)
        self.send("B", "SA", options=[("MSS", 1460)])
        self.send("A", "A")


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    return root


def arrows(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}line") if e.get("class") == "arrow"]


def texts(root: ET.Element, cls: str | None = None) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")
            if cls is None or e.get("class") == cls]


def segment_group(root: ET.Element, index: int) -> ET.Element:
    (group,) = [g for g in root.iter(f"{SVG}g") if g.get("id") == f"segment-{index}"]
    return group


def segment_label(root: ET.Element, index: int) -> str:
    group = segment_group(root, index)
    return " ".join("".join(e.itertext()) for e in group.iter(f"{SVG}text")
                    if e.get("class") in ("label", "label-extra"))


def states_of(ladder) -> list[tuple[str, str]]:
    return [(r.state_a, r.state_b) for r in ladder.rows]


def full_conversation() -> Talk:
    talk = Talk()
    talk.handshake(options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b""),
                            ("Timestamp", (11, 0))])
    talk.send("A", "PA", b"q" * 100)
    talk.send("B", "A")
    talk.send("B", "PA", b"r" * 200, win=8192)
    talk.send("A", "A")
    talk.send("A", "FA")
    talk.send("B", "A")
    talk.send("B", "FA")
    talk.send("A", "A")
    return talk


def test_handshake_data_and_four_way_close(tmp_path):
    """RFC 9293 s3.5 (figure 6) and s3.6 (figure 12): SYN, SYN+ACK, ACK take the active
    opener CLOSED -> SYN-SENT -> ESTABLISHED and the listener LISTEN -> SYN-RECEIVED ->
    ESTABLISHED; the side that closes first passes FIN-WAIT-1, FIN-WAIT-2 and ends in
    TIME-WAIT, the other passes CLOSE-WAIT, LAST-ACK and ends CLOSED."""
    pcap = tmp_path / "full.pcap"
    wrpcap(str(pcap), full_conversation().packets)
    svg_path = tmp_path / "full.svg"
    ladder = render_ladder(pcap, svg_path, names=("client", "server"))

    assert ladder.connection == Connection(*CLIENT, *SERVER)
    assert ladder.segments == 11 and len(ladder.rows) == 11
    assert ladder.initial_states == ("CLOSED", "LISTEN")
    assert states_of(ladder) == [
        ("SYN-SENT", "SYN-RECEIVED"),
        ("ESTABLISHED", "SYN-RECEIVED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("FIN-WAIT-1", "CLOSE-WAIT"),
        ("FIN-WAIT-2", "CLOSE-WAIT"),
        ("TIME-WAIT", "LAST-ACK"),
        ("TIME-WAIT", "CLOSED"),
    ]
    labels = [r.label for r in ladder.rows]
    assert labels[0] == "SYN seq=0 win=4096 <mss 1460, wscale 7, sackOK, TS 11/0>"
    assert labels[1] == "SYN+ACK seq=0 ack=1 win=4096 <mss 1460>"
    assert labels[2] == "ACK seq=1 ack=1 win=4096"
    assert labels[3] == "PSH+ACK seq=1 ack=1 len=100 win=4096"
    assert labels[4] == "ACK seq=1 ack=101 win=4096"
    assert labels[5] == "PSH+ACK seq=1 ack=101 len=200 win=8192"
    assert labels[7] == "FIN+ACK seq=101 ack=201 win=4096"
    assert labels[9] == "FIN+ACK seq=201 ack=102 win=4096"
    assert labels[10] == "ACK seq=102 ack=202 win=4096"
    assert [r.direction for r in ladder.rows[:3]] == ["A->B", "B->A", "A->B"]
    assert [r.time for r in ladder.rows[:2]] == pytest.approx([0.0, 0.001])
    assert not any(r.retransmission or r.dup_ack for r in ladder.rows)
    # Where each change is drawn: the sender's at the tail, the receiver's at the head.
    assert [(c.end, c.state, c.on) for c in ladder.rows[9].changes] == [
        ("B", "LAST-ACK", "send"), ("A", "TIME-WAIT", "arrival")]

    svg = svg_path.read_text(encoding="utf-8")
    assert svg == ladder.svg
    root = parse(svg)
    assert len(arrows(root)) == 11
    assert segment_label(root, 0) == labels[0]
    assert segment_label(root, 7) == labels[7]
    states = texts(root, "state")
    for name in ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
                 "FIN-WAIT-2", "TIME-WAIT", "CLOSE-WAIT", "LAST-ACK"):
        assert name in states
    all_text = texts(root)
    assert "client" in all_text and "server" in all_text
    assert "10.0.0.1:40000" in all_text and "10.0.0.2:80" in all_text
    assert any("full.pcap" in t and "10.0.0.1:40000" in t for t in texts(root, "title"))
    assert texts(root, "time")[1:3] == ["0.000", "1.000"]  # after the "time (ms)" header


def test_absolute_sequence_numbers(tmp_path):
    """RFC 9293 s3.4: with ``relative=False`` the labels carry the ISNs themselves."""
    ladder = ladder_from_packets(full_conversation().packets, relative=False)
    assert ladder.rows[0].label.startswith("SYN seq=1000 win=4096")
    assert ladder.rows[1].label.startswith("SYN+ACK seq=5000 ack=1001 ")
    assert ladder.rows[3].label == "PSH+ACK seq=1001 ack=5001 len=100 win=4096"
    assert (ladder.rows[3].seq, ladder.rows[3].ack) == (1001, 5001)
    assert "PSH+ACK seq=1001 ack=5001 len=100 win=4096" in texts(parse(ladder.svg), "label")


def test_simultaneous_close(tmp_path):
    """RFC 9293 s3.6 (figure 13): both ends send FIN before receiving the other's; each
    passes FIN-WAIT-1 -> CLOSING (the peer's FIN does not acknowledge its own) ->
    TIME-WAIT (its FIN acknowledged), and the FIN arrows cross."""
    talk = Talk()
    talk.handshake()
    talk.send("A", "PA", b"x" * 10)
    talk.send("B", "A")
    fin_a = talk.send("A", "FA")
    talk.send("B", "FA", ack=fin_a[TCP].seq)  # B had not received A's FIN yet
    talk.send("A", "A")
    talk.send("B", "A")
    pcap = tmp_path / "simclose.pcap"
    wrpcap(str(pcap), talk.packets)
    ladder = render_ladder(pcap)

    rows = ladder.rows
    assert states_of(ladder)[5:] == [
        ("FIN-WAIT-1", "ESTABLISHED"),  # A's FIN is still in flight
        ("CLOSING", "CLOSING"),
        ("CLOSING", "TIME-WAIT"),
        ("TIME-WAIT", "TIME-WAIT"),
    ]
    assert [(c.end, c.state, c.on) for c in rows[6].changes] == [
        ("B", "FIN-WAIT-1", "send"), ("B", "CLOSING", "arrival"), ("A", "CLOSING", "arrival")]
    assert rows[5].arrives_after == 6
    assert rows[5].label == "FIN+ACK seq=11 ack=1 win=4096"
    assert rows[6].label == "FIN+ACK seq=1 ack=11 win=4096"
    trail_a = [c.state for r in rows for c in r.changes if c.end == "A"]
    trail_b = [c.state for r in rows for c in r.changes if c.end == "B"]
    assert trail_a[-3:] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"]
    assert trail_b[-3:] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"]

    root = parse(ladder.svg)
    lines = arrows(root)
    assert len(lines) == 9
    fin_a_line, fin_b_line = lines[5], lines[6]
    # A's FIN leaves before B's and arrives after B's left: the arrows cross.
    assert float(fin_a_line.get("y1")) < float(fin_b_line.get("y1"))
    assert float(fin_a_line.get("y2")) > float(fin_b_line.get("y1"))
    assert texts(root, "state").count("CLOSING") == 2


def test_simultaneous_open():
    """RFC 9293 s3.5 (figure 8): both ends send SYN; each goes SYN-SENT -> SYN-RECEIVED
    on the other's SYN -> ESTABLISHED when its SYN is acknowledged."""
    talk = Talk()
    talk.send("A", "S")
    talk.send("B", "S", ack=0)
    talk.send("A", "SA", seq=1000)
    talk.send("B", "SA", seq=5000)
    ladder = ladder_from_packets(talk.packets)
    assert ladder.initial_states == ("CLOSED", "CLOSED")
    trail_a = [c.state for r in ladder.rows for c in r.changes if c.end == "A"]
    trail_b = [c.state for r in ladder.rows for c in r.changes if c.end == "B"]
    assert trail_a == ["SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"]
    assert trail_b == ["SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"]
    assert states_of(ladder)[-1] == ("ESTABLISHED", "ESTABLISHED")
    assert ladder.rows[0].arrives_after == 1  # the SYNs crossed
    assert not any(r.retransmission for r in ladder.rows)  # a SYN+ACK resends the SYN


def test_rst_during_handshake():
    """RFC 9293 s3.10.7.4: a RST in SYN-RECEIVED returns a connection that came from
    LISTEN to LISTEN; the end that aborts goes to CLOSED (s3.10.4, ABORT)."""
    talk = Talk()
    talk.send("A", "S")
    talk.send("B", "SA")
    talk.send("A", "R")
    ladder = ladder_from_packets(talk.packets, names=("engine", "Linux"))
    assert states_of(ladder) == [
        ("SYN-SENT", "SYN-RECEIVED"),
        ("ESTABLISHED", "SYN-RECEIVED"),
        ("CLOSED", "LISTEN"),
    ]
    assert ladder.rows[2].label == "RST seq=1 win=4096"
    assert ladder.rows[2].flags == "RST"
    root = parse(ladder.svg)
    assert len(arrows(root)) == 3
    assert arrows(root)[2].get("marker-end") == "url(#head-RST)"
    assert texts(root, "state").count("LISTEN") == 2  # at the start and after the RST
    assert "engine" in texts(root, "name") and "Linux" in texts(root, "name")


def test_refused_syn():
    """RFC 9293 s3.10.7.1: a SYN to a port where nothing listens (CLOSED) is answered
    with RST+ACK and the state stays CLOSED; s3.10.7.3: SYN-SENT with an acceptable
    RST goes to CLOSED."""
    talk = Talk()
    talk.send("A", "S", options=[("MSS", 1460)])
    talk.send("B", "RA", seq=0)
    ladder = ladder_from_packets(talk.packets)
    assert ladder.initial_states == ("CLOSED", "CLOSED")
    assert states_of(ladder) == [("SYN-SENT", "CLOSED"), ("CLOSED", "CLOSED")]
    assert ladder.rows[1].label.startswith("RST+ACK ") and "ack=1 " in ladder.rows[1].label


def test_rst_in_established():
    """RFC 9293 s3.10.7.4: a RST in a synchronized state takes the receiver to CLOSED;
    the sender, aborting, is CLOSED too."""
    talk = Talk()
    talk.handshake()
    talk.send("B", "RA")
    ladder = ladder_from_packets(talk.packets)
    assert states_of(ladder)[-1] == ("CLOSED", "CLOSED")


def bulk_transfer() -> Talk:
    """Handshake, 500 data segments A->B (497 new, 3 retransmissions), an ACK from B after
    every second new one, and a four-way close."""
    talk = Talk()
    talk.handshake()
    sent = []  # (seq, data) of each new segment
    new = 0
    for i in range(500):
        if i in (100, 250, 400):
            seq, data = sent[-3]
            talk.send("A", "A", data, seq=seq)
            continue
        data = bytes([new % 251]) * (1000 + new % 7)
        sent.append((talk.nxt["A"], data))
        talk.send("A", "PA" if new % 2 else "A", data)
        new += 1
        if new % 2 == 0:
            talk.send("B", "A", win=65535)
    talk.send("A", "FA")
    talk.send("B", "A", win=65535)
    talk.send("B", "FA", win=65535)
    talk.send("A", "A")
    return talk


def test_bulk_transfer_is_collapsed(tmp_path):
    """RFC 9293 s3.10.7.4 (ESTABLISHED, segment text): a long run of data and ACK
    segments changes no state; it is drawn as its first two and last two segments around a
    summary row that counts the segments, bytes and retransmissions not drawn."""
    talk = bulk_transfer()
    pcap = tmp_path / "bulk.pcap"
    wrpcap(str(pcap), talk.packets)
    ladder = render_ladder(pcap, tmp_path / "bulk.svg")

    total = len(talk.packets)
    run = talk.packets[3:-4]  # between the handshake and the FIN
    hidden = run[2:-2]
    assert ladder.segments == total
    kinds = [r.kind for r in ladder.rows]
    assert kinds == ["segment"] * 5 + ["summary"] + ["segment"] * 6
    (summary,) = [r for r in ladder.rows if r.kind == "summary"]
    bytes_ab = sum(len(p[TCP].payload) for p in hidden if p[IP].src == CLIENT[0])
    assert summary.collapsed == len(hidden)
    assert summary.bytes_ab == bytes_ab
    assert summary.bytes_ba == 0
    assert summary.retransmissions == 3
    assert summary.label == (f"⋮ {len(hidden):,} segments: A→B {bytes_ab:,} bytes, "
                             f"B→A 0 bytes, 3 retransmissions")
    assert summary.time == pytest.approx(float(hidden[0].time))
    assert summary.end_time == pytest.approx(float(hidden[-1].time))
    assert (summary.state_a, summary.state_b) == ("ESTABLISHED", "ESTABLISHED")
    assert [r.index for r in ladder.rows if r.kind == "segment"] == [
        0, 1, 2, 3, 4, total - 6, total - 5, total - 4, total - 3, total - 2, total - 1]
    assert states_of(ladder)[-1] == ("TIME-WAIT", "CLOSED")

    root = parse((tmp_path / "bulk.svg").read_text(encoding="utf-8"))
    assert len(arrows(root)) == 11
    assert texts(root, "summary-label") == [summary.label]
    assert f"{bytes_ab:,} bytes" in texts(root, "summary-label")[0]

    # Drawn in full, the three retransmissions are marked, and only they.
    full = ladder_from_packets(talk.packets, collapse_after=0)
    assert len(full.rows) == total
    marked = [r for r in full.rows if r.retransmission]
    assert len(marked) == 3
    assert all(r.label.endswith("(retransmission)") for r in marked)
    assert sum("(retransmission)" in r.label for r in full.rows) == 3
    assert len(arrows(parse(full.svg))) == total


def test_short_runs_are_not_collapsed():
    """A run no longer than ``collapse_after`` is drawn in full."""
    talk = Talk()
    talk.handshake()
    for _ in range(3):
        talk.send("A", "PA", b"d" * 10)
        talk.send("B", "A")
    ladder = ladder_from_packets(talk.packets, collapse_after=6)
    assert all(r.kind == "segment" for r in ladder.rows) and len(ladder.rows) == 9
    collapsed = ladder_from_packets(talk.packets, collapse_after=4)
    assert [r.kind for r in collapsed.rows].count("summary") == 1
    assert len(collapsed.rows) == 3 + 2 + 1 + 2


def test_duplicate_acks_and_fast_retransmit():
    """RFC 5681 s2/s3.2: an ACK without data, acknowledging the same byte with the same
    window while data is outstanding, is a duplicate ACK; after three the lost segment is
    sent again (a retransmission: its sequence range was already sent)."""
    talk = Talk()
    talk.handshake()
    lost = talk.send("A", "A", b"1" * 100)
    talk.rcv["B"] -= 100  # B never gets it
    for _ in range(3):
        talk.send("A", "A", b"2" * 100)
        talk.send("B", "A", ack=lost[TCP].seq)
    talk.send("A", "A", b"1" * 100, seq=lost[TCP].seq)
    ladder = ladder_from_packets(talk.packets, collapse_after=0)
    dups = [r for r in ladder.rows if r.dup_ack]
    # The first is a duplicate too: B acknowledged the same byte in its SYN+ACK.
    assert [r.dup_ack for r in dups] == [1, 2, 3]
    assert dups[0].label == "ACK seq=1 ack=1 win=4096 (dup ACK #1)"
    assert ladder.rows[-1].retransmission
    assert ladder.rows[-1].label == "ACK seq=1 ack=1 len=100 win=4096 (retransmission)"
    assert "(dup ACK #2)" in segment_label(parse(ladder.svg), dups[1].index)
    quiet = ladder_from_packets(talk.packets, collapse_after=0, dup_acks=False)
    assert not any(r.dup_ack or "dup ACK" in r.label for r in quiet.rows)


def two_connections() -> list:
    packets: list = []
    first = Talk(packets=packets)
    second = Talk(a=("10.0.0.3", 50000), b=("10.0.0.2", 8080), isn_a=7, isn_b=9,
                  packets=packets, t=0.0005)
    first.send("A", "S")
    second.send("A", "S")
    first.send("B", "SA")
    second.send("B", "SA")
    first.send("A", "A")
    second.send("A", "A")
    second.send("A", "PA", b"z" * 30)
    return packets


def test_two_connections_selection(tmp_path):
    """Selection of one connection (4-tuple, either direction) among several; the states
    of each are those of its own handshake (RFC 9293 s3.5)."""
    pcap = tmp_path / "two.pcap"
    wrpcap(str(pcap), two_connections())
    infos = list_connections(pcap)
    assert [i.index for i in infos] == [0, 1]
    assert infos[0].connection == Connection(*CLIENT, *SERVER)
    assert infos[1].connection == Connection("10.0.0.3", 50000, "10.0.0.2", 8080)
    assert [i.segments for i in infos] == [3, 4]
    assert (infos[1].bytes_ab, infos[1].bytes_ba) == (30, 0)

    default = render_ladder(pcap)
    assert default.connection == infos[0].connection and len(default.rows) == 3
    second = render_ladder(pcap, connection=1)
    assert second.connection == infos[1].connection
    assert [r.label for r in second.rows][-1] == "PSH+ACK seq=1 ack=1 len=30 win=4096"
    assert len(arrows(parse(second.svg))) == 4
    assert "10.0.0.3:50000" in texts(parse(second.svg), "endpoint")

    # By 4-tuple, given the other way round: the caller's first end is drawn on the left.
    flipped = render_ladder(pcap, connection=("10.0.0.2", 8080, "10.0.0.3", 50000))
    assert flipped.connection == Connection("10.0.0.2", 8080, "10.0.0.3", 50000)
    assert [r.direction for r in flipped.rows] == ["B->A", "A->B", "B->A", "B->A"]
    assert flipped.initial_states == ("LISTEN", "CLOSED")
    assert flipped.rows[-1].state_a == "ESTABLISHED"

    with pytest.raises(ValueError, match="no connection 2"):
        render_ladder(pcap, connection=2)
    with pytest.raises(ValueError, match="no connection"):
        render_ladder(pcap, connection=("10.9.9.9", 1, "10.0.0.2", 80))


def test_explicit_states_override():
    """RFC 9293 s3.3.2: a caller with an authoritative trace (the engine's) gives the
    states; ``None`` keeps the inferred one, and inference goes on from the given state
    (here the listener reaches ESTABLISHED only on the data segment's ACK, s3.10.7.4)."""
    talk = full_conversation()
    states = [(None, None), (TcpState.ESTABLISHED, None), (None, "SYN_RECEIVED"),
              (None, None), ("ESTABLISHED", "established")]
    ladder = ladder_from_packets(talk.packets, states=states, names=("Linux", "engine"))
    assert states_of(ladder)[:5] == [
        ("SYN-SENT", "SYN-RECEIVED"),
        ("ESTABLISHED", "SYN-RECEIVED"),
        ("ESTABLISHED", "SYN-RECEIVED"),  # the override keeps B in SYN-RECEIVED
        ("ESTABLISHED", "ESTABLISHED"),  # inferred again: B's SYN acknowledged
        ("ESTABLISHED", "ESTABLISHED"),
    ]
    assert ladder.rows[2].changes == ()
    assert [(c.end, c.state) for c in ladder.rows[3].changes] == [("B", "ESTABLISHED")]
    assert states_of(ladder)[-1] == ("TIME-WAIT", "CLOSED")

    # An override that disagrees with the inference wins, and is drawn.
    forced = ladder_from_packets(talk.packets, states=[(None, "LISTEN")] * 2)
    assert forced.rows[0].state_b == "LISTEN" and forced.rows[0].changes[-1].end == "A"
    assert forced.rows[1].state_b == "LISTEN"
    assert "LISTEN" in texts(parse(forced.svg), "state")
    with pytest.raises(ValueError, match="unknown TCP state"):
        ladder_from_packets(talk.packets, states=[("OPEN", None)])
    with pytest.raises(ValueError, match="explicit states"):
        ladder_from_packets(talk.packets, states=[(None, None)] * 12)


def test_pcapng_with_nanosecond_times_and_escaping(tmp_path):
    """The project's pcapng writer (ns timestamps) reads back; names are escaped in the
    SVG, which stays well-formed; sub-millisecond captures are timed in µs."""
    talk = full_conversation()
    records = [PcapRecord(time_ns=1000 + 90 * i, data=bytes(p),
                          direction=OUTBOUND if p[IP].src == CLIENT[0] else INBOUND)
               for i, p in enumerate(talk.packets)]
    pcap = write_pcapng(tmp_path / "cap.pcapng", records)
    ladder = render_ladder(pcap, names=("<engine>", "Linux & co"))
    assert len(ladder.rows) == 11
    assert ladder.rows[1].time == pytest.approx(90e-9)
    root = parse(ladder.svg)
    assert "<engine>" in texts(root, "name") and "Linux & co" in texts(root, "name")
    assert "time (µs)" in texts(root, "time") and "0.090" in texts(root, "time")


def test_command_line(tmp_path, capsys):
    """``python -m toe.sim.ladder``: --list, -o, --names, --absolute, --connection."""
    pcap = tmp_path / "two.pcap"
    wrpcap(str(pcap), two_connections())
    assert main([str(pcap), "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("0: 10.0.0.1:40000 <-> 10.0.0.2:80  3 segments")
    assert listing[1].startswith("1: 10.0.0.3:50000 <-> 10.0.0.2:8080  4 segments")

    out = tmp_path / "out.svg"
    assert main([str(pcap), "-o", str(out), "--names", "engine", "Linux", "--absolute",
                 "--connection", "1"]) == 0
    root = parse(out.read_text(encoding="utf-8"))
    assert len(arrows(root)) == 4
    assert {"engine", "Linux"} <= set(texts(root, "name"))
    assert "PSH+ACK seq=8 ack=10 len=30 win=4096" in texts(root, "label")
    assert main([str(pcap), "--connection", "10.0.0.2:80,10.0.0.1:40000"]) == 0
    assert (tmp_path / "two.svg").exists()
    assert main([str(pcap), "--connection", "5"]) == 1
    assert "no connection 5" in capsys.readouterr().err
