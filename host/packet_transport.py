"""The host driver over raw Ethernet: a transport to a board's host link (AF_PACKET).

A board (``toe build --board``, docs/boards.md) serves the engine's host interface on
an Ethernet port with the virtual NIC's message format (``socket_transport.py``, "Wire
format"), several messages to a frame, in frames of EtherType :data:`ETHERTYPE`.
:func:`open_board` opens an ``AF_PACKET`` socket on the host's interface facing the
board and returns the same :class:`host.api.Engine` that
:func:`host.socket_transport.open_engine` returns, so one asyncio program runs against
the virtual NIC and against a board::

    engine = await open_board("eth1", "02:00:00:00:00:02")   # needs CAP_NET_RAW

The messages are those of :class:`~host.socket_transport.SocketTransport`, which this
transport extends: only the carriage differs.

- A message never spans frames; a frame holds at most 1500 bytes of messages (a TXD
  carries at most :data:`MAX_WRITE` bytes: a longer write goes as several).
- Flow control: the board buffers :data:`WINDOW_FRAMES` frames; every frame ends with a
  CSRR of the ``id`` register, a fence: the board answers CSRRs in order after carrying
  out everything before them, so its CSRV returns the frame's place in the window.
- The link's own counters (:data:`LINK_STATS_FIELDS`) answer :meth:`stats`.
- The board's registers (:data:`~toe.hdl.csr_map.BOARD_REGISTERS`, 0x30..0x3F) are read
  and written as the engine's; :meth:`~PacketTransport.mdio_read` and
  :meth:`~PacketTransport.mdio_write` reach a PHY's clause-22 registers through them.
- Frames from the board are read from the socket in the asyncio loop; a lost frame is
  not sent again (the link is a cable to a board, not a network).
"""

import asyncio
import contextlib
import json
import socket
import struct
from collections import deque
from dataclasses import fields
from typing import Any

from toe.hdl.config import ToeConfig
from toe.hdl.csr_map import (
    BOARD_REGISTERS,
    MDIO_BUSY,
    MDIO_IGNORED,
    MDIO_READ_DONE,
    REGISTERS,
    mdio_command,
)

from .api import Engine
from .socket_transport import Message, SocketTransport

__all__ = [
    "ETHERTYPE", "LINK_STATS_FIELDS", "MAX_WRITE", "PacketTransport", "WINDOW_FRAMES",
    "open_board",
]

#: IEEE 802 "local experimental" EtherType 1 (IEEE Std 802-2014 s9.2.2).
ETHERTYPE = 0x88B5
#: The board's host-link counters, in the order of a STATS answer (u64 each).
LINK_STATS_FIELDS = ("frames_in", "frames_ignored", "frames_malformed", "frames_bad",
                     "frames_overflow", "frames_out")
PAYLOAD = 1500
#: Bytes of one write in a TXD message of a frame (type, length, connection, fence).
MAX_WRITE = PAYLOAD - 3 - 2 - 5
#: Frames in flight to the board (its host-link buffer holds 8 KiB).
WINDOW_FRAMES = 4
_FENCE = struct.pack("<BHH", Message.CSR_READ, 2, REGISTERS["id"][0])


def mac_bytes(mac: str | bytes) -> bytes:
    return mac if isinstance(mac, bytes) else bytes.fromhex(mac.replace(":", ""))


class _FrameWriter:
    """What :class:`SocketTransport` writes to: messages packed into frames, sent
    within the window (``drain`` waits until everything written has been sent)."""

    def __init__(self, sock: socket.socket, header: bytes, expect: deque):
        self.sock = sock
        self.header = header
        self.expect = expect  # one entry per CSRR sent: "fence" or "user", in order
        self.queue: deque[bytes] = deque()
        self.in_flight = 0
        self.sent_frames = 0
        self.changed = asyncio.Event()
        self.closed = False

    def write(self, message: bytes) -> None:
        self.queue.append(message)
        self._pump()

    def fence_answered(self) -> None:
        self.in_flight -= 1
        self._pump()

    def _pump(self) -> None:
        while self.queue and self.in_flight < WINDOW_FRAMES and not self.closed:
            body = bytearray()
            while self.queue and len(body) + len(self.queue[0]) + len(_FENCE) <= PAYLOAD:
                message = self.queue.popleft()
                if message[0] == Message.CSR_READ:
                    self.expect.append("user")
                body += message
            if not body:
                raise ValueError(f"a message of {len(self.queue[0])} bytes does not fit")
            body += _FENCE
            self.expect.append("fence")
            frame = self.header + bytes(body)
            self.sock.send(frame + bytes(max(0, 60 - len(frame))))
            self.in_flight += 1
            self.sent_frames += 1
        self.changed.set()

    async def drain(self) -> None:
        while self.queue and not self.closed:
            self.changed.clear()
            await self.changed.wait()

    def close(self) -> None:
        self.closed = True
        self.changed.set()

    async def wait_closed(self) -> None:
        return None


class PacketTransport(SocketTransport):
    """:class:`SocketTransport`'s messages in raw Ethernet frames to a board."""

    def __init__(self, sock: socket.socket, board_mac: bytes, config: ToeConfig,
                 hello: dict[str, Any], writer: _FrameWriter, reader: asyncio.StreamReader):
        super().__init__(reader, writer, config, hello)
        self.sock = sock
        self.board_mac = board_mac
        self._mdio_lock = asyncio.Lock()

    def send_tx_writes(self, writes: list[tuple[int, bytes]]) -> None:
        chunks = []
        for conn, data in writes:
            if not data:
                chunks.append((conn, data))
            chunks += [(conn, data[at : at + MAX_WRITE]) for at in range(0, len(data), MAX_WRITE)]
        super().send_tx_writes(chunks)

    async def stats(self) -> dict[str, int]:
        """The board's host-link counters (:data:`LINK_STATS_FIELDS`)."""
        self._send(Message.STATS, b"")
        values = await self._stats_answers.get()
        return {name: values.get(old, 0) for name, old in zip(
            LINK_STATS_FIELDS, list(values), strict=False)}

    async def mdio_read(self, phy: int, reg: int) -> int:
        """Register ``reg`` of the PHY at address ``phy`` (IEEE 802.3 clause 22), through
        the board's ``mdio_cmd`` and ``mdio_status``.  No PHY at ``phy``: 0xFFFF (the
        line's pull-up; ``mdio_status`` also sets MDIO_NO_ANSWER)."""
        word = await self._mdio(mdio_command(phy, reg))
        if not word & MDIO_READ_DONE:
            raise ConnectionError(f"MDIO read of PHY {phy} register {reg}: no data")
        return word & 0xFFFF

    async def mdio_write(self, phy: int, reg: int, value: int) -> None:
        """Write ``value`` to register ``reg`` of the PHY at ``phy`` (clause 22); returns
        when the frame has gone out."""
        await self._mdio(mdio_command(phy, reg, write=True, value=value))

    async def _mdio(self, command: int, polls: int = 100) -> int:
        """Write ``mdio_cmd`` and read ``mdio_status`` until the frame is done (one
        frame takes 33 us at the 50 MHz core: the first poll usually finds it done)."""
        async with self._mdio_lock:
            await self.write_registers([(BOARD_REGISTERS["mdio_cmd"][0], command)])
            for _ in range(polls):
                word = await self.read_register(BOARD_REGISTERS["mdio_status"][0])
                if word & MDIO_IGNORED:
                    raise ConnectionError("the board's MDIO master was busy")
                if not word & MDIO_BUSY:
                    return word
            raise TimeoutError("the board's MDIO master stayed busy")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.drain(), 1.0)
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        await super().close()
        self.sock.close()


def _frames_to_stream(sock, board_mac, reader, expect, writer) -> None:
    """Read every waiting frame; feed its messages (fences taken out) to ``reader``."""
    while True:
        try:
            frame = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            reader.feed_eof()
            return
        if len(frame) < 14 or frame[6:12] != board_mac:
            continue
        if struct.unpack("!H", frame[12:14])[0] != ETHERTYPE:
            continue
        at = 14
        while at + 3 <= len(frame):
            kind, length = struct.unpack("<BH", frame[at : at + 3])
            if kind == 0 or at + 3 + length > len(frame):
                break  # padding
            message = frame[at : at + 3 + length]
            at += 3 + length
            if kind == Message.CSR_VALUE and expect:
                if expect.popleft() == "fence":
                    writer.fence_answered()
                    continue
            reader.feed_data(message)


async def open_board(interface: str, board_mac: str | bytes, *, keys: bool = True,
                     sock: socket.socket | None = None, timeout: float = 2.0,
                     **engine_options: Any) -> Engine:
    """An :class:`Engine` on the board at ``board_mac`` behind ``interface``.

    Sends HELLO and waits ``timeout`` seconds for the board's configuration.  ``sock``:
    an ``AF_PACKET``/``SOCK_RAW`` socket made elsewhere (in another network namespace,
    for example); ``keys`` and ``engine_options`` as :func:`open_engine`.
    """
    board = mac_bytes(board_mac)
    if sock is None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    sock.bind((interface, ETHERTYPE))
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    own = sock.getsockname()[4]
    header = board + own + struct.pack("!H", ETHERTYPE)
    expect: deque = deque()
    writer = _FrameWriter(sock, header, expect)
    reader = asyncio.StreamReader(limit=1 << 20)
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), _frames_to_stream, sock, board, reader, expect, writer)
    try:
        writer.write(struct.pack("<BH", Message.HELLO, 0))
        kind, payload = await asyncio.wait_for(SocketTransport._read_message(reader), timeout)
        if kind != Message.HELLO or not payload:
            raise ConnectionError(f"the board at {board.hex(':')} sent {kind:#x} before HELLO")
    except BaseException:
        loop.remove_reader(sock.fileno())
        sock.close()
        raise
    hello = json.loads(payload)
    names = {f.name for f in fields(ToeConfig)}
    config = ToeConfig(**{k: v for k, v in hello["config"].items() if k in names})
    transport = PacketTransport(sock, board, config, hello, writer, reader)
    engine = Engine(transport, config, **engine_options)
    if keys:
        await engine.write_keys()
    return engine
