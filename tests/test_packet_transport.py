"""The AF_PACKET host transport against a small Python board model, on a veth pair.

The test creates a network namespace with a veth pair inside it (both ends there, so
nothing leaves it), opens the driver's transport on one end and a board model on the
other, and removes the namespace at the end.  It needs root (CAP_NET_ADMIN, CAP_NET_RAW)
and skips with the reason otherwise.  The board model follows the host-link format of
boards/host_link.py: the virtual NIC's messages in frames of EtherType 0x88B5, CSRRs
answered in order.
"""

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import uuid
from dataclasses import asdict

import pytest

from toe.hdl.config import ToeConfig
from toe.hdl.csr_map import ID_VALUE
from toe.hdl.host_if import CommandOp, EventKind, command_layout, event_layout
from toe.host.packet_transport import ETHERTYPE, open_board
from toe.sim.netns import socket_in_netns

CONFIG = ToeConfig(connections=8, tx_ring_bytes=4096)
BOARD_MAC = bytes.fromhex("020000000002")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace and raw sockets)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


@pytest.fixture
def veth():
    why = _why_not()
    if why:
        pytest.skip(why)
    ns = f"toe-pkt-{uuid.uuid4().hex[:6]}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        run = ["ip", "-n", ns]
        subprocess.run(run + ["link", "add", "hostp", "type", "veth", "peer", "name", "boardp"],
                       check=True)
        subprocess.run(run + ["link", "set", "boardp", "address", BOARD_MAC.hex(":")],
                       check=True)
        for dev in ("hostp", "boardp"):
            subprocess.run(run + ["link", "set", dev, "up"], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        pytest.skip(f"cannot create a namespace with a veth pair: {e}")
    yield ns
    subprocess.run(["ip", "netns", "del", ns], check=False)


class BoardModel(threading.Thread):
    """The board's side of the link in Python: HELLO, registers, LISTEN -> LISTENING
    and ACCEPTED, TXD -> ACKED and the bytes echoed as RXD, each CSRR answered."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.stop = False
        self.frames_in = 0
        self.max_in_flight_seen = 0
        self.registers = {}
        self.cmd = command_layout(CONFIG)
        self.evt = event_layout(CONFIG)
        self.evt_bytes = (self.evt.size + 7) // 8

    def event(self, **fields) -> bytes:
        bits = self.evt.const(fields).as_bits()
        return struct.pack("<BH", 0x03, self.evt_bytes) + bits.to_bytes(self.evt_bytes, "little")

    def answer(self, kind, payload) -> list[bytes]:
        if kind == 0x01:
            hello = json.dumps({"config": asdict(CONFIG), "board": "model"}).encode()
            return [struct.pack("<BH", 0x01, len(hello)) + hello]
        if kind == 0x06:
            addr, value = struct.unpack("<HI", payload)
            self.registers[addr] = value
        if kind == 0x07:
            (addr,) = struct.unpack("<H", payload)
            value = ID_VALUE if addr == 0 else self.registers.get(addr, 0)
            return [struct.pack("<BHHI", 0x08, 6, addr, value)]
        if kind == 0x02:
            view = self.cmd.from_bits(int.from_bytes(payload, "little"))
            if view.op == CommandOp.LISTEN:
                return [self.event(kind=EventKind.LISTENING, tag=view.tag, port=view.port),
                        self.event(kind=EventKind.ACCEPTED, conn=3, port=view.port,
                                   addr=0x0A000001, remote_port=40000)]
        if kind == 0x0D:
            conn = payload[0] | payload[1] << 8
            data = payload[2:]
            out = [self.event(kind=EventKind.ACKED, conn=conn, value=len(data))]
            if data:
                out.append(struct.pack("<BHHB", 0x0E, 3 + len(data), conn, 1) + data)
            return out
        return []

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                frame = self.sock.recv(2048)
            except TimeoutError:
                continue
            if frame[:6] != BOARD_MAC or struct.unpack("!H", frame[12:14])[0] != ETHERTYPE:
                continue
            self.frames_in += 1
            replies, at = [], 14
            while at + 3 <= len(frame):
                kind, length = struct.unpack("<BH", frame[at : at + 3])
                if kind == 0:
                    break
                replies += self.answer(kind, frame[at + 3 : at + 3 + length])
                at += 3 + length
            body = b"".join(replies)
            header = frame[6:12] + BOARD_MAC + struct.pack("!H", ETHERTYPE)
            while body:  # answers in frames of at most 1500 bytes, messages whole
                cut = 0
                while cut < len(body):
                    length = struct.unpack("<H", body[cut + 1 : cut + 3])[0]
                    if cut + 3 + length > 1500:
                        break
                    cut += 3 + length
                self.sock.send(header + body[:cut])
                body = body[cut:]


def test_driver_over_af_packet_listens_writes_and_reads(veth):
    """The same Engine API as over the virtual NIC's socket (host/packet_transport.py):
    HELLO gives the configuration, register reads come back in order, a listener gets
    its connection, and 20 kB written come back byte-exact, in more frames than the
    window holds (the fences return it)."""
    board_sock = socket_in_netns(veth, socket.AF_PACKET, socket.SOCK_RAW)
    board_sock.bind(("boardp", ETHERTYPE))
    board = BoardModel(board_sock)
    board.start()
    text = bytes((i * 7) & 0xFF for i in range(20_000))

    async def main():
        host_sock = socket_in_netns(veth, socket.AF_PACKET, socket.SOCK_RAW)
        engine = await open_board("hostp", BOARD_MAC, sock=host_sock)
        assert engine.config.connections == 8
        assert await engine.transport.read_register(0) == ID_VALUE
        listener = await engine.listen(7)
        conn = await asyncio.wait_for(listener.accept(), 5)
        conn.write(text)
        await conn.drain()
        got = await asyncio.wait_for(conn.readexactly(len(text)), 10)
        await engine.transport.close()
        return got

    try:
        got = asyncio.run(main())
    finally:
        board.stop = True
        board.join(2)
        board_sock.close()
    assert got == text
    assert board.frames_in > 4  # more frames than the window: the fences came back
    assert board.registers  # write_keys reached the board
