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

from toe.hdl.config import ToeConfig
from toe.hdl.proto.tcp import flag_letters, seq_before, seq_diff

from .peer import ip_str, mac_str, tcp_payload

__all__ = ["ScriptedPeer", "ReactivePeer", "PeerConnection", "flags_of"]


def flags_of(segment: Packet) -> str:
    """The TCP flags of a segment as letters in the order FSRPAUEC (e.g. ``"SA"``)."""
    return flag_letters(int(segment[TCP].flags))


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
        length = len(tcp_payload(segment)) + ("S" in flags_of(segment)) + ("F" in flags_of(segment))
        if "S" in flags_of(segment):
            self.rcv_nxt = (tcp.seq + length) % 2**32
        elif length and tcp.seq == self.rcv_nxt:
            self.rcv_nxt = (self.rcv_nxt + length) % 2**32


class ReactivePeer:
    """A minimal TCP endpoint on the MAC side that answers the engine by itself.

    It owns the bench's receive queue: every TCP segment the engine sends is routed by
    port pair to one :class:`PeerConnection`, which ACKs in-order data (dropping
    retransmitted bytes), collects what it received, answers FIN with ACK, and sends its
    own data within the engine's advertised window.  ARP requests for the peer's address
    are answered.  Tests drive it with :meth:`connect`, :meth:`PeerConnection.send`,
    :meth:`PeerConnection.close`; it is deliberately simple (no retransmission of its
    own, no out-of-order arrival): a correct engine never needs more from it.
    """

    def __init__(self, bench, config: ToeConfig, mac: str = "02:00:00:00:00:01",
                 ip: str = "10.0.0.1"):
        import cocotb

        self.bench = bench
        self.config = config
        self.mac = mac
        self.ip = ip
        self.connections: dict[tuple[int, int], PeerConnection] = {}
        self.stray: list[Packet] = []
        self._task = cocotb.start_soon(self._run())

    def connection(self, port: int, engine_port: int, isn: int = 1000) -> "PeerConnection":
        conn = PeerConnection(self, ScriptedPeer(self.config, port=port,
                                                 engine_port=engine_port, isn=isn,
                                                 mac=self.mac, ip=self.ip))
        self.connections[(port, engine_port)] = conn
        return conn

    def connect(self, port: int, engine_port: int, isn: int = 1000) -> "PeerConnection":
        """Open a connection to a listening engine port (the SYN goes out now)."""
        conn = self.connection(port, engine_port, isn)
        self.bench.send(conn.script.syn())
        return conn

    def accept_from(self, port: int, engine_port: int, isn: int = 1000) -> "PeerConnection":
        """Expect the engine to connect from ``engine_port`` to ``port`` (answers its SYN)."""
        conn = self.connection(port, engine_port, isn)
        conn.passive = True
        return conn

    async def _run(self) -> None:
        from scapy.layers.l2 import ARP

        while True:
            frame = (await self.bench.recv(timeout_ns=None)).ether
            if ARP in frame:
                if frame[ARP].op == 1 and frame[ARP].pdst == self.ip:
                    self.bench.send(Ether(dst=frame.src, src=self.mac) / ARP(
                        op=2, hwsrc=self.mac, psrc=self.ip, hwdst=frame.src,
                        pdst=frame[ARP].psrc))
                continue
            if TCP not in frame:
                continue
            key = (frame[TCP].dport, frame[TCP].sport)
            conn = self.connections.get(key)
            if conn is None:
                self.stray.append(frame)
            else:
                conn.handle(frame)


class PeerConnection:
    """One connection of a :class:`ReactivePeer`."""

    def __init__(self, peer: ReactivePeer, script: ScriptedPeer):
        from cocotb.triggers import Event

        self.peer = peer
        self.script = script
        self.passive = False
        self.refuse = False  # answer the engine's SYN with RST (port closed)
        self.received = bytearray()
        self.established = Event()
        self.fin_received = Event()
        self.reset = Event()
        self.changed = Event()
        self.segments: list[Packet] = []
        self._outbox = b""  # bytes to send, beyond what is in flight
        self._fin_pending = False
        self.fin_sent = False
        self.snd_una = script.snd_nxt
        self.engine_window = 0
        self.engine_right = 0  # right edge of the engine's window (sequence number)

    def handle(self, segment: Packet) -> None:
        tcp = segment[TCP]
        flags = flags_of(segment)
        self.segments.append(segment)
        if "R" in flags:
            self.reset.set()
            return
        if "S" in flags:
            self.script.take(segment)
            if self.passive and self.refuse:
                self.peer.bench.send(self.script.segment("RA", seq=0))
                return
            if self.passive and "A" not in flags:
                self.script.snd_nxt = self.script.isn
                self.peer.bench.send(self.script.segment("SA", options=[("MSS", 1460)]))
            elif "A" in flags:
                self.peer.bench.send(self.script.segment("A"))
            self.snd_una = tcp.ack if "A" in flags else self.snd_una
        payload = tcp_payload(segment)
        answer = False
        if payload or "F" in flags:
            if tcp.seq == self.script.rcv_nxt:
                self.received += payload
                self.script.rcv_nxt = (self.script.rcv_nxt + len(payload)) % 2**32
                if "F" in flags:
                    self.script.rcv_nxt = (self.script.rcv_nxt + 1) % 2**32
                    self.fin_received.set()
            answer = True  # in order or not: ACK what we have
        if "A" in flags:
            self.snd_una = tcp.ack
            self.established.set()
        self.engine_window = tcp.window
        self.engine_right = (tcp.ack + tcp.window) % 2**32 if "A" in flags else self.engine_right
        if answer:
            self.peer.bench.send(self.script.segment("A"))
        self._pump()
        self.changed.set()

    def send(self, data: bytes) -> None:
        """Queue ``data``; it goes out as the engine's window allows."""
        self._outbox += data
        self._pump()

    def close(self) -> None:
        """FIN after the queued data."""
        self._fin_pending = True
        self._pump()

    def _pump(self) -> None:
        if not self.established.is_set():
            return
        while self._outbox:
            if not seq_before(self.script.snd_nxt, self.engine_right):
                break
            n = min(seq_diff(self.engine_right, self.script.snd_nxt), 1460, len(self._outbox))
            chunk, self._outbox = self._outbox[:n], self._outbox[n:]
            self.peer.bench.send(self.script.segment("PA", chunk))
        if self._fin_pending and not self._outbox and not self.fin_sent:
            self.fin_sent = True
            self.peer.bench.send(self.script.segment("FA"))

    async def wait(self, condition, timeout_ns: float = 50_000_000) -> None:
        """Wait until ``condition()`` holds (checked after every segment)."""
        from cocotb.triggers import with_timeout

        async def loop():
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await with_timeout(loop(), timeout_ns, "ns")
