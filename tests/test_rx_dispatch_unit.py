"""Unit tests of hdl/rx/dispatch.py (RxDispatcher), alone and behind the RX front end.

The house rules (docs/architecture.md block diagram and "RX path in detail", the
RxDispatcher and FrameBuffer docstrings):

- each record goes to the handler its verdict names (ARP, ICMP echo, TCP), in order, and
  only there; a dropped frame is taken at once and strobes ``dropped`` with its reason
  (the drop_* counter of hdl/csr.py);
- a record is done when its handler takes it, and at that moment the frame's words are
  released (``release_ptr`` = its ``buf_end``), so releases follow frame order;
- a stalled handler holds back the records behind it (back-pressure), never loses one;
- behind :class:`RxFrontend` and the two-entry record queue (wired as in hdl/core.py),
  frames wait in the frame buffer while the handlers stall; a frame that starts when a
  largest frame does not fit is dropped as BUFFER_FULL (and counted), every other frame is
  decided as sim/reference.py says, and the words a handler reads are the frame's bytes;
- in the whole core, a frame the MAC marks bad on its last beat is dropped and counted
  as ``drop_mac_error`` (hdl/rx/parser.py, hdl/core.py ``mac_rx_error``).
"""

import random
from collections import deque

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import data, wiring
from amaranth_helpers import run, split_beats
from rx_frames import OUR_IP, PEER_IP, PEER_MAC, icmp_frame, random_frame, tcp_frame
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from toe.hdl.config import ToeConfig
from toe.hdl.core import ToeCore
from toe.hdl.csr import COUNTER_BASE, COUNTERS
from toe.hdl.register_fifo import RegisterFifo
from toe.hdl.rx.dispatch import RxDispatcher
from toe.hdl.rx.frontend import RxFrontend, buffer_geometry
from toe.hdl.rx.meta import DropReason, Verdict
from toe.sim.reference import classify

#: The handler port of each verdict: ICMP errors go to the TCP engine with the segments.
PORTS = {Verdict.ARP: "arp", Verdict.ICMP_ECHO: "icmp", Verdict.TCP: "tcp",
         Verdict.ICMP_ERROR: "tcp"}
PORT_NAMES = ("arp", "icmp", "tcp")


def test_dispatcher_routes_in_order_under_backpressure():
    """docs/architecture.md block diagram (RxDispatcher: drop + reason -> counters) and
    the RxDispatcher docstring.  600 random records (every verdict and drop reason,
    random fields), offered with gaps; the three handlers are ready at random.  Each
    handler sees exactly its records, in order, with every field intact; at most one
    handler is offered a record at a time; drops are taken at once with their reason;
    one release per record, in record order, at the handshake, with its ``buf_end``."""
    ptr_bits = 10
    dut = RxDispatcher(ptr_bits)
    top = Module()  # the dispatcher is combinational: give the simulation a clock domain
    top.submodules.dispatch = dut
    top.domains.sync = ClockDomain()
    rng = random.Random(826)
    layout = dut.meta.p.shape()
    records = []
    for _ in range(600):
        verdict = rng.choice(list(Verdict))
        reason = rng.choice([r for r in DropReason if r != DropReason.NONE]) \
            if verdict == Verdict.DROP else DropReason.NONE
        value = data.Const(layout, rng.getrandbits(layout.size))
        fields = {name: getattr(value, name) for name in
                  ("buf_start", "buf_end", "frame_len", "ip_src", "tcp_seq", "arp_sha")}
        records.append({**fields, "verdict": verdict, "reason": reason})
    got = {name: [] for name in PORT_NAMES}
    drops, releases = [], []

    async def bench(ctx):
        pending = deque(records)
        current = None
        while pending or current is not None:
            if current is None and pending and rng.random() < 0.8:
                current = pending.popleft()
            ctx.set(dut.meta.valid, current is not None)
            if current is not None:
                ctx.set(dut.meta.p, current)
            for name in PORT_NAMES:
                ctx.set(getattr(dut, name).ready, rng.random() < 0.4)
            sampled = await ctx.tick().sample(
                dut.meta.ready, dut.release, dut.release_ptr, dut.dropped, dut.reason,
                *[x for name in PORT_NAMES
                  for x in (getattr(dut, name).valid, getattr(dut, name).ready,
                            getattr(dut, name).p)])
            _, _, meta_ready, release, release_ptr, dropped, reason = sampled[:7]
            offered = []
            for k, name in enumerate(PORT_NAMES):
                valid, ready, p = sampled[7 + 3 * k : 10 + 3 * k]
                if valid:
                    offered.append(name)
                    assert current is not None and PORTS.get(current["verdict"]) == name
                    if ready:
                        got[name].append({f: getattr(p, f) for f in current})
                        assert meta_ready
            assert len(offered) <= 1
            taken = current is not None and meta_ready
            assert release == taken
            assert dropped == (current is not None and current["verdict"] == Verdict.DROP)
            if current is not None and current["verdict"] == Verdict.DROP:
                assert meta_ready, "a drop is taken at once"
                drops.append(DropReason(reason))
            if taken:
                releases.append(release_ptr)
                current = None

    run(top, bench)
    for name in PORT_NAMES:
        want = [r for r in records if PORTS.get(r["verdict"]) == name]
        assert got[name] == want, name
    assert drops == [r["reason"] for r in records if r["verdict"] == Verdict.DROP]
    assert releases == [r["buf_end"] for r in records]


# -- behind the front end --------------------------------------------------------------------


class RxPath(Elaboratable):
    """RxFrontend -> RegisterFifo(2) -> RxDispatcher, releases wired back, as in core.py."""

    def __init__(self, config: ToeConfig):
        self.rx = RxFrontend(config)
        self.queue = RegisterFifo(self.rx.meta.p.shape(), 2)
        self.dispatch = RxDispatcher(self.rx.ptr_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx, m.submodules.queue = self.rx, self.queue
        m.submodules.dispatch = self.dispatch
        wiring.connect(m, self.rx.meta, self.queue.i)
        wiring.connect(m, self.queue.o, self.dispatch.meta)
        m.d.comb += [self.rx.release.eq(self.dispatch.release),
                     self.rx.release_ptr.eq(self.dispatch.release_ptr)]
        return m


def traffic(rng: random.Random, count: int):
    frames = []
    while len(frames) < count:
        r = rng.random()
        if r < 0.35:  # large valid segments and echoes fill the buffer fastest
            f = tcp_frame(rng, payload=rng.choice([1000, 1400, 1460]), options=b"")
        elif r < 0.45:
            f = icmp_frame(rng, payload=rng.choice([900, 1472]))
        else:
            f, _ = random_frame(rng)
        frames.append(bytes(f))
    return frames


def run_path(width: int, frames, seed: int):
    config = ToeConfig(data_bytes=width, rx_buffer_bytes=2 * 1514)
    depth, max_words, max_beats = buffer_geometry(config)
    dut = RxPath(config)
    rx, dispatch = dut.rx, dut.dispatch
    rng = random.Random(seed)
    first_beat = []  # cycle of each frame's first beat
    releases = []  # (cycle, pointer)
    handled = []  # (port or "drop", record, bytes read from the buffer or None)
    in_frame = [False]

    async def source(ctx):
        ctx.set(rx.mac_addr, config.mac_addr)
        ctx.set(rx.ip_addr, config.ip_addr)
        ctx.set(rx.netmask, config.netmask)
        for frame in frames:
            for beat, keep, last in split_beats(frame, width):
                ctx.set(rx.i.valid, 1)
                ctx.set(rx.i.p, {"data": beat, "keep": keep, "last": last})
                await ctx.tick().until(rx.i.ready)
            ctx.set(rx.i.valid, 0)
            await ctx.tick().repeat(rng.choice([0, 0, 1, 4]) + 1)

    async def handlers(ctx):
        stall_until = 0
        now = 0
        forced = False
        while len(handled) < len(frames):
            if now >= 300 and not forced:  # one long stall at least, early on
                stall_until, forced = now + 6000, True
            elif rng.random() < 0.002:
                stall_until = now + rng.choice([500, 2000, 6000])
            ports = {name: getattr(dispatch, name) for name in PORT_NAMES}
            offer = None
            for name, port in ports.items():
                ctx.set(port.ready, 0)
                if ctx.get(port.valid):
                    offer = name
            ctx.set(rx.rd_en, 0)
            if offer is not None and now >= stall_until:
                record = ctx.get(ports[offer].p)
                read = None
                if offer != "arp":  # read the frame back first, as the echo responder does
                    words = (record.buf_end - record.buf_start) % (2 * depth)
                    read = b""
                    for k in range(words):
                        ctx.set(rx.rd_addr, (record.buf_start + k) % (2 * depth))
                        ctx.set(rx.rd_en, 1)
                        now = await step(ctx, now)
                        ctx.set(rx.rd_en, 0)
                        read += ctx.get(rx.rd_data).to_bytes(width, "little")
                ctx.set(ports[offer].ready, 1)
                handled.append((offer, record, read))
            now = await step(ctx, now)

    async def step(ctx, now):
        """One cycle of the handler bench, which also watches the MAC side: it ticks
        every cycle, so ``now`` numbers the cycles."""
        _, _, valid, ready, release, ptr, dropped, reason, p, i_valid, i_ready, i_last = \
            await ctx.tick().sample(
                dispatch.meta.valid, dispatch.meta.ready, dispatch.release,
                dispatch.release_ptr, dispatch.dropped, dispatch.reason, dispatch.meta.p,
                rx.i.valid, rx.i.ready, rx.i.p.last)
        if i_valid and i_ready:
            if not in_frame[0]:
                first_beat.append(now)
            in_frame[0] = not i_last
        for name in PORT_NAMES:
            ctx.set(getattr(dispatch, name).ready, 0)
        if release:
            releases.append((now, ptr))
        if dropped:
            assert valid and ready
            handled.append(("drop", p, None))
            assert DropReason(reason) == DropReason(p.reason)
        return now + 1

    run(dut, source, handlers)
    return config, depth, max_words, first_beat, releases, handled


@pytest.mark.parametrize(("width", "count"), [(8, 90), (64, 160)])
def test_rx_path_full_buffer_drops_and_counts(width, count):
    """docs/architecture.md "RX path in detail" steps 3 and 5; the decisions of
    sim/reference.py (RFC 791/792/826/9293).  RxFrontend + record queue + RxDispatcher
    with handlers that read each frame back and stall for long stretches: every frame
    yields one record in order, taken by the handler its verdict names with the frame's
    bytes in the buffer, or dropped with its reason; BUFFER_FULL exactly for the frames
    that started while a largest frame did not fit (used words counted from the releases
    seen before the frame's first beat, FrameBuffer docstring), and frames are stored
    again after the handlers catch up."""
    rng = random.Random(width * 31)
    frames = traffic(rng, count)
    config, depth, max_words, first_beat, releases, handled = run_path(width, frames, width)
    assert len(handled) == len(frames) == len(first_beat)
    wr = rd = 0
    full = 0
    rel = deque(releases)
    for frame, start_cycle, (port, record, read) in zip(frames, first_beat, handled,
                                                         strict=True):
        while rel and rel[0][0] < start_cycle:
            rd = rel.popleft()[1]
        room = depth - ((wr - rd) % (2 * depth)) >= max_words
        words = (record.buf_end - record.buf_start) % (2 * depth)
        assert record.buf_start == wr % (2 * depth)
        want = classify(frame, config)
        if not room and not (want.verdict == Verdict.DROP and want.reason in (
                DropReason.RUNT, DropReason.OVERSIZE, DropReason.MAC_DST,
                DropReason.ETHERTYPE)):
            want_port, want_reason = "drop", DropReason.BUFFER_FULL
            full += 1
        else:
            want_port = PORTS.get(want.verdict, "drop")
            want_reason = want.reason
        assert (port, DropReason(record.reason)) == (want_port, want_reason), (
            f"{len(frame)}-byte frame {frame[:40].hex()}")
        assert words == (min(-(-len(frame) // width), max_words) if room else 0)
        if read is not None:
            assert read[: len(frame)] == frame
        wr += words
    assert full > 2, "the stalls never filled the buffer"
    assert [p for _, p in releases] == [r.buf_end for _, r, _ in handled]


def test_core_counts_mac_error_drops():
    """IEEE 802.3 s3.2.9 (a frame with a bad FCS is discarded) and the architecture's "a
    bad frame is marked on its last beat and dropped and counted by the parser" (issue
    13): ToeCore with ``mac_rx_error`` high on the last beat of an ARP request for our
    address, and of a runt, counts both in ``drop_mac_error`` (not ``rx_arp`` nor
    ``drop_runt``) and answers neither; the good requests around them, one of them with
    ``mac_rx_error`` high on every beat but its last, are answered and counted in
    ``rx_arp``; ``rx_frames`` counts all five (docs/registers.md "Drop counters")."""
    config = ToeConfig(connections=8, listeners=1)
    dut = ToeCore(config)
    w = config.data_bytes
    request = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC)
                  / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=OUR_IP))
    frames = [(request, "last"), (request, None), (request, "early"), (bytes(13), "last"),
              (request, None)]
    names = ["rx_frames", "rx_arp", "drop_mac_error", "drop_runt", "tx_arp"]
    counts = {}

    async def bench(ctx):
        ctx.set(dut.mac_tx.ready, 1)
        await ctx.tick().repeat(5)
        for frame, mark in frames:
            for beat, keep, last in split_beats(frame, w):
                ctx.set(dut.mac_rx.valid, 1)
                ctx.set(dut.mac_rx.p, {"data": beat, "keep": keep, "last": last})
                ctx.set(dut.mac_rx_error, mark == ("last" if last else "early"))
                await ctx.tick().until(dut.mac_rx.ready)
            ctx.set(dut.mac_rx.valid, 0)
            ctx.set(dut.mac_rx_error, 1)  # not a beat: means nothing
            await ctx.tick().repeat(3)
        ctx.set(dut.mac_rx_error, 0)
        await ctx.tick().repeat(300)
        for name in names:
            ctx.set(dut.csr_addr, COUNTER_BASE + COUNTERS.index(name))
            await ctx.tick().repeat(2)
            counts[name] = ctx.get(dut.csr_rdata)

    run(dut, bench)
    # tx_arp: the announcement after reset (RFC 5227 s2.3) and three replies.
    assert counts == {"rx_frames": 5, "rx_arp": 3, "drop_mac_error": 2, "drop_runt": 0,
                      "tx_arp": 4}
