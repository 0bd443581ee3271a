"""How long a sender takes to repair a loss, in round trips, from a capture.

For one direction of one connection (the sender's segments and the receiver's ACKs, as
the sender saw them), every retransmission is an episode:

- **detection**: the last ACK from the receiver before the retransmission left (the
  third duplicate ACK for a fast retransmit, or the last ACK before a timeout);
- **repair**: the first ACK after the retransmission that covers the resent segment;
- **recovery time** = repair - detection, divided by the round-trip time, which is the
  median, over segments sent once, of the time from sending a segment to the first ACK
  that covers it, leaving out every sample with a retransmission in between.

A retransmission more than ``timeout_rtts`` round trips after the ACK before it counts
as a timeout.  Timeouts are also counted by what was lost: ``timeouts_resent``, a
segment already resent once (a lost retransmission); ``timeouts_at_recovery_point``,
the segment at SND.MAX as it was when an earlier fast retransmission left (the first
segment sent in that recovery: RFC 6582's ``recover``).  Episodes that overlap
(several holes of one window) are reported each with its own time; ``episodes`` is
their number.
"""

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

__all__ = ["RecoveryStats", "recovery_stats", "recovery_from_segments"]

MOD = 1 << 32


def _after(a: int, b: int) -> bool:
    """Sequence number a is beyond b (RFC 9293 s3.4 arithmetic)."""
    return 0 < (a - b) % MOD < 1 << 31


@dataclass
class RecoveryStats:
    rtt_s: float
    episodes: int
    timeouts: int
    median_rtts: float
    max_rtts: float
    unrepaired: int
    timeouts_resent: int = 0
    timeouts_at_recovery_point: int = 0

    def as_dict(self) -> dict:
        return {"rtt_ms": round(self.rtt_s * 1e3, 3), "episodes": self.episodes,
                "timeouts": self.timeouts, "median_rtts": round(self.median_rtts, 2),
                "max_rtts": round(self.max_rtts, 2), "unrepaired": self.unrepaired,
                "timeouts_resent": self.timeouts_resent,
                "timeouts_at_recovery_point": self.timeouts_at_recovery_point}


def recovery_from_segments(data: list[tuple[float, int, int]], acks: list[tuple[float, int]],
                           timeout_rtts: float = 4.0) -> RecoveryStats:
    """``data``: (time, seq, length) of the sender's segments with text, in order;
    ``acks``: (time, ack) of the receiver's segments, in order."""
    snd_max = None
    first_send: dict[int, tuple[float, int]] = {}
    resent: set[int] = set()
    retransmissions = []
    for time, seq, length in data:
        end = (seq + length) % MOD
        if snd_max is None or _after(end, snd_max):
            first_send.setdefault(seq, (time, end))
            snd_max = end
        else:
            resent.add(seq)
            retransmissions.append((time, seq, end, snd_max))
    ack_times = [t for t, _ in acks]
    resend_times = [t for t, *_ in retransmissions]
    samples = []
    j = 0
    for seq, (sent, end) in sorted(first_send.items(), key=lambda kv: kv[1]):
        if seq in resent:
            continue
        while j < len(acks) and acks[j][0] < sent:
            j += 1
        for t, ack in acks[j:j + 400]:
            if ack == end or _after(ack, end):
                # Karn's rule, widened: no sample across a retransmission.
                if bisect_right(resend_times, t) == bisect_right(resend_times, sent):
                    samples.append(t - sent)
                break
    rtt = median(samples) if samples else 0.0
    times, timeouts, unrepaired = [], 0, 0
    again, at_point = 0, 0
    seen: set[int] = set()  # segments resent so far
    points: set[int] = set()  # SND.MAX at each fast retransmission so far
    for sent, seq, end, high in retransmissions:
        last = bisect_right(ack_times, sent) - 1
        if last < 0:
            seen.add(seq)
            continue
        detected = ack_times[last]
        if rtt and sent - detected > timeout_rtts * rtt:
            timeouts += 1
            again += seq in seen
            at_point += seq in points
        elif seq not in seen:
            points.add(high)
        seen.add(seq)
        repaired = next((t for t, ack in acks[last + 1:]
                         if t > sent and (ack == end or _after(ack, end))), None)
        if repaired is None:
            unrepaired += 1
            continue
        times.append((repaired - detected) / rtt if rtt else 0.0)
    return RecoveryStats(rtt_s=rtt, episodes=len(retransmissions), timeouts=timeouts,
                         median_rtts=median(times) if times else 0.0,
                         max_rtts=max(times) if times else 0.0, unrepaired=unrepaired,
                         timeouts_resent=again, timeouts_at_recovery_point=at_point)


def recovery_stats(pcap: Path, sender_ip: str, sender_port: int | None = None,
                   receiver_port: int | None = None) -> RecoveryStats:
    """The episodes of the connection from ``sender_ip`` (``sender_port``, to
    ``receiver_port`` where given) in ``pcap``."""
    data, acks = [], []
    for pkt in rdpcap(str(pcap)):
        if IP not in pkt or TCP not in pkt:
            continue
        ip, tcp = pkt[IP], pkt[TCP]
        t = float(pkt.time)
        length = ip.len - 4 * ip.ihl - 4 * tcp.dataofs
        if ip.src == sender_ip:
            if (sender_port in (None, tcp.sport) and receiver_port in (None, tcp.dport)
                    and length > 0):
                data.append((t, tcp.seq, length))
        elif ip.dst == sender_ip:
            if (sender_port in (None, tcp.dport) and receiver_port in (None, tcp.sport)
                    and tcp.flags & 0x10):
                acks.append((t, tcp.ack))
    return recovery_from_segments(data, acks)
