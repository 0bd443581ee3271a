"""Unit tests of the TCP engine's data movers against plain-Python models.

- hdl/tcp/rx_copy.py (RxCopier): RFC 9293 s3.10.7.4 "process the segment text": the
  accepted bytes of a segment land in the RX ring at the position their sequence number
  gives, nothing else in the ring changes.
- hdl/tcp/rx_delivery.py (RxDelivery): RFC 9293 s3.10.3 RECEIVE: ring bytes to the host
  in order, in ``data_layout`` beats, then the ``done`` report that frees the ring.
- hdl/tcp/tx_writer.py (TxWriter): RFC 9293 s3.10.2 SEND: host bytes queued in the TX
  ring up to the send limit (the host's credit, hdl/host_if.py), refused after
  SHUTDOWN/CLOSE ("connection closing") and for ids that are not open.

Each test wires the component to a real :class:`LaneRing` (and the copier to a memory of
frame words with the frame buffer's one-cycle read) and compares the whole ring with a
``bytearray`` model.  Ring byte of sequence number ``s`` of connection ``c``:
``c * ring_bytes + s % ring_bytes``.
"""

import random
from collections import deque

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory
from amaranth_helpers import run

from toe.hdl.config import ToeConfig
from toe.hdl.tcp.lane_ring import LaneRing
from toe.hdl.tcp.rx_copy import RxCopier
from toe.hdl.tcp.rx_delivery import RxDelivery
from toe.hdl.tcp.tx_writer import TxWriter

WIDTHS = [1, 8, 64]
RING = 256
CONNECTIONS = 4
MASK32 = (1 << 32) - 1


def make_config(width: int) -> ToeConfig:
    return ToeConfig(data_bytes=width, connections=CONNECTIONS, tx_ring_bytes=RING,
                     rx_ring_bytes=RING)


def ring_address(conn: int, seq: int) -> int:
    return conn * RING + seq % RING


def fill_ring(ctx, ring: LaneRing, contents: bytes):
    w = len(ring.lanes)
    for addr, byte in enumerate(contents):
        ctx.set(ring.lanes[addr % w][addr // w], byte)


def read_ring(ctx, ring: LaneRing) -> bytes:
    w = len(ring.lanes)
    return bytes(ctx.get(ring.lanes[addr % w][addr // w]) for addr in range(ring.depth))


def lanes(value: int, count: int) -> bytes:
    """Lanes 0..count-1 of a beat."""
    return (value & ((1 << (8 * count)) - 1)).to_bytes(count, "little")


# --- RxCopier ------------------------------------------------------------------------


class CopierHarness(Elaboratable):
    """RxCopier between a memory of frame words (rd_data one cycle after rd_en, held while
    rd_en is low, like FrameBuffer) and the RX LaneRing."""

    def __init__(self, config: ToeConfig, words: list[int]):
        w = config.data_bytes
        self.ptr_bits = len(words).bit_length()  # log2(depth) + 1, as FrameBuffer
        self.dut = RxCopier(config, self.ptr_bits)
        self.ring = LaneRing(w, CONNECTIONS * RING, RING)
        self.buffer = memory.MemoryData(shape=8 * w, depth=len(words), init=words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ring = ring = self.ring
        m.submodules.buffer = buffer = memory.Memory(data=self.buffer)
        rd = buffer.read_port()
        m.d.comb += [
            rd.addr.eq(dut.rd_addr[: self.ptr_bits - 1]),
            rd.en.eq(dut.rd_en),
            dut.rd_data.eq(rd.data),
        ]
        ring.written_by(m, dut)
        return m


def copy_requests(rng, width, depth_words, count):
    """Random copies: lengths 0, 1, W, random; ring positions crossing the part end and
    the 2**32 wrap; frames anywhere in the buffer, also across its end."""
    requests = []
    max_frame = min(depth_words * width, 1514)
    for _ in range(count):
        frame_len = rng.randrange(1, max_frame + 1)
        offset = rng.randrange(frame_len + 1)
        room = min(frame_len - offset, RING)
        kind = rng.random()
        if kind < 0.1:
            length = 0
        elif kind < 0.2:
            length = min(1, room)
        elif kind < 0.3:
            length = min(width, room)
        else:
            length = rng.randrange(room + 1)
        ring_pos = rng.getrandbits(32)
        if rng.random() < 0.3 and length:  # cross the end of the ring part
            ring_pos = (ring_pos - ring_pos % RING + RING - rng.randrange(1, length + 1))
        if rng.random() < 0.1:  # ring_pos - offset wraps below 0
            ring_pos = rng.randrange(offset + 1)
        requests.append({
            "conn": rng.randrange(CONNECTIONS),
            "buf_start": rng.randrange(2 * depth_words),
            "offset": offset,
            "length": length,
            "ring_pos": ring_pos & MASK32,
        })
    return requests


@pytest.mark.parametrize("width", WIDTHS)
def test_copier_matches_model(width):
    """RFC 9293 s3.10.7.4: frame bytes [offset, offset + length) go to the ring from
    ring_pos on, wrapping inside the connection's part; every other ring byte stays.
    Only the frame words holding copied bytes are read, one per cycle, and the request is
    taken in the cycle of the last write: n words take n + 1 cycles, length 0 one cycle."""
    rng = random.Random(100 + width)
    config = make_config(width)
    depth_words = max(64, 2048 // width)
    words = [rng.getrandbits(8 * width) for _ in range(depth_words)]
    harness = CopierHarness(config, words)
    dut = harness.dut
    model = bytearray(rng.randbytes(CONNECTIONS * RING))
    requests = copy_requests(rng, width, depth_words, {1: 60, 8: 150, 64: 150}[width])
    ptr_mask = (1 << harness.ptr_bits) - 1

    def frame_byte(buf_start, b):
        word = words[(buf_start + b // width) % depth_words]
        return word >> (8 * (b % width)) & 0xFF

    async def bench(ctx):
        fill_ring(ctx, harness.ring, model)
        for req in requests:
            for _ in range(rng.choice([0, 0, 1, 3])):
                await ctx.tick()
            ctx.set(dut.copy.valid, 1)
            ctx.set(dut.copy.p, req)
            reads, cycles = [], 0
            while True:
                _, _, ready, rd_en, rd_addr = await ctx.tick().sample(
                    dut.copy.ready, dut.rd_en, dut.rd_addr)
                cycles += 1
                if rd_en:
                    reads.append(rd_addr)
                if ready:
                    break
                assert cycles < 1000, req
            ctx.set(dut.copy.valid, 0)

            offset, length = req["offset"], req["length"]
            if length:
                first, last = offset // width, (offset + length - 1) // width
            else:
                first, last = 0, -1
            assert reads == [(req["buf_start"] + k) & ptr_mask
                             for k in range(first, last + 1)], req
            assert cycles == (last - first + 2 if length else 1), req
            for j in range(length):
                model[ring_address(req["conn"], req["ring_pos"] + j)] = frame_byte(
                    req["buf_start"], offset + j)
            part = req["conn"] * RING
            assert read_ring(ctx, harness.ring)[part : part + RING] == model[part : part + RING]
        assert read_ring(ctx, harness.ring) == model

    run(harness, bench)


# --- RxDelivery ----------------------------------------------------------------------


class DeliveryHarness(Elaboratable):
    def __init__(self, config: ToeConfig):
        self.dut = RxDelivery(config)
        self.ring = LaneRing(config.data_bytes, CONNECTIONS * RING, RING)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ring = ring = self.ring
        ring.read_by(m, dut)
        return m


def delivery_requests(rng, width, count):
    requests = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.15:
            length = rng.randrange(1, 3)
        elif kind < 0.3:
            length = width * rng.randrange(1, 4)
        else:
            length = rng.randrange(1, min(RING, 24 * width) + 1)
        pos = rng.getrandbits(32)
        if rng.random() < 0.3:  # cross the end of the ring part
            pos = pos - pos % RING + RING - rng.randrange(1, length + 1)
        if rng.random() < 0.1:  # end wraps at 2**32
            pos = (1 << 32) - rng.randrange(1, length + 1)
        requests.append({"conn": rng.randrange(CONNECTIONS), "pos": pos & MASK32,
                         "length": length})
    return requests


def drive_delivery(harness, requests, rng, ring, o_ready_prob, done_ready_prob,
                   gap_prob=0.2):
    """Runs ``requests`` and returns the log of transfers ``(cycle, kind, ...)``."""
    dut = harness.dut
    log = []

    async def bench(ctx):
        fill_ring(ctx, harness.ring, ring)
        pending = deque(requests)
        offered = None
        done = 0
        cycle = 0
        while done < len(requests):
            if offered is None and pending and rng.random() >= gap_prob:
                offered = pending.popleft()
            ctx.set(dut.request.valid, offered is not None)
            if offered is not None:
                ctx.set(dut.request.p, offered)
            ctx.set(dut.o.ready, rng.random() < o_ready_prob)
            ctx.set(dut.done.ready, rng.random() < done_ready_prob)
            (_, _, q_ready, o_valid, o_ready, o_p, d_valid, d_ready,
             d_p) = await ctx.tick().sample(
                dut.request.ready, dut.o.valid, dut.o.ready, dut.o.p, dut.done.valid,
                dut.done.ready, dut.done.p)
            if offered is not None and q_ready:
                log.append((cycle, "request", offered))
                offered = None
            if o_valid and o_ready:
                log.append((cycle, "beat", o_p.conn, lanes(o_p.data, o_p.count),
                            o_p.count, o_p.last))
            if d_valid and d_ready:
                log.append((cycle, "done", d_p.conn, d_p.end))
                done += 1
            cycle += 1
            assert cycle < 200_000

    run(harness, bench)
    return log


def check_delivery_log(log, requests, ring, width):
    """Per request, in order: request taken, its beats, then its done message."""
    entries = deque(log)
    for req in requests:
        _, kind, taken = entries.popleft()
        assert kind == "request" and taken == req
        want = bytes(ring[ring_address(req["conn"], req["pos"] + j)]
                     for j in range(req["length"]))
        got = b""
        while True:
            _, kind, conn, data, count, last = entries.popleft()
            assert kind == "beat" and conn == req["conn"], req
            assert count == width or last, req  # only the final beat is short
            got += data
            if last:
                break
        assert got == want, req
        _, kind, conn, end = entries.popleft()
        assert (kind, conn, end) == ("done", req["conn"], (req["pos"] + req["length"]) & MASK32)
    assert not entries


@pytest.mark.parametrize("width", WIDTHS)
def test_delivery_matches_model_under_backpressure(width):
    """RFC 9293 s3.10.3: ``length`` ring bytes from ``pos`` reach the host in order, in
    beats of W bytes with only the last one short and marked ``last``, with the ring
    wrapping at the part end; then one ``done`` {conn, pos + length mod 2**32}.  Random
    o.ready and done.ready patterns and gaps between requests."""
    rng = random.Random(200 + width)
    config = make_config(width)
    ring = rng.randbytes(CONNECTIONS * RING)
    requests = delivery_requests(rng, width, {1: 40, 8: 150, 64: 150}[width])
    log = drive_delivery(DeliveryHarness(config), requests, rng, ring, 0.6, 0.5)
    check_delivery_log(log, requests, ring, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_delivery_one_beat_per_cycle(width):
    """With o.ready and done.ready always high and requests waiting, a request of n beats
    takes n + 2 cycles: its beats leave on consecutive cycles."""
    rng = random.Random(300 + width)
    config = make_config(width)
    ring = rng.randbytes(CONNECTIONS * RING)
    requests = delivery_requests(rng, width, 30)
    log = drive_delivery(DeliveryHarness(config), requests, rng, ring, 1.0, 1.0,
                         gap_prob=0.0)
    check_delivery_log(log, requests, ring, width)
    starts = [cycle for cycle, kind, *_ in log if kind == "request"]
    for req, start, following in zip(requests, starts, starts[1:] + [None], strict=True):
        beats = -(-req["length"] // width)
        beat_cycles = [c for c, kind, *_ in log if kind == "beat" and start < c <= start + beats]
        assert beat_cycles == list(range(start + 1, start + beats + 1))
        if following is not None:
            assert following == start + beats + 2


# --- TxWriter ------------------------------------------------------------------------


class WriterHarness(Elaboratable):
    def __init__(self, config: ToeConfig):
        self.dut = TxWriter(config)
        self.ring = LaneRing(config.data_bytes, CONNECTIONS * RING, RING)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ring = ring = self.ring
        ring.written_by(m, dut)
        return m


class WriterModel:
    """The rules of TxWriter's docstring, one limit write or beat at a time."""

    def __init__(self, ring: bytes):
        self.limits = [{"limit": 0, "gen": 0, "open": 0, "shut": 0}] * CONNECTIONS
        self.positions = [(0, 0, False)] * CONNECTIONS
        self.ring = bytearray(ring)
        self.flags = {"overflow": 0, "shut": 0, "unknown": 0}

    def limit_write(self, conn, entry):
        old = self.limits[conn]
        if entry["open"] and (not old["open"] or old["gen"] != entry["gen"]):
            self.positions[conn] = ((entry["limit"] - RING) & MASK32, entry["gen"], False)
        self.limits[conn] = dict(entry)

    def beat(self, conn, payload: bytes, last: bool):
        lim = self.limits[conn]
        pos, gen, broken = self.positions[conn]
        broken = broken and gen == lim["gen"]
        start = pos if gen == lim["gen"] else (lim["limit"] - RING) & MASK32
        end = start
        if not lim["open"]:
            self.flags["unknown"] = 1
        elif lim["shut"]:
            self.flags["shut"] = 1
        else:
            # Once a byte was discarded, nothing more of the stream is stored.
            allowed = 0 if broken else min(len(payload), (lim["limit"] - start) & MASK32)
            for j in range(allowed):
                self.ring[ring_address(conn, start + j)] = payload[j]
            end = (start + allowed) & MASK32
            if allowed < len(payload):
                self.flags["overflow"] = 1
                broken = True
            self.positions[conn] = (end, lim["gen"], broken)
        if not last:
            return None
        message = {"conn": conn, "end": end, **self.flags}
        self.flags = {"overflow": 0, "shut": 0, "unknown": 0}
        return message


class Peer:
    """The engine's side of one connection id: acks move the limit, new connections
    change ``gen``, SHUTDOWN sets ``shut``, release clears ``open``."""

    def __init__(self, rng):
        self.rng = rng
        self.gen = 0
        self.entry = {"limit": 0, "gen": 0, "open": 0, "shut": 0}
        self.una = 0

    def open(self):
        self.gen ^= 1
        self.una = (self.rng.getrandbits(32) if self.rng.random() < 0.8
                    else (1 << 32) - self.rng.randrange(1, 3 * RING)) & MASK32
        self.entry = {"limit": (self.una + RING) & MASK32, "gen": self.gen, "open": 1,
                      "shut": 0}

    def ack(self, written_to):
        """Acknowledge up to some byte the host has written (``written_to``)."""
        outstanding = (written_to - self.una) & MASK32
        if outstanding <= RING:
            self.una = (self.una + self.rng.randrange(outstanding + 1)) & MASK32
        self.entry = {**self.entry, "limit": (self.una + RING) & MASK32}


def writer_scenario(rng, width, count):
    """A lazy stream of (conn, payload, last) beats: writes of 1..max(min(4W, 128), 24)
    bytes (a few larger than the ring) in beats of 1..W bytes, to random ids (so writes
    of different ids interleave)."""
    for _ in range(count):
        conn = rng.randrange(CONNECTIONS)
        size = rng.randrange(1, max(min(4 * width, 128), 24) + 1)
        if rng.random() < 0.03:
            size = RING + rng.randrange(1, 100)
        payload = rng.randbytes(size)
        at = 0
        while at < size:
            n = min(size - at, width if rng.random() < 0.7 else rng.randrange(1, width + 1))
            yield conn, payload[at : at + n], at + n == size
            at += n


def drive_writer(harness, model, rng, writes, valid_prob, written_ready_prob,
                 limit_prob, peers=None):
    """Drives beats, limit writes (at least two cycles apart) and ``written.ready``; the
    model takes, in each cycle, the limit write first, then the beat transferred.
    Checks the ring at the end; returns (expected messages, received messages)."""
    dut = harness.dut
    expected, received = [], []

    async def bench(ctx):
        fill_ring(ctx, harness.ring, model.ring)
        beats = iter(writes)
        offered = None
        exhausted = False
        cycle = 0
        last_limit = -10
        while not exhausted or offered is not None or len(received) < len(expected):
            if offered is None and not exhausted and rng.random() < valid_prob:
                offered = next(beats, None)
                exhausted = offered is None
            ctx.set(dut.i.valid, offered is not None)
            if offered is not None:
                conn, payload, last = offered
                ctx.set(dut.i.p, {"conn": conn, "data": int.from_bytes(payload, "little"),
                                  "count": len(payload), "last": last})
            limit = None
            if peers and cycle - last_limit >= 2 and rng.random() < limit_prob:
                conn = rng.randrange(CONNECTIONS)
                peer = peers[conn]
                action = rng.random()
                idle = not peer.entry["open"] or peer.entry["shut"]
                if action < 0.04 or idle and action < 0.3:
                    peer.open()
                elif action < 0.07:
                    peer.entry = {**peer.entry, "shut": 1}
                elif action < 0.09:
                    peer.entry = {**peer.entry, "open": 0}
                elif action < 0.4:
                    peer.ack(model.positions[conn][0])
                # else: the same entry again
                limit = (conn, dict(peer.entry))
                last_limit = cycle
            ctx.set(dut.limit_we, limit is not None)
            if limit is not None:
                ctx.set(dut.limit_addr, limit[0])
                ctx.set(dut.limit_data, limit[1])
            ctx.set(dut.written.ready, rng.random() < written_ready_prob)
            _, _, i_ready, w_valid, w_ready, w_p = await ctx.tick().sample(
                dut.i.ready, dut.written.valid, dut.written.ready, dut.written.p)
            if limit is not None:
                model.limit_write(*limit)
            if offered is not None and i_ready:
                message = model.beat(*offered)
                if message is not None:
                    expected.append(message)
                offered = None
            if w_valid and w_ready:
                received.append({"conn": w_p.conn, "end": w_p.end, "overflow": w_p.overflow,
                                 "shut": w_p.shut, "unknown": w_p.unknown})
            cycle += 1
            assert cycle < 200_000
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.limit_we, 0)
        await ctx.tick().repeat(3)
        final_ring.append(read_ring(ctx, harness.ring))

    final_ring = []
    run(harness, bench)
    assert received == expected
    assert final_ring == [model.ring]
    return expected, received


@pytest.mark.parametrize("width", WIDTHS)
def test_writer_matches_model(width):
    """RFC 9293 s3.10.2 SEND, with the host's send credit (hdl/host_if.py): beats of
    several ids, writes interleaved; the engine moves limits (acks), opens new
    connections (``gen`` changes: the first byte goes to limit - ring size), shuts and
    closes ids.  Bytes beyond the limit are dropped (``overflow``), after SHUTDOWN
    dropped (``shut``), for ids not open dropped (``unknown``).  Ring and ``written``
    messages match the model; random valid and ``written.ready`` patterns."""
    rng = random.Random(400 + width)
    config = make_config(width)
    model = WriterModel(rng.randbytes(CONNECTIONS * RING))
    peers = [Peer(rng) for _ in range(CONNECTIONS)]
    writes = writer_scenario(rng, width, {1: 250, 8: 300, 64: 400}[width])
    expected, received = drive_writer(WriterHarness(config), model, rng, writes,
                                         0.8, 0.6, {1: 0.1, 8: 0.15, 64: 0.3}[width], peers)
    assert received == expected
    flags = {key for message in expected for key in ("overflow", "shut", "unknown")
             if message[key]}
    assert flags == {"overflow", "shut", "unknown"}  # the scenario reached every case
    assert sum(not any(m[k] for k in ("overflow", "shut", "unknown")) for m in expected) > 20


@pytest.mark.parametrize("width", WIDTHS)
def test_writer_one_beat_per_cycle(width):
    """Throughput: with valid and ``written.ready`` always high, beats of one connection
    are taken one per cycle, within a write and from one write to the next, while the
    engine moves the limit (acks everything stored, a limit write in every cycle);
    the ring and the ``written`` messages match the model, no byte is refused."""
    rng = random.Random(500 + width)
    config = make_config(width)
    model = WriterModel(rng.randbytes(CONNECTIONS * RING))
    harness = WriterHarness(config)
    dut = harness.dut
    conn = 2
    entry = {"limit": 0x1234_5678 + RING, "gen": 1, "open": 1, "shut": 0}
    beats = []
    for _ in range(60):  # writes of 1..4 beats
        size = rng.randrange(1, 5)
        beats += [(rng.randbytes(rng.randrange(1, width + 1)), k == size - 1)
                  for k in range(size)]
    expected, received = [], []

    def log(w_valid, w_p):
        if w_valid:
            received.append({"conn": w_p.conn, "end": w_p.end, "overflow": w_p.overflow,
                             "shut": w_p.shut, "unknown": w_p.unknown})

    async def bench(ctx):
        fill_ring(ctx, harness.ring, model.ring)
        ctx.set(dut.limit_we, 1)
        ctx.set(dut.limit_addr, conn)
        ctx.set(dut.limit_data, entry)
        model.limit_write(conn, entry)
        await ctx.tick()
        ctx.set(dut.written.ready, 1)
        for payload, last in beats:
            # Ack everything stored so far: limit = position + ring size.
            ack = {**entry, "limit": (model.positions[conn][0] + RING) & MASK32}
            ctx.set(dut.limit_data, ack)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, {"conn": conn, "data": int.from_bytes(payload, "little"),
                              "count": len(payload), "last": last})
            _, _, i_ready, w_valid, w_p = await ctx.tick().sample(
                dut.i.ready, dut.written.valid, dut.written.p)
            assert i_ready, "a beat waited"
            model.limit_write(conn, ack)
            message = model.beat(conn, payload, last)
            if message:
                expected.append(message)
            log(w_valid, w_p)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.limit_we, 0)
        for _ in range(3):
            _, _, w_valid, w_p = await ctx.tick().sample(dut.written.valid, dut.written.p)
            log(w_valid, w_p)
        assert read_ring(ctx, harness.ring) == model.ring

    run(harness, bench)
    assert received == expected
    assert len(expected) == 60
    assert not any(m["overflow"] or m["shut"] or m["unknown"] for m in expected)


@pytest.mark.parametrize("width", [1, 8])
def test_writer_stale_gen_after_silent_connection(width):
    """A connection that writes nothing must not leave the next connection of the same id
    (same one-bit ``gen`` as two connections ago) at the old position: the first byte of
    a new connection goes to limit - ring size (its SND.UNA, ISS + 1)."""
    rng = random.Random(600 + width)
    config = make_config(width)
    model = WriterModel(bytes(CONNECTIONS * RING))
    harness = WriterHarness(config)
    dut = harness.dut
    entries = [
        {"limit": 1000 + RING, "gen": 1, "open": 1, "shut": 0},  # connection A
        None,  # A writes 5 bytes
        {"limit": 5000 + RING, "gen": 0, "open": 1, "shut": 0},  # B, writes nothing
        {"limit": 9000 + RING, "gen": 1, "open": 1, "shut": 0},  # C, gen of A again
        None,  # C writes 5 bytes: at 9000, not at 1005
    ]
    got = []

    async def bench(ctx):
        for entry in entries:
            if entry is not None:
                ctx.set(dut.limit_we, 1)
                ctx.set(dut.limit_addr, 1)
                ctx.set(dut.limit_data, entry)
                model.limit_write(1, entry)
                await ctx.tick()
                ctx.set(dut.limit_we, 0)
                await ctx.tick().repeat(2)
                continue
            payload = rng.randbytes(min(width, 5))
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, {"conn": 1, "data": int.from_bytes(payload, "little"),
                              "count": len(payload), "last": 1})
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            model.beat(1, payload, True)
            ctx.set(dut.written.ready, 1)
            (p,) = await ctx.tick().sample(dut.written.p).until(dut.written.valid)
            ctx.set(dut.written.ready, 0)
            got.append(p.end)
        assert read_ring(ctx, harness.ring) == model.ring

    run(harness, bench)
    n = min(width, 5)
    assert got == [1000 + n, 9000 + n]


@pytest.mark.parametrize("width", [1, 8])
def test_writer_limit_write_in_the_cycle_of_a_beat(width):
    """A limit write wins from its own cycle on: a beat transferred in the same cycle
    sees it (a new connection: its first byte at limit - ring size, even with a stale
    ``gen`` match; SHUTDOWN: discarded as ``shut``, RFC 9293 s3.10.2), a beat transferred
    the cycle before does not."""
    config = make_config(width)
    model = WriterModel(bytes(CONNECTIONS * RING))
    harness = WriterHarness(config)
    dut = harness.dut
    a = {"limit": 1000 + RING, "gen": 1, "open": 1, "shut": 0}
    b = {"limit": 5000 + RING, "gen": 0, "open": 1, "shut": 0}
    c = {"limit": 9000 + RING, "gen": 1, "open": 1, "shut": 0}
    c_shut = {**c, "shut": 1}
    schedule = [  # per cycle: (limit entry for id 1, beat (payload, last)) or None
        (a, None), (None, None), (None, (b"\x11", 0)), (None, (b"\x22", 1)),
        (b, None), (None, None),  # connection B writes nothing
        (c, (b"\x33", 1)),  # same cycle: C's first byte, at 9000
        (None, None),  # (the renewal cycle)
        (None, (b"\x44", 1)),
        (None, (b"\x55", 1)), (c_shut, None),  # the beat before SHUTDOWN is stored
        (None, None), (c_shut, (b"\x66", 1)),  # the beat in its cycle is not
        (None, None), (None, (b"\x77", 1)),
    ]
    got = []

    async def bench(ctx):
        ctx.set(dut.written.ready, 1)
        for limit, beat in schedule:
            ctx.set(dut.limit_we, limit is not None)
            if limit is not None:
                ctx.set(dut.limit_addr, 1)
                ctx.set(dut.limit_data, limit)
            ctx.set(dut.i.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.i.p, {"conn": 1, "data": beat[0][0], "count": 1, "last": beat[1]})
            _, _, i_ready, w_valid, w_p = await ctx.tick().sample(
                dut.i.ready, dut.written.valid, dut.written.p)
            if limit is not None:
                model.limit_write(1, limit)
            if beat is not None:
                assert i_ready
                model.beat(1, *beat)
            if w_valid:
                got.append((w_p.end, w_p.shut))
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.limit_we, 0)
        for _ in range(3):
            _, _, w_valid, w_p = await ctx.tick().sample(dut.written.valid, dut.written.p)
            if w_valid:
                got.append((w_p.end, w_p.shut))
        assert read_ring(ctx, harness.ring) == model.ring

    run(harness, bench)
    assert got == [(1002, 0), (9001, 0), (9002, 0), (9003, 0), (9003, 1), (9003, 1)]
    assert model.ring[ring_address(1, 9000)] == 0x33


@pytest.mark.parametrize("width", [1, 8])
def test_movers_convert_to_verilog(width):
    """Each component elaborates and converts to Verilog (ports from the signatures)."""
    config = make_config(width)
    for component, name, ports in [
        (RxCopier(config, 11), "rx_copy", ("copy__valid", "copy__ready", "rd_addr", "wr_en")),
        (RxDelivery(config), "rx_delivery", ("request__valid", "o__valid", "done__ready")),
        (TxWriter(config), "tx_writer", ("i__ready", "limit_we", "written__valid", "wr_en")),
    ]:
        text = verilog.convert(component, name=name)
        assert f"module {name}" in text
        for port in ports:
            assert port in text, (name, port)
