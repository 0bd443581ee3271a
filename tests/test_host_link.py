"""The host-link bridge at its ports, in the Amaranth simulator.

The rule under test is the host link's format (boards/host_link.py): the virtual NIC's
socket messages (host/socket_transport.py "Wire format": type u8, length u16 LE,
payload) carried in Ethernet frames of EtherType 0x88B5.  Frames are built here with
``struct`` and parsed with ``struct``, independently of the gateware.
"""

import json
import struct

import pytest
from amaranth_helpers import beat_bytes, run, split_beats

from toe.boards.host_link import HostLinkBridge
from toe.hdl.config import ToeConfig
from toe.hdl.host_if import CommandOp, EventKind, command_layout, data_layout, event_layout
from toe.host.packet_transport import ETHERTYPE, LINK_STATS_FIELDS

BOARD_MAC = bytes.fromhex("020000000002")
HOST_MAC = bytes.fromhex("02aabbccddee")
CONFIG = ToeConfig(connections=8)


def message(kind: int, payload: bytes) -> bytes:
    return struct.pack("<BH", kind, len(payload)) + payload


def frame(*messages: bytes, dst=BOARD_MAC, ethertype=ETHERTYPE) -> bytes:
    body = dst + HOST_MAC + struct.pack("!H", ethertype) + b"".join(messages)
    return body + bytes(max(0, 60 - len(body)))  # Ethernet padding, as a NIC adds it


def parse(frame_bytes: bytes) -> list[tuple[int, bytes]]:
    """The messages of a frame from the board (checks its header)."""
    assert frame_bytes[:6] == HOST_MAC, "the board answers the host's address"
    assert frame_bytes[6:12] == BOARD_MAC
    assert struct.unpack("!H", frame_bytes[12:14])[0] == ETHERTYPE
    at, out = 14, []
    while at + 3 <= len(frame_bytes):
        kind, length = struct.unpack("<BH", frame_bytes[at : at + 3])
        assert at + 3 + length <= len(frame_bytes), "a message runs past the frame"
        out.append((kind, frame_bytes[at + 3 : at + 3 + length]))
        at += 3 + length
    assert at == len(frame_bytes), "the board sends no padding (the MAC adds it)"
    return out


class Bench:
    """Drives the bridge: frames in, streams and register bus recorded, frames out."""

    def __init__(self, config=CONFIG, cycles=4000):
        self.config = config
        self.dut = HostLinkBridge(config, board="test")
        self.cycles = cycles
        self.cmds, self.tx_beats, self.csr_writes, self.frames = [], [], [], []
        self.to_send = []  # (frame bytes, error flag)
        self.events, self.rx_beats = [], []  # to feed the bridge
        self.stats = {}

    async def _send(self, ctx):
        dut, w = self.dut, self.config.data_bytes
        ctx.set(dut.mac_addr, int.from_bytes(BOARD_MAC, "big"))
        for data, error in self.to_send:
            beats = split_beats(data, w)
            for n, (value, keep, last) in enumerate(beats):
                ctx.set(dut.i.p.beat.data, value)
                ctx.set(dut.i.p.beat.keep, keep)
                ctx.set(dut.i.p.beat.last, last)
                ctx.set(dut.i.p.error, error if n == len(beats) - 1 else 0)
                ctx.set(dut.i.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    if ready:
                        break
            ctx.set(dut.i.valid, 0)
            await ctx.tick().repeat(300)
        self.feed_cycles = []  # cycles to feed the events, then the RX beats
        for stream, items in ((dut.evt, self.events), (dut.host_rx, self.rx_beats)):
            ticks = 0
            for bits in items:
                ctx.set(stream.payload.as_value(), bits)
                ctx.set(stream.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(stream.ready)
                    ticks += 1
                    if ready:
                        break
            ctx.set(stream.valid, 0)
            self.feed_cycles.append(ticks)
        await ctx.tick().repeat(self.cycles)
        stats = ctx.get(dut.stats)
        self.stats = {name: (stats >> (32 * k)) & 0xFFFF_FFFF
                      for k, name in enumerate(LINK_STATS_FIELDS)}

    async def _sinks(self, ctx):
        dut, w = self.dut, self.config.data_bytes
        for stream in (dut.cmd, dut.host_tx, dut.o):
            ctx.set(stream.ready, 1)
        current = b""
        cycle = 0
        self.tx_cycles = []
        async for _, _, cmd_v, cmd_p, tx_v, tx_p, o_v, o_d, o_k, o_l, addr, we, wdata in (
                ctx.tick().sample(dut.cmd.valid, dut.cmd.payload, dut.host_tx.valid,
                                  dut.host_tx.payload, dut.o.valid, dut.o.p.data,
                                  dut.o.p.keep, dut.o.p.last, dut.csr_addr, dut.csr_we,
                                  dut.csr_wdata)):
            if cmd_v:
                self.cmds.append(cmd_p.as_value().value)
            cycle += 1
            if tx_v:
                self.tx_beats.append(tx_p.as_value().value)
                self.tx_cycles.append(cycle)
            if o_v:
                current += beat_bytes(o_d, o_k, w)
                if o_l:
                    self.frames.append(current)
                    current = b""
            if we:
                self.csr_writes.append((addr, wdata))
            ctx.set(dut.csr_rdata, 0x1000 + addr)  # a register file one cycle behind

    def run(self):
        run(self.dut, self._send, background=[self._sinks])
        return self


def beats_of(bench) -> list[dict]:
    layout = data_layout(bench.config)
    out = []
    for bits in bench.tx_beats:
        view = layout.from_bits(bits)
        out.append({"conn": int(view.conn), "count": int(view.count), "last": int(view.last),
                    "data": int(view.data).to_bytes(bench.config.data_bytes, "little")
                    [: int(view.count)]})
    return out


def test_frame_messages_become_commands_tx_data_and_register_accesses():
    """Host to board: CMD, TXD, CSRW and CSRR messages of one frame are carried out in
    order (boards/host_link.py; the socket's wire format), TXD bytes packed into beats
    with ``last`` on the write's end, and the CSRR answered with a CSRV in a frame to
    the frame's source address."""
    cmd_layout = command_layout(CONFIG)
    listen = cmd_layout.const({"op": CommandOp.LISTEN, "port": 7, "value": 4,
                               "tag": 0x1234}).as_bits()
    cmd_bytes = (cmd_layout.size + 7) // 8
    text = bytes(range(1, 21))
    bench = Bench()
    bench.to_send = [(frame(
        message(0x02, listen.to_bytes(cmd_bytes, "little")),
        message(0x0D, struct.pack("<H", 3) + text),
        message(0x0D, struct.pack("<H", 3)),  # end of stream: an empty beat with last
        message(0x06, struct.pack("<HI", 0x04, 0x0A000002)),
        message(0x07, struct.pack("<H", 0x10)),
    ), 0)]
    bench.run()
    assert bench.cmds == [listen]
    beats = beats_of(bench)
    assert b"".join(b["data"] for b in beats) == text
    assert [b["count"] for b in beats] == [8, 8, 4, 0]
    assert [b["last"] for b in beats] == [0, 0, 1, 1]
    assert {b["conn"] for b in beats} == {3}
    assert bench.csr_writes == [(0x04, 0x0A000002)]
    assert [parse(f) for f in bench.frames] == [[(0x08, struct.pack("<HI", 0x10, 0x1010))]]
    assert bench.stats["frames_in"] == 1 and bench.stats["frames_out"] == 1


def test_events_and_rx_data_become_frames():
    """Board to host: an event becomes an EVT message, consecutive RX beats of a
    connection one RXD message (u16 connection, u8 last, the bytes), and a HELLO request
    is answered with the configuration as JSON (the virtual NIC's HELLO)."""
    ev_layout = event_layout(CONFIG)
    event = ev_layout.const({"kind": EventKind.ACCEPTED, "conn": 5, "port": 80,
                             "addr": 0x0A000001, "remote_port": 40000}).as_bits()
    layout = data_layout(CONFIG)
    text = b"0123456789abcdefXYZ"
    rx = []
    for at in range(0, len(text), 8):
        chunk = text[at : at + 8]
        rx.append(layout.const({"conn": 2, "data": int.from_bytes(chunk, "little"),
                                "count": len(chunk),
                                "last": int(at + 8 >= len(text))}).as_bits())
    bench = Bench()
    bench.to_send = [(frame(message(0x01, b"")), 0)]
    bench.events = [event]
    bench.rx_beats = rx
    bench.run()
    messages = [m for f in bench.frames for m in parse(f)]
    hello = json.loads(messages[0][1])
    assert messages[0][0] == 0x01 and hello["config"]["connections"] == 8
    assert hello["board"] == "test"
    ev_bytes = (ev_layout.size + 7) // 8
    assert (0x03, event.to_bytes(ev_bytes, "little")) in messages
    runs = [p for kind, p in messages if kind == 0x0E]
    assert runs == [struct.pack("<HB", 2, 1) + text]


def test_malformed_frames_are_dropped_and_counted():
    """A message whose length runs past its frame is not carried out and ends the frame
    (``frames_malformed``); a frame the MAC flags bad is dropped whole (``frames_bad``);
    a frame of another EtherType or for another address is ignored (``frames_ignored``).
    The CSRR at the end shows the bridge in step afterwards."""
    cmd_layout = command_layout(CONFIG)
    cmd_bytes = (cmd_layout.size + 7) // 8
    good = cmd_layout.const({"op": CommandOp.LISTEN, "port": 7}).as_bits()
    cut = message(0x02, good.to_bytes(cmd_bytes, "little"))[:-3]
    truncated = frame(message(0x06, struct.pack("<HI", 0x05, 1)),
                      struct.pack("<BH", 0x02, 900) + cut[3:])
    bench = Bench()
    bench.to_send = [
        (truncated, 0),
        (frame(message(0x06, struct.pack("<HI", 0x06, 2))), 1),  # FCS error
        (frame(message(0x06, struct.pack("<HI", 0x07, 3)), ethertype=0x0800), 0),
        (frame(message(0x06, struct.pack("<HI", 0x08, 4)), dst=bytes(6)), 0),
        (bytes(10), 0),  # shorter than a header
        (frame(message(0x07, struct.pack("<H", 0))), 0),
    ]
    bench.run()
    assert bench.cmds == []
    assert bench.csr_writes == [(0x05, 1)]  # only the message before the cut one
    assert bench.stats["frames_malformed"] == 2
    assert bench.stats["frames_bad"] == 1
    assert bench.stats["frames_ignored"] == 2
    assert bench.stats["frames_in"] == 2
    assert [parse(f) for f in bench.frames] == [[(0x08, struct.pack("<HI", 0, 0x1000))]]


@pytest.mark.parametrize("width", [1, 4])
def test_widths(width):
    """The same exchange at other beat widths (power-of-two data_bytes)."""
    config = ToeConfig(connections=8, data_bytes=width)
    text = bytes(range(50, 61))
    bench = Bench(config, cycles=3000)
    bench.to_send = [(frame(message(0x0D, struct.pack("<H", 1) + text),
                            message(0x07, struct.pack("<H", 1))), 0)]
    bench.run()
    assert b"".join(b["data"] for b in beats_of(bench)) == text
    assert beats_of(bench)[-1]["last"] == 1
    assert [parse(f) for f in bench.frames] == [[(0x08, struct.pack("<HI", 1, 0x1001))]]


@pytest.mark.parametrize("width", [1, 4, 8])
def test_tx_data_moves_a_beat_a_cycle(width):
    """A TXD message's data leaves as host_tx beats of ``width`` bytes whatever its
    alignment in the frame (here behind a 5-byte message, so it starts mid-beat), byte
    for byte, ``last`` on each message's end; and it moves at about a beat a cycle, not
    a byte (a 1,400-byte write in at most 1,400 / width + 12 cycles of host_tx beats)."""
    import random

    config = ToeConfig(connections=8, data_bytes=width)
    rng = random.Random(width)
    first, second = rng.randbytes(1400), rng.randbytes(37)
    bench = Bench(config, cycles=2000)
    bench.to_send = [(frame(message(0x07, struct.pack("<H", 1)) + b"",
                            message(0x0D, struct.pack("<H", 5) + first),
                            message(0x0D, struct.pack("<H", 6) + second)), 0)]
    bench.run()
    beats = beats_of(bench)
    by_conn = {c: b"".join(b["data"] for b in beats if b["conn"] == c) for c in (5, 6)}
    assert by_conn == {5: first, 6: second}
    assert all(b["count"] == width for b in beats if not b["last"])
    assert [b["last"] for b in beats].count(1) == 2
    firsts = [cyc for cyc, b in zip(bench.tx_cycles, beats, strict=True) if b["conn"] == 5]
    assert firsts[-1] - firsts[0] <= 1400 // width + 12, firsts[-1] - firsts[0]


@pytest.mark.parametrize("width", [1, 8])
def test_rx_data_moves_a_beat_in_two_cycles(width):
    """Board to host: RX beats of one connection, some short, become RXD messages whose
    bytes, joined across frames of at most 1514 bytes, are the beats' bytes in order,
    ``last`` on the final one; a beat is written in one or two cycles (the buffer word
    at the write position, then the next), so 600 beats take at most 2 cycles each and
    a few cycles a frame, not a cycle a byte."""
    import random

    config = ToeConfig(connections=8, data_bytes=width)
    layout = data_layout(config)
    rng = random.Random(3 + width)
    beats, text = [], b""
    for k in range(600):
        count = width if rng.random() < 0.8 else rng.randint(1, width)
        chunk = rng.randbytes(count)
        text += chunk
        beats.append(layout.const({"conn": 4, "data": int.from_bytes(chunk, "little"),
                                   "count": count, "last": int(k == 599)}).as_bits())
    bench = Bench(config, cycles=6000)
    # The host's address, from a register read (its answer is short).
    bench.to_send = [(frame(message(0x07, struct.pack("<H", 1))), 0)]
    bench.rx_beats = beats
    bench.run()
    runs = [p for f in bench.frames for kind, p in parse(f) if kind == 0x0E]
    assert runs, "no RXD message"
    frames = sum(any(kind == 0x0E for kind, _ in parse(f)) for f in bench.frames)
    assert all(struct.unpack("<HB", r[:3]) == (4, 0) for r in runs[:-1])
    assert struct.unpack("<HB", runs[-1][:3]) == (4, 1)
    assert b"".join(r[3:] for r in runs) == text
    assert all(len(f) <= 1514 for f in bench.frames)
    assert bench.feed_cycles[1] <= 2 * len(beats) + 40 * frames, bench.feed_cycles
