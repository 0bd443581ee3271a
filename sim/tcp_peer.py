"""A scripted TCP peer for engine tests: builds segments with scapy and tracks sequence state.

:class:`ScriptedPeer` is one end of one connection, written out by hand in each test the
way packetdrill scripts are: the test says what the peer sends, and checks each segment
the engine sends back.  The peer keeps ``snd_nxt`` (its next sequence number) and
``rcv_nxt`` (the next byte it expects from the engine) so that the test only has to say
what changes.
"""

from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from hdl.config import ToeConfig

from .peer import ip_str, mac_str

__all__ = ["ScriptedPeer", "flags_of"]

FLAG_LETTERS = "FSRPAUEC"


def flags_of(segment: Packet) -> str:
    """The TCP flags of a segment as letters in the order FSRPAUEC (e.g. ``"SA"``)."""
    value = int(segment[TCP].flags)
    return "".join(letter for i, letter in enumerate(FLAG_LETTERS) if value >> i & 1)


@dataclass
class ScriptedPeer:
    """The remote end of a connection with the engine."""

    config: ToeConfig
    port: int = 40000
    engine_port: int = 80
    isn: int = 1000
    mac: str = "02:00:00:00:00:01"
    ip: str = "10.0.0.1"
    window: int = 65535
    snd_nxt: int = field(init=False)
    rcv_nxt: int = 0  # set from the engine's SYN or SYN-ACK

    def __post_init__(self):
        self.snd_nxt = self.isn

    def segment(self, flags: str, payload: bytes = b"", *, seq: int | None = None,
                ack: int | None = None, window: int | None = None,
                options=None) -> Packet:
        """A segment to the engine; ``seq``/``ack`` default to the peer's state.

        The peer's ``snd_nxt`` moves past the payload, SYN and FIN when ``seq`` is not given.
        """
        if seq is None:
            seq = self.snd_nxt
            self.snd_nxt = (self.snd_nxt + len(payload) + ("S" in flags) + ("F" in flags)) % 2**32
        tcp = TCP(sport=self.port, dport=self.engine_port, flags=flags, seq=seq % 2**32,
                  ack=(self.rcv_nxt if ack is None else ack) % 2**32 if "A" in flags else 0,
                  window=self.window if window is None else window,
                  options=options or [])
        frame = (Ether(src=self.mac, dst=mac_str(self.config.mac_addr))
                 / IP(src=self.ip, dst=ip_str(self.config.ip_addr)) / tcp)
        if payload:
            frame = frame / Raw(payload)
        return frame

    def syn(self, mss: int | None = 1460) -> Packet:
        return self.segment("S", options=[("MSS", mss)] if mss else [])

    def take(self, segment: Packet) -> None:
        """Note a segment from the engine: ``rcv_nxt`` moves past it."""
        tcp = segment[TCP]
        length = len(bytes(tcp.payload)) + ("S" in flags_of(segment)) + ("F" in flags_of(segment))
        if "S" in flags_of(segment):
            self.rcv_nxt = (tcp.seq + length) % 2**32
        elif length and tcp.seq == self.rcv_nxt:
            self.rcv_nxt = (self.rcv_nxt + length) % 2**32
