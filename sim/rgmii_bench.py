"""cocotb side of the whole-board simulations: a board top driven at its RGMII pins.

:class:`BoardBench` attaches to a :class:`toe.boards.top.BoardTop` built with
``simulation=True`` (:mod:`sim.board_sim`):

- the core clock ``clk`` at the board's ``core_mhz`` (the PLL's output), and each PHY's
  125 MHz RX clock ``eth<N>_rx_clk`` (1000BASE-T RGMII, RGMII 2.0 s3.3);
- per port a cocotbext-eth ``RgmiiSource`` (the PHY's RD/RX_CTL, what the board
  receives) and ``RgmiiSink`` (TD/TX_CTL sampled on the board's TXC, what it sends);
  frames cross the pins with preamble, SFD and FCS, and every frame the board sends
  must carry a correct FCS and no TX_ER (IEEE 802.3 s3.2.9, s35.2.2.5);
- :attr:`BoardBench.net`: the network side as the interface of
  :class:`sim.testbench.MacTestbench` that the scripted and reactive peers
  (:mod:`sim.tcp_peer`) use (``send``, ``recv``, ``now_ns``);
- :class:`HostLinkTransport`: the host driver's transport over the host link, frames of
  EtherType 0x88B5 on the host's port (port 1 of the Colorlight i9; port 0, shared with
  the network, on the ECPIX-5, where the bench splits what the board sends by
  EtherType as a switch port would not need to: the host and the peer see their own
  frames only).  The framing, window and fences are the AF_PACKET transport's own code
  (``host/packet_transport.py``: ``_FrameWriter``, ``_frames_to_stream``) over a socket
  double, so :class:`host.api.Engine` runs unchanged, as ``open_board`` gives it.
"""

import json
import logging
import struct
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, with_timeout
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from toe.boards.platforms import BOARDS
from toe.hdl.config import ToeConfig
from toe.hdl.host_if import command_layout, data_layout
from toe.host.packet_transport import (
    ETHERTYPE,
    LINK_STATS_FIELDS,
    MAX_WRITE,
    _frames_to_stream,
    _FrameWriter,
    mac_bytes,
)
from toe.host.socket_transport import Message

from .testbench import RecvTimeout

__all__ = ["BoardBench", "HostLinkTransport", "PinFrame", "RGMII_NS", "HOST_MAC"]

#: One cycle of the 125 MHz RGMII clock (1000BASE-T: one byte a cycle).
RGMII_NS = 8
#: The host's address on the host link.
HOST_MAC = "02:00:00:00:00:99"


@dataclass
class PinFrame:
    """A frame the board sent, as it crossed the TX pins: start and end (ns) and the
    bytes from the destination address to the end of the payload (FCS checked and
    stripped, padding kept)."""

    time_ns: float
    end_ns: float
    data: bytes
    _ether: Ether | None = field(default=None, repr=False)

    @property
    def ether(self) -> Ether:
        if self._ether is None:
            self._ether = Ether(self.data)
        return self._ether

    def __bytes__(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return len(self.data)


class _Port:
    """One RGMII port: its source (to the board), sink (from the board) and the
    frames the board sent, split by EtherType into the host's and the network's."""

    def __init__(self, dut, n: int, ctl: str):
        def pin(name):
            return getattr(dut, f"eth{n}_{name}")

        self.n = n
        self.source = RgmiiSource(pin("rx_data"), pin(f"rx_{ctl}"), pin("rx_clk"))
        self.sink = RgmiiSink(pin("tx_data"), pin(f"tx_{ctl}"), pin("tx_clk"))
        for model in (self.source, self.sink):
            model.log.setLevel(logging.WARNING)
        self.net: Queue[PinFrame] = Queue()
        self.host: Queue[PinFrame] = Queue()
        self.sent: list[PinFrame] = []  # every frame the board sent on this port
        self.received_bytes = 0  # wire bytes into the board (preamble to FCS)
        self.injected: list[tuple[float, bytes]] = []  # (time ns, frame) into the board
        self.errors: list[str] = []
        cocotb.start_soon(self._collect())

    def send(self, frame: bytes) -> None:
        self.injected.append((get_sim_time("ns"), frame))
        gmii = GmiiFrame.from_payload(frame)
        self.received_bytes += len(gmii)
        self.source.send_nowait(gmii)

    async def _collect(self) -> None:
        while True:
            gmii = await self.sink.recv()
            end = get_sim_time("ns")
            start = end - len(gmii) * RGMII_NS
            if gmii.error is not None and any(gmii.error):
                self.errors.append(f"port {self.n}: frame sent with TX_ER at {end} ns")
            if not gmii.check_fcs():
                self.errors.append(f"port {self.n}: frame with a bad FCS at {end} ns")
            # MacTx sends 7 x 0x55 and 0xD5 (tests/test_mac_tx.py checks it).  The sink
            # wakes on TX_CTL's rising edge, which the zero-delay DDR model changes with
            # TXC, so it misses the first preamble octet: 6 or 7 are accepted here.
            preamble = bytes(gmii.get_preamble())
            if preamble not in (bytes([0x55] * 6 + [0xD5]), bytes([0x55] * 7 + [0xD5])):
                self.errors.append(f"port {self.n}: preamble {preamble.hex()}")
            frame = PinFrame(start, end, bytes(gmii.get_payload()))
            self.sent.append(frame)
            ethertype = struct.unpack("!H", frame.data[12:14])[0] if len(frame) >= 14 else 0
            (self.host if ethertype == ETHERTYPE else self.net).put_nowait(frame)


class NetworkSide:
    """The network port as :class:`sim.testbench.MacTestbench`'s frame interface."""

    def __init__(self, port: _Port):
        self.port = port

    @property
    def now_ns(self) -> float:
        return get_sim_time("ns")

    def send(self, frame: bytes | Packet) -> None:
        self.port.send(bytes(frame))

    async def recv(self, timeout_ns: float | None = 1_000_000) -> PinFrame:
        if timeout_ns is None:
            return await self.port.net.get()
        try:
            return await with_timeout(self.port.net.get(), timeout_ns, "ns")
        except TimeoutError:
            raise RecvTimeout(f"no frame from the board within {timeout_ns:g} ns "
                              f"(now {self.now_ns:g} ns)") from None


class BoardBench:
    """Clocks, reset and the RGMII models of one board top (see the module doc)."""

    def __init__(self, dut, board: str, config: ToeConfig):
        self.dut = dut
        self.info = BOARDS[board]
        self.config = config
        self.core_ns = 1000 / self.info.core_mhz
        Clock(dut.clk, self.core_ns, unit="ns").start()
        dut.rst.value = 1
        ctl = "ctl" if hasattr(dut, "eth0_rx_ctl") else "ctrl"
        self.ports = []
        for n in range(self.info.ports):
            # The PHYs' clocks are independent of the core clock and of each other.
            getattr(dut, f"eth{n}_rx_clk").value = 0
            Clock(getattr(dut, f"eth{n}_rx_clk"), RGMII_NS, unit="ns").start(
                start_high=n == 0)
            self.ports.append(_Port(dut, n, ctl))
        self.net = NetworkSide(self.ports[0])
        self.host_port = self.ports[-1]

    async def reset(self, cycles: int = 16) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, cycles)

    @property
    def now_ns(self) -> float:
        return get_sim_time("ns")

    async def core_cycles(self, n: int) -> None:
        await ClockCycles(self.dut.clk, n)

    def errors(self) -> list[str]:
        return [e for port in self.ports for e in port.errors]

    def write_pcaps(self, directory) -> None:
        """``port<N>.pcap``: every frame into and out of each port, in time order."""
        from pathlib import Path

        from scapy.utils import wrpcap

        for port in self.ports:
            records = [(t, data) for t, data in port.injected]
            records += [(f.time_ns, f.data) for f in port.sent]
            packets = []
            for t, data in sorted(records, key=lambda r: r[0]):
                packet = Ether(data)
                packet.time = t / 1e9
                packets.append(packet)
            if packets:
                wrpcap(str(Path(directory) / f"port{port.n}.pcap"), packets)


class _SocketDouble:
    """What ``_FrameWriter`` and ``_frames_to_stream`` use of an AF_PACKET socket."""

    def __init__(self, port: _Port):
        self.port = port
        self.inbox: deque[bytes] = deque()
        self.frames_sent: list[tuple[float, int]] = []  # (time ns, bytes) per frame

    def send(self, frame: bytes) -> int:
        self.frames_sent.append((get_sim_time("ns"), len(frame)))
        self.port.send(frame)
        return len(frame)

    def recv(self, _size: int) -> bytes:
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.popleft()


class _MessageReader:
    """Takes the messages ``_frames_to_stream`` feeds (one whole message a call)."""

    def __init__(self, transport: "HostLinkTransport"):
        self.transport = transport

    def feed_data(self, message: bytes) -> None:
        self.transport._message(message[0], message[3:])

    def feed_eof(self) -> None:
        pass


class HostLinkTransport:
    """:class:`host.api.Transport` over the host link of a simulated board.

    The send methods are plain functions: the messages are packed into frames at once
    (at most :data:`~toe.host.packet_transport.WINDOW_FRAMES` frames in flight, each
    ended by a fence) and queued on the host port's RGMII source.
    """

    def __init__(self, bench: BoardBench, config: ToeConfig, host_mac: str = HOST_MAC):
        self.bench = bench
        self.config = config
        self.board_mac = config.mac_addr.to_bytes(6, "big")
        self.host_mac = mac_bytes(host_mac)
        self.sock = _SocketDouble(bench.host_port)
        self.expect: deque = deque()
        header = self.board_mac + self.host_mac + struct.pack("!H", ETHERTYPE)
        self.writer = _FrameWriter(self.sock, header, self.expect)
        self._reader = _MessageReader(self)
        self._command_bytes = (command_layout(config).size + 7) // 8
        self._beat_bytes = (data_layout(config).size + 7) // 8
        self._sink = None
        self._answers: Queue[tuple[int, bytes]] = Queue()  # (type, payload) of answers
        self.events_in = 0
        self.rx_bytes_in = 0
        self.rx_log: list[tuple[float, int]] = []  # (time ns, bytes) per RXD message
        self._message_arrived = Event()
        cocotb.start_soon(self._receive())

    # ------------------------------------------------------------ Transport

    def attach(self, sink) -> None:
        self._sink = sink

    def make_event(self) -> Event:
        return Event()

    def send_commands(self, commands: list[int]) -> None:
        for bits in commands:
            self._send(Message.COMMAND, bits.to_bytes(self._command_bytes, "little"))

    def send_tx_beats(self, beats: list[int]) -> None:
        for bits in beats:
            self._send(Message.TX_BEAT, bits.to_bytes(self._beat_bytes, "little"))

    def send_tx_writes(self, writes: list[tuple[int, bytes]]) -> None:
        for conn, data in writes:
            chunks = [data[at : at + MAX_WRITE] for at in range(0, len(data), MAX_WRITE)]
            for chunk in chunks or [b""]:
                self._send(Message.TX_DATA, conn.to_bytes(2, "little") + chunk)

    async def write_registers(self, writes: list[tuple[int, int]]) -> None:
        for addr, value in writes:
            self._send(Message.CSR_WRITE, struct.pack("<HI", addr, value))
        await self.drained()

    # ------------------------------------------------------------ requests

    async def hello(self, timeout_ns: float = 2_000_000) -> dict[str, Any]:
        """HELLO: the board's configuration (the virtual NIC's JSON plus ``board``)."""
        self._send(Message.HELLO, b"")
        kind, payload = await self._answer(timeout_ns)
        assert kind == Message.HELLO, f"answer {kind:#x} to HELLO"
        return json.loads(payload)

    def hello_config(self, hello: dict[str, Any]) -> ToeConfig:
        names = {f.name for f in fields(ToeConfig)}
        return ToeConfig(**{k: v for k, v in hello["config"].items() if k in names})

    async def read_register(self, addr: int, timeout_ns: float = 2_000_000) -> int:
        self._send(Message.CSR_READ, struct.pack("<H", addr))
        kind, payload = await self._answer(timeout_ns)
        assert kind == Message.CSR_VALUE, f"answer {kind:#x} to CSRR"
        got, value = struct.unpack("<HI", payload)
        assert got == addr, f"CSRV for {got:#x}, asked {addr:#x}"
        return value

    async def stats(self, timeout_ns: float = 2_000_000) -> dict[str, int]:
        """The board's host-link counters."""
        self._send(Message.STATS, b"")
        kind, payload = await self._answer(timeout_ns)
        assert kind == Message.STATS, f"answer {kind:#x} to STATS"
        values = struct.unpack(f"<{len(payload) // 8}Q", payload)
        return dict(zip(LINK_STATS_FIELDS, values, strict=False))

    async def drained(self) -> None:
        """Wait until every message was sent in a frame and every fence answered."""
        while self.writer.queue or self.writer.in_flight:
            self._message_arrived.clear()
            await self._message_arrived.wait()

    # ------------------------------------------------------------ internals

    def _send(self, kind: int, payload: bytes) -> None:
        self.writer.write(struct.pack("<BH", kind, len(payload)) + payload)

    async def _answer(self, timeout_ns: float) -> tuple[int, bytes]:
        return await with_timeout(self._answers.get(), timeout_ns, "ns")

    async def _receive(self) -> None:
        port = self.bench.host_port
        while True:
            frame = await port.host.get()
            self.sock.inbox.append(frame.data)
            _frames_to_stream(self.sock, self.board_mac, self._reader, self.expect,
                              self.writer)
            self._message_arrived.set()

    def _message(self, kind: int, payload: bytes) -> None:
        if kind == Message.EVENT:
            self.events_in += 1
            if self._sink is not None:
                self._sink.feed_event(int.from_bytes(payload, "little"))
        elif kind == Message.RX_DATA:
            self.rx_bytes_in += len(payload) - 3
            self.rx_log.append((get_sim_time("ns"), len(payload) - 3))
            if self._sink is not None:
                self._sink.feed_rx_data(payload[0] | payload[1] << 8, payload[3:],
                                        bool(payload[2]))
        elif kind == Message.RX_BEAT:
            if self._sink is not None:
                self._sink.feed_rx_beat(int.from_bytes(payload, "little"))
        else:  # CSRV (not a fence), HELLO, STATS: answers, in order
            self._answers.put_nowait((kind, payload))

