"""Unit tests of hdl/rx/frame_buffer.py (FrameBuffer): the RX ring of one-beat words.

The model follows the block's contract (its docstring and docs/architecture.md "RX path
in detail", step 3):

- every frame starts on a fresh word and takes one word per beat, at most ``max_words``
  (words past that are never written, so a too-long frame cannot overwrite the next);
- at a frame's first beat the frame is stored only if a largest frame fits
  (``depth - used >= max_words``, with ``used`` counted up to the releases of earlier
  cycles); otherwise ``kept`` is low and nothing is written;
- ``start``, ``end`` and ``kept`` describe the last completed frame from the cycle after
  its last beat (``end`` = ``start`` for a frame not kept);
- reads: ``rd_data`` shows the word at ``rd_addr`` from the cycle after ``rd_en`` and
  holds while ``rd_en`` is low; releases give words back in order by end pointer (the
  dispatcher releases every frame, kept or not, in frame order).

Pointers have one bit more than the word address (full and empty differ).  The bench
writes frames with idle cycles (garbage on the bus while ``accept`` is low) and a consumer
that reads each frame back and releases it after a random delay, so the ring wraps many
times and fills up.
"""

import random
from collections import deque

import pytest
from amaranth_helpers import run, split_beats

from toe.hdl.config import ToeConfig
from toe.hdl.rx.frame_buffer import FrameBuffer
from toe.hdl.rx.frontend import buffer_geometry


def run_buffer(width, depth, max_words, max_beats, sizes, seed, consumer_speed, every=1):
    """Write frames of the given byte sizes; return counts of what was checked.  The
    consumer reads every ``every``-th word of each frame and its last word, then waits up
    to ``consumer_speed`` cycles and releases it."""
    dut = FrameBuffer(width, depth, max_words, max_beats)
    ptr_mask = (2 * depth) - 1
    rng = random.Random(seed)
    frames = [bytes(rng.getrandbits(8) for _ in range(n)) for n in sizes]
    stats = {"kept": 0, "dropped": 0, "words_read": 0, "held": 0}

    async def bench(ctx):
        wr = rd = 0  # the model's pointers
        index = 0  # beat index within the frame, saturating at max_beats (FrameCapture)
        beats = deque()
        for frame in frames:
            for data, keep, last in split_beats(frame, width):
                beats.append((data, keep, last, frame))
        done = deque()  # (start, end, kept, frame) completed, not yet released
        storing = None
        pending_check = None
        reading = None  # (frame entry, next word, words, expected word for the next cycle)
        release_wait = 0
        last_word = None
        while beats or done or reading:
            # -- write side --
            accept = bool(beats) and rng.random() < 0.8
            release_now = None
            ctx.set(dut.accept, accept)
            ctx.set(dut.beat_index, index)
            if accept:
                data, keep, last, frame = beats.popleft()
                garbage = rng.getrandbits(8 * width) & ~((1 << (8 * bin(keep).count("1"))) - 1)
                ctx.set(dut.beat, {"data": data | garbage, "keep": keep, "last": last})
                if index == 0:
                    storing = depth - ((wr - rd) & ptr_mask) >= max_words
                if last:
                    words = min(index + 1, max_words)
                    end = (wr + words) & ptr_mask if storing else wr
                    pending_check = (wr, end, storing, frame)
                    if storing:
                        wr = end
                    index = 0
                elif index != max_beats:
                    index += 1
            else:
                ctx.set(dut.beat, {"data": rng.getrandbits(8 * width),
                                   "keep": rng.getrandbits(width), "last": rng.getrandbits(1)})
            # -- read side: read the oldest frame word by word, then release it --
            ctx.set(dut.release, 0)
            ctx.set(dut.rd_en, 0)
            expect_next = None
            if reading is None and done:
                reading = [done.popleft(), 0]
                release_wait = rng.randint(0, consumer_speed)
            if reading is not None:
                (start, end, kept, frame), k = reading
                words = (end - start) & ptr_mask
                if k < words and rng.random() < 0.7:
                    ctx.set(dut.rd_addr, (start + k) & ptr_mask)
                    ctx.set(dut.rd_en, 1)
                    chunk = frame[k * width : (k + 1) * width]
                    expect_next = ("word", chunk)
                    reading[1] = k + every if k + every < words or k == words - 1 else words - 1
                elif k < words:
                    ctx.set(dut.rd_addr, rng.getrandbits(ptr_mask.bit_length()))
                    expect_next = ("held", None)
                elif release_wait > 0:
                    release_wait -= 1
                else:
                    ctx.set(dut.release, 1)
                    ctx.set(dut.release_ptr, end)
                    release_now = end
                    reading = None
            await ctx.tick()
            if release_now is not None:
                rd = release_now
            # -- checks of the cycle after --
            if pending_check is not None:
                start, end, kept, frame = pending_check
                got = (ctx.get(dut.start), ctx.get(dut.end), ctx.get(dut.kept))
                assert got == (start, end, int(kept)), f"{len(frame)}-byte frame: {got}"
                done.append(pending_check)
                stats["kept" if kept else "dropped"] += 1
                pending_check = None
            if expect_next is not None:
                word = ctx.get(dut.rd_data)
                kind, chunk = expect_next
                if kind == "word":
                    assert word & ((1 << (8 * len(chunk))) - 1) == int.from_bytes(chunk, "little")
                    last_word = word
                    stats["words_read"] += 1
                elif last_word is not None:
                    assert word == last_word, "rd_data must hold while rd_en is low"
                    stats["held"] += 1

    run(dut, bench)
    assert stats["kept"] + stats["dropped"] == len(frames)
    return stats


@pytest.mark.parametrize(("width", "depth", "max_words", "max_beats"), [
    (1, 64, 24, 25), (3, 32, 10, 11), (8, 16, 8, 9)])
def test_ring_fills_wraps_and_drops(width, depth, max_words, max_beats):
    """docs/architecture.md "RX path in detail" step 3, FrameBuffer docstring.  Small
    rings: frames of 1 byte up to past ``max_beats`` beats (the largest ones are
    cut at ``max_words`` words and do not overwrite their neighbours), a slow consumer so
    that the ring fills: frames that start without room for a largest frame are not kept,
    and once words are released frames are kept again.  Every stored word reads back."""
    rng = random.Random(depth * width)
    top = (max_beats + 2) * width
    sizes = [rng.choice([1, width, width + 1, top // 2, top, rng.randint(1, top)])
             for _ in range(120)]
    stats = run_buffer(width, depth, max_words, max_beats, sizes, seed=width,
                       consumer_speed=max_words // 2)
    assert stats["dropped"] > 5 and stats["kept"] > 40 and stats["held"] > 10


@pytest.mark.parametrize("width", [8, 64])
def test_default_geometry_fast_consumer(width):
    """docs/architecture.md "RX path in detail" step 3 and "Configuration"
    (``rx_buffer_bytes`` holds at least two largest frames).  The geometry RxFrontend
    builds (hdl/rx/frontend.py buffer_geometry) with a prompt consumer: nothing is dropped
    and every word read back (every 7th and the last of each frame up to 1514 bytes)
    matches, across many wraps of the pointers."""
    config = ToeConfig(data_bytes=width, rx_buffer_bytes=4096)
    depth, max_words, max_beats = buffer_geometry(config)
    rng = random.Random(width)
    sizes = [rng.choice([60, 64, 100, 576, 1514, rng.randint(14, 1514)]) for _ in range(40)]
    stats = run_buffer(width, depth, max_words, max_beats, sizes, seed=width + 1,
                       consumer_speed=2, every=7)
    assert stats["dropped"] == 0
