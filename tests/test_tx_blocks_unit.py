"""Unit tests of the TX building blocks: FrameSerializer and FrameArbiter.

Both are checked cycle by cycle from one testbench that drives every input and samples the
handshakes at the clock edge, against the stream rules of hdl/stream.py (AXI4-Stream,
ARM IHI 0051: a transfer happens on an edge with ``valid & ready``; once ``valid`` is
asserted it stays asserted, with the payload unchanged, until the transfer; ``keep`` is
contiguous from lane 0, only the last beat of a frame may be partial, a beat is never
empty).  Plain-Python models give the expected beats and the round-robin order.
"""

import random

import pytest
from amaranth_helpers import beat_bytes, run, split_beats

from toe.hdl.tx.arbiter import FrameArbiter
from toe.hdl.tx.serializer import FrameSerializer

# -- FrameSerializer ------------------------------------------------------------------------


def reference_serialize(frame: bytes, width: int) -> list[tuple[bytes, int]]:
    """Beats of ``frame`` as ``(bytes, last)``: byte ``k * W + i`` in lane ``i`` of beat
    ``k``; the last beat keeps ``len - k * W`` lanes (hdl/tx/serializer.py docstring)."""
    return [(frame[s : s + width], int(s + width >= len(frame)))
            for s in range(0, len(frame), width)]


@pytest.mark.parametrize(("width", "max_bytes"), [(1, 60), (3, 60), (8, 60), (64, 60),
                                                  (64, 150), (8, 7)])
def test_serializer(width, max_bytes):
    """hdl/stream.py beat rules under random output backpressure and random gaps between
    frames, for every length 1..max_bytes: the beats reassemble to exactly the frame, keep
    is contiguous, ``last`` is set on the final beat only, the output holds steady while
    stalled, and the input frame is taken (``frame.ready``) exactly once, on the edge that
    transfers the last beat."""
    rng = random.Random(width * 1000 + max_bytes)
    lengths = list(range(1, max_bytes + 1)) + [rng.randint(1, max_bytes) for _ in range(20)]
    rng.shuffle(lengths)
    frames = [bytes(rng.getrandbits(8) for _ in range(n)) for n in lengths]
    dut = FrameSerializer(width, max_bytes)
    delivered = []

    async def bench(ctx):
        queue = list(frames)
        beats = []  # beats of the frame in flight
        expected = reference_serialize(queue[0], width)
        gap = 0
        stalled = None  # (data, keep, last) offered but not taken on the previous edge
        cycles = 0
        ready_bias = rng.choice([0.3, 0.7, 1.0])
        while queue:
            cycles += 1
            assert cycles < 50 * len(frames) * (max_bytes // width + 2), "stuck"
            offering = gap == 0
            ctx.set(dut.frame.valid, int(offering))
            frame = queue[0]
            ctx.set(dut.frame.p, {"bytes": list(frame + bytes(max_bytes - len(frame))),
                                  "length": len(frame)})
            if rng.random() < 0.02:
                ready_bias = rng.choice([0.1, 0.5, 0.9, 1.0])
            ctx.set(dut.o.ready, int(rng.random() < ready_bias))
            _, _, o_valid, o_ready, o_p, f_ready = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.p, dut.frame.ready)
            assert o_valid == offering, "o.valid must follow frame.valid"
            if stalled is not None:
                assert o_valid and (o_p.data, o_p.keep, o_p.last) == stalled, (
                    "output changed while stalled")
            stalled = None
            if not offering:
                gap -= 1
                assert not f_ready or not o_valid
                continue
            if not o_ready:
                stalled = (o_p.data, o_p.keep, o_p.last)
                assert not f_ready, "frame taken without a transfer"
                continue
            chunk = beat_bytes(o_p.data, o_p.keep, width)
            want_chunk, want_last = expected[len(beats)]
            assert (chunk, o_p.last) == (want_chunk, want_last), (
                f"len {len(frame)} beat {len(beats)}")
            beats.append(chunk)
            assert f_ready == o_p.last, "frame.ready must pulse with the last beat only"
            if o_p.last:
                delivered.append(b"".join(beats))
                beats = []
                queue.pop(0)
                if queue:
                    expected = reference_serialize(queue[0], width)
                gap = rng.choice([0, 0, 0, 1, 3])
        # nothing comes out without a frame
        ctx.set(dut.frame.valid, 0)
        for _ in range(3):
            _, _, o_valid = await ctx.tick().sample(dut.o.valid)
            assert not o_valid

    run(dut, bench)
    assert delivered == frames


# -- FrameArbiter ----------------------------------------------------------------------------

N_SOURCES = 3
WIDTH = 8


class Source:
    """A beat source with random valid gaps that follows the stream rules."""

    def __init__(self, rng, frames, gap_prob):
        self.rng = rng
        self.frames = list(frames)
        self.beats = [b for f in frames for b in split_beats(f, WIDTH)]
        self.gap_prob = gap_prob
        self.valid = False

    def drive(self):
        if not self.valid and self.beats:
            self.valid = self.rng.random() >= self.gap_prob
        return self.valid, (self.beats[0] if self.valid else (0, 0, 0))

    def transferred(self):
        self.beats.pop(0)
        self.valid = False


def arbiter_bench(dut, sources, rng, ready_prob, log):
    """Drive ``sources`` and a random-ready sink; check every edge; append delivered frames
    to ``log`` as ``(source, bytes)``."""

    async def bench(ctx):
        ins = [getattr(dut, f"i{k}") for k in range(N_SOURCES)]
        owner = None  # source of the frame in flight on the output
        chunks = []
        stalled = False
        waiting_since = [None] * N_SOURCES  # frames delivered when source k began waiting
        sent_count = [0] * N_SOURCES
        frames_out = [0] * N_SOURCES
        idle_cycles = 0
        while any(s.beats for s in sources):
            offers = []
            for src, port in zip(sources, ins, strict=True):
                valid, (data, keep, last) = src.drive()
                ctx.set(port.valid, int(valid))
                ctx.set(port.p, {"data": data, "keep": keep, "last": last})
                offers.append(valid)
            ctx.set(dut.o.ready, int(rng.random() < ready_prob))
            sampled = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.p, dut.sent,
                *[port.ready for port in ins])
            o_valid, o_ready, o_p, sent = sampled[2:6]
            src_ready = sampled[6:]
            assert o_valid or not stalled, "o.valid dropped before the transfer"
            stalled = o_valid and not o_ready
            taken = [k for k in range(N_SOURCES) if offers[k] and src_ready[k]]
            for k in range(N_SOURCES):
                if k != owner and offers[k] and waiting_since[k] is None:
                    waiting_since[k] = sum(frames_out)
            if not (o_valid and o_ready):
                assert taken == [], "a source beat was taken without an output transfer"
                assert sent == 0
                idle_cycles = idle_cycles + 1 if not o_valid else 0
                assert idle_cycles < 100 or not any(offers), "arbiter stuck"
                continue
            idle_cycles = 0
            assert len(taken) == 1, f"output transfer took beats from {taken}"
            k = taken[0]
            beat = sources[k].beats[0]
            assert (o_p.data, o_p.keep, o_p.last) == beat, "payload not passed through"
            if owner is None:
                owner = k
                # RR fairness: while k waited, every other source sent at most one frame
                assert sum(frames_out) - waiting_since[k] <= N_SOURCES - 1, "starvation"
            assert k == owner, f"frame from {owner} interleaved with a beat from {k}"
            chunks.append(beat_bytes(o_p.data, o_p.keep, WIDTH))
            sources[k].transferred()
            if o_p.last:
                assert sent == 1 << k, f"sent={sent:#b} after a frame from {k}"
                sent_count[k] += 1
                frames_out[k] += 1
                log.append((k, b"".join(chunks)))
                chunks, owner = [], None
                waiting_since[k] = None
            else:
                assert sent == 0
        assert sent_count == [len(s.frames) for s in sources]

    return bench


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arbiter_random(seed):
    """Stream rules and fairness of the round-robin merge under random valid gaps (within
    and between frames) and random backpressure: beats pass through unchanged, a grant
    holds until ``last`` (no interleaving), every frame of every source is delivered intact,
    once and in order, ``sent`` pulses once per frame for its source, and no waiting source
    sees another send more than one frame before it (round robin, no starvation)."""
    rng = random.Random(seed)
    frames = [[bytes(rng.getrandbits(8) for _ in range(rng.choice(
        [1, 2, 7, 8, 9, 15, 16, 17, 42, 54, 60, rng.randint(1, 100)])))
        for _ in range(rng.randint(25, 40))] for _ in range(N_SOURCES)]
    gaps = [rng.choice([0.0, 0.3, 0.7]) for _ in range(N_SOURCES)]
    sources = [Source(rng, f, g) for f, g in zip(frames, gaps, strict=True)]
    dut = FrameArbiter(WIDTH, N_SOURCES)
    log = []
    run(dut, arbiter_bench(dut, sources, rng, rng.choice([0.5, 0.8, 1.0]), log))
    for k in range(N_SOURCES):
        assert [f for s, f in log if s == k] == frames[k], f"source {k} frames"


@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_arbiter_rotates_when_all_busy(ready_prob):
    """Round robin: with every source always holding a frame, grants rotate 0, 1, 2, 0, ...
    (after a frame from ``i`` the sources ``i+1, i+2, ...`` are looked at first)."""
    rng = random.Random(7)
    frames = [[bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 30))) for _ in range(12)]
              for _ in range(N_SOURCES)]
    sources = [Source(rng, f, 0.0) for f in frames]
    dut = FrameArbiter(WIDTH, N_SOURCES)
    log = []
    run(dut, arbiter_bench(dut, sources, rng, ready_prob, log))
    assert [s for s, _ in log] == [0, 1, 2] * 12


def test_arbiter_rotation_skips_idle_sources():
    """Round robin order with one source idle: after source 0 the next busy source is 2 when
    1 has nothing, and 0 again after 2."""
    rng = random.Random(8)
    frames = [[bytes([k, i]) * 5 for i in range(6)] if k != 1 else [] for k in range(3)]
    sources = [Source(rng, f, 0.0) for f in frames]
    dut = FrameArbiter(WIDTH, N_SOURCES)
    log = []
    run(dut, arbiter_bench(dut, sources, rng, 1.0, log))
    assert [s for s, _ in log] == [0, 2] * 6


def test_arbiter_output_stable_while_stalled():
    """AXI4-Stream (ARM IHI 0051 s2.2.1; hdl/stream.py, sim/axis.py checker): once the
    output offers a beat (``o.valid`` and not ``o.ready``), it keeps offering the same
    payload until it is taken.  Source 1 offers a frame while the sink stalls; then source 0
    (earlier in the round-robin order from reset) also offers one.  The output must stay on
    source 1's beat until it is accepted."""
    dut = FrameArbiter(WIDTH, N_SOURCES)

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i1.valid, 1)
        ctx.set(dut.i1.p, {"data": 0x1111, "keep": 0xFF, "last": 1})
        _, _, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.p.data)
        assert valid and data == 0x1111
        ctx.set(dut.i0.valid, 1)
        ctx.set(dut.i0.p, {"data": 0x0000_0000_0000_AAAA, "keep": 0xFF, "last": 1})
        _, _, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.p.data)
        assert valid and data == 0x1111, f"output switched to {data:#x} while stalled"

    run(dut, bench)
