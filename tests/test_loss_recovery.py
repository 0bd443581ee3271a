"""sim/loss_recovery.py, the recovery-time figure of the benchmarks, on captures built
here with known timing: a sender with a 10 ms round trip that loses one segment."""

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from toe.sim.loss_recovery import recovery_from_segments, recovery_stats

RTT = 0.010
MSS = 1000


def _transfer(lost: int, retransmit_after: float | None):
    """Segments 0..39 one per ms from t = 0, each reaching the receiver half a round
    trip later and ACKed cumulatively at once (after the lost one: duplicate ACKs);
    the lost segment is resent ``retransmit_after`` s after its third duplicate ACK
    (None: 0.2 s after the last ACK, as a timeout would)."""
    half = RTT / 2
    data = [(k * 1e-3, k * MSS, MSS) for k in range(40)]
    dup3 = lost * 1e-3 + 3e-3 + RTT
    resend = dup3 + retransmit_after if retransmit_after is not None else 39e-3 + RTT + 0.2
    data.append((resend, lost * MSS, MSS))
    arrivals = sorted((t + half, seq) for t, seq, _ in data)
    arrivals = [(t, seq) for t, seq in arrivals if not (seq == lost * MSS and t < resend)]
    held, rcv, acks = set(), 0, []
    for t, seq in arrivals:
        held.add(seq // MSS)
        while rcv in held:
            rcv += 1
        acks.append((t + half, rcv * MSS))
    return sorted(data), acks


def test_fast_retransmit_repairs_in_one_round_trip():
    """A loss resent right after the third duplicate ACK is repaired one round trip
    after its detection: the figure is 1.0 RTTs (within the 0.1 ms of sending)."""
    data, acks = _transfer(lost=10, retransmit_after=1e-4)
    stats = recovery_from_segments(data, acks)
    assert abs(stats.rtt_s - RTT) < 1e-9
    assert stats.episodes == 1 and stats.timeouts == 0 and stats.unrepaired == 0
    assert 1.0 <= stats.median_rtts <= 1.02


def test_a_late_retransmission_is_a_timeout():
    """A retransmission long after the last ACK counts as a timeout, and its recovery
    time includes the wait."""
    data, acks = _transfer(lost=10, retransmit_after=None)
    stats = recovery_from_segments(data, acks)
    assert stats.timeouts == 1
    assert stats.median_rtts > 20


def test_from_a_capture(tmp_path):
    """The same transfer written as a capture and read back with scapy."""
    data, acks = _transfer(lost=5, retransmit_after=1e-4)
    frames = []
    for t, seq, length in data:
        p = Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=999, seq=seq,
                                                               flags="A") / (b"x" * length)
        p.time = t
        frames.append(p)
    for t, ack in acks:
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=999, dport=80, ack=ack,
                                                               flags="A")
        p.time = t
        frames.append(p)
    frames.sort(key=lambda p: p.time)
    wrpcap(str(tmp_path / "t.pcap"), frames)
    stats = recovery_stats(tmp_path / "t.pcap", "10.0.0.2", 80)
    assert stats.episodes == 1 and 1.0 <= stats.median_rtts <= 1.02


def test_timeouts_by_what_was_lost():
    """A timeout is sorted by its segment: one resent before (a lost retransmission),
    or the segment at SND.MAX as it was when an earlier fast retransmit left (the
    first segment sent in that recovery)."""
    data, acks = _transfer(lost=10, retransmit_after=1e-4)
    fast = next(t for t, seq, _ in data if seq == 10 * MSS and t > 0.02)
    high = max(seq + n for t, seq, n in data if t < fast)
    late = max(t for t, _ in acks) + 0.2
    data = sorted(data + [(late, high, MSS), (late + 0.2, 10 * MSS, MSS)])
    stats = recovery_from_segments(data, acks)
    assert stats.timeouts == 2
    assert (stats.timeouts_at_recovery_point, stats.timeouts_resent) == (1, 1)
