"""AXI4-Stream frame source and sink for cocotb 2.x, any width.

The signals are ``<prefix>_tdata`` [8*W], ``<prefix>_tkeep`` [W], ``<prefix>_tlast``,
``<prefix>_tvalid`` and ``<prefix>_tready``.  Byte 0 of a frame (first on the wire) is
``tdata[7:0]``; ``tkeep`` is contiguous from lane 0 and only the last beat of a frame may be
partial (AMBA AXI4-Stream, ARM IHI 0051, with the packet conventions of verilog-ethernet).

Timing conventions (they hold for cocotb's Verilator flow): a coroutine woken by
``RisingEdge(clk)`` reads the values the design had *before* that edge, which is what the edge
samples, and its writes take effect *after* the edge.  A transfer happens at an edge where
``tvalid`` and ``tready`` both read 1.

Idle and backpressure *patterns* are iterables of booleans, one per decision, True meaning
"pause": for a source, do not present a new beat this cycle (a beat already presented is held
until it is accepted, as AXI4-Stream requires); for a sink, hold ``tready`` low this cycle.
``None`` means never pause.  :data:`PATTERNS` names the standard ones.

Python work per cycle is kept small: one ``await RisingEdge`` per cycle and only while a frame
moves; an idle source or sink sleeps on an event or on ``tvalid`` rising.
"""

import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, RisingEdge, ValueChange, with_timeout

__all__ = [
    "PATTERNS",
    "AxisFrame",
    "AxisProtocolError",
    "AxisSink",
    "AxisSource",
    "AxisStreamChecker",
    "cycle_pause",
    "every_other",
    "make_pattern",
    "random_pause",
]

Pattern = Iterable[bool] | None


# -- patterns -------------------------------------------------------------------------------


def every_other() -> Iterator[bool]:
    """Pause every second cycle."""
    return itertools.cycle([False, True])


def cycle_pause() -> Iterator[bool]:
    """verilog-ethernet's ``cycle_pause``: three paused cycles, then one active."""
    return itertools.cycle([True, True, True, False])


def random_pause(seed: int = 1, probability: float = 0.5) -> Iterator[bool]:
    """Pause with ``probability`` on each cycle, reproducibly from ``seed``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


PATTERNS: dict[str, Callable[[], Pattern]] = {
    "none": lambda: None,
    "every_other": every_other,
    "random": random_pause,
    "cycle_pause": cycle_pause,
}
"""Standard idle/backpressure patterns by name (each call makes a fresh iterator)."""


def make_pattern(pattern: "str | Pattern") -> Iterator[bool] | None:
    """A fresh iterator from a pattern name in :data:`PATTERNS`, an iterable, or None."""
    if isinstance(pattern, str):
        try:
            pattern = PATTERNS[pattern]()
        except KeyError:
            raise ValueError(f"unknown pattern {pattern!r}; known: {sorted(PATTERNS)}") from None
    return None if pattern is None else iter(pattern)


# -- frames and protocol checking -----------------------------------------------------------


class AxisProtocolError(AssertionError):
    """A stream broke the AXI4-Stream rules or the frame format of this interface."""


@dataclass
class AxisFrame:
    """One frame with the simulated times (ns) of the edges that transferred its first and
    last beats (``None`` until then)."""

    data: bytes
    start_ns: float | None = None
    end_ns: float | None = None
    done: Event = field(default_factory=Event, repr=False, compare=False)


def _beats(data: bytes, lanes: int) -> list[tuple[int, int, int]]:
    """``(tdata, tkeep, tlast)`` for every beat of ``data``."""
    full = (1 << lanes) - 1
    beats = []
    for offset in range(0, len(data), lanes):
        chunk = data[offset : offset + lanes]
        keep = full if len(chunk) == lanes else (1 << len(chunk)) - 1
        beats.append((int.from_bytes(chunk, "little"), keep, 0))
    tdata, tkeep, _ = beats[-1]
    beats[-1] = (tdata, tkeep, 1)
    return beats


class AxisStreamChecker:
    """Checks a stream beat by beat and assembles its frames; no simulator needed.

    Call :meth:`valid_cycle` for every clock edge at which ``tvalid`` was 1 and
    :meth:`invalid_cycle` for (at least) the first edge after that at which it was 0.
    ``now()`` gives the time (ns) of the current edge; it is called only at the first and last
    beat of a frame and on errors.  Errors are logged to ``log``, collected in :attr:`errors`
    and, when ``strict``, raised at once as :class:`AxisProtocolError`.

    Rules: while ``tvalid`` is high and ``tready`` low, the beat must stay presented unchanged
    (AXI4-Stream: once asserted, TVALID stays high, and the payload stable, until the
    handshake); ``tkeep`` must be contiguous from lane 0, non-zero, and full except on the last
    beat of a frame.
    """

    def __init__(
        self,
        lanes: int,
        name: str = "axis",
        *,
        strict: bool = True,
        now: Callable[[], float] = lambda: 0.0,
        log: logging.Logger | None = None,
    ):
        self.lanes = lanes
        self.name = name
        self.strict = strict
        self.now = now
        self.log = log
        self.errors: list[str] = []
        self._full = (1 << lanes) - 1
        self._stalled: tuple[int, int, int] | None = None
        self._chunks: list[bytes] = []
        self._start_ns: float | None = None

    @property
    def in_frame(self) -> bool:
        """True between the first and the last beat of a frame."""
        return bool(self._chunks)

    def _error(self, text: str) -> None:
        message = f"{self.name} at {self.now():g} ns: {text}"
        self.errors.append(message)
        if self.log is not None:
            self.log.error("%s", message)
        if self.strict:
            raise AxisProtocolError(message)

    def invalid_cycle(self) -> None:
        """An edge with ``tvalid`` low."""
        if self._stalled is not None:
            self._stalled = None
            self._error("tvalid dropped before the beat was accepted (tready low)")

    def valid_cycle(self, ready: bool, tdata: int, tkeep: int, tlast: int) -> AxisFrame | None:
        """An edge with ``tvalid`` high; returns the frame that this beat completed, if any."""
        beat = (tdata, tkeep, tlast)
        if self._stalled is not None and beat != self._stalled:
            self._error(
                "payload changed while tvalid was high and tready low: "
                f"{_beat_text(self._stalled, self.lanes)} -> {_beat_text(beat, self.lanes)}",
            )
        if not ready:
            self._stalled = beat
            return None
        self._stalled = None
        if tkeep == 0:
            self._error("empty beat (tkeep == 0)")
            n = 0
        elif tkeep & (tkeep + 1):
            self._error(f"tkeep {tkeep:#x} is not contiguous from lane 0")
            n = tkeep.bit_length()
        else:
            n = tkeep.bit_length()
            if not tlast and tkeep != self._full:
                self._error(f"partial beat (tkeep {tkeep:#x}) before the last beat")
        if not self._chunks:
            self._start_ns = self.now()
        self._chunks.append(tdata.to_bytes(self.lanes, "little")[:n])
        if not tlast:
            return None
        frame = AxisFrame(b"".join(self._chunks), self._start_ns, self.now())
        self._chunks = []
        return frame


def _beat_text(beat: tuple[int, int, int], lanes: int) -> str:
    tdata, tkeep, tlast = beat
    return f"(tdata={tdata:0{2 * lanes}x} tkeep={tkeep:#x} tlast={tlast})"


def _unsigned(value) -> int:
    return value.to_unsigned()


# -- source and sink ------------------------------------------------------------------------


class _AxisPort:
    def __init__(self, dut, prefix: str, clock, reset, lanes: int | None):
        self.name = prefix
        self.clock = clock
        self.reset = reset
        self.tdata = getattr(dut, f"{prefix}_tdata")
        self.tkeep = getattr(dut, f"{prefix}_tkeep")
        self.tlast = getattr(dut, f"{prefix}_tlast")
        self.tvalid = getattr(dut, f"{prefix}_tvalid")
        self.tready = getattr(dut, f"{prefix}_tready")
        self.lanes = lanes if lanes is not None else len(self.tkeep)
        if len(self.tdata) != 8 * self.lanes or len(self.tkeep) != self.lanes:
            raise ValueError(
                f"{prefix}: tdata has {len(self.tdata)} bits and tkeep {len(self.tkeep)}, "
                f"expected {8 * self.lanes} and {self.lanes}"
            )

        # Follow reset with a value-change watcher instead of reading it every cycle.
        self.in_reset = False
        if reset is not None:
            self._reset_task = cocotb.start_soon(self._watch_reset())

    async def _watch_reset(self) -> None:
        change = ValueChange(self.reset)
        while True:
            self.in_reset = bool(self.reset.value)
            await change


class AxisSource:
    """Drives frames into ``<prefix>_*`` (the design's AXI4-Stream sink).

    ``send(data)`` queues a frame and returns its :class:`AxisFrame`, whose ``start_ns`` and
    ``end_ns`` are filled in as its first and last beats transfer and whose ``done`` event is
    set then.  :attr:`frames` lists every frame sent, in order.  While ``reset`` reads 1 no
    beat is presented (a frame interrupted by reset starts again from its first beat).
    """

    def __init__(self, dut, prefix: str, clock, *, reset=None, byte_lanes: int | None = None):
        self._port = _AxisPort(dut, prefix, clock, reset, byte_lanes)
        self.lanes = self._port.lanes
        self.frames: list[AxisFrame] = []
        self._queue: deque[AxisFrame] = deque()
        self._idle: Iterator[bool] | None = None
        self._wake = Event()
        self._drained = Event()
        self._drained.set()
        p = self._port
        p.tvalid.value = 0
        p.tlast.value = 0
        p.tkeep.value = 0
        p.tdata.value = 0
        self._task = cocotb.start_soon(self._run())

    def set_idle(self, pattern: "str | Pattern") -> None:
        """Insert idle cycles where ``pattern`` yields True (see :data:`PATTERNS`)."""
        self._idle = make_pattern(pattern)

    def send(self, data: "bytes | AxisFrame") -> AxisFrame:
        """Queue one frame (at least one byte); returns its :class:`AxisFrame`."""
        frame = data if isinstance(data, AxisFrame) else AxisFrame(bytes(data))
        if not frame.data:
            raise ValueError("an AXI4-Stream frame has at least one byte")
        self._queue.append(frame)
        self.frames.append(frame)
        self._drained.clear()
        self._wake.set()
        return frame

    @property
    def drained(self) -> bool:
        """True when every queued frame has been transferred."""
        return self._drained.is_set()

    async def wait_drained(self) -> None:
        """Wait until every queued frame has been transferred."""
        await self._drained.wait()

    async def _run(self) -> None:
        p = self._port
        edge = RisingEdge(p.clock)
        lanes = self.lanes
        beats: list[tuple[int, int, int]] = []
        frame: AxisFrame | None = None
        index = 0
        presented = False  # tvalid driven high
        driven = (0, 0, 0)  # tdata, tkeep, tlast as driven
        while True:
            if frame is None and not self._queue and not presented:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
            await edge
            if p.in_reset:
                if presented:
                    p.tvalid.value = 0
                    presented = False
                index = 0
                if frame is not None:
                    frame.start_ns = None
                continue
            if presented:
                if not p.tready.value:
                    continue  # hold the beat
                if index == 0:
                    frame.start_ns = get_sim_time("ns")
                index += 1
                if index == len(beats):
                    frame.end_ns = get_sim_time("ns")
                    frame.done.set()
                    frame = None
            if frame is None and self._queue:
                frame = self._queue.popleft()
                beats = _beats(frame.data, lanes)
                index = 0
            if frame is None or (self._idle is not None and next(self._idle, False)):
                if presented:
                    p.tvalid.value = 0
                    presented = False
                continue
            tdata, tkeep, tlast = beats[index]
            # Each write is a simulator call: skip the ones that change nothing.
            if tdata != driven[0]:
                p.tdata.value = tdata
            if tkeep != driven[1]:
                p.tkeep.value = tkeep
            if tlast != driven[2]:
                p.tlast.value = tlast
            driven = beats[index]
            if not presented:
                p.tvalid.value = 1
                presented = True


class AxisSink:
    """Receives frames from ``<prefix>_*`` (the design's AXI4-Stream source) and checks the
    protocol with an :class:`AxisStreamChecker`.

    :attr:`frames` lists every frame received (with the times of its first and last beats);
    :meth:`recv` returns them one by one.  Protocol errors are logged, collected in
    :attr:`errors` and, when ``strict``, also raised in the monitor (failing the test).
    """

    def __init__(
        self,
        dut,
        prefix: str,
        clock,
        *,
        reset=None,
        byte_lanes: int | None = None,
        strict: bool = True,
    ):
        self._port = _AxisPort(dut, prefix, clock, reset, byte_lanes)
        self.lanes = self._port.lanes
        self.checker = AxisStreamChecker(
            self.lanes,
            prefix,
            strict=strict,
            now=lambda: get_sim_time("ns"),
            log=logging.getLogger(f"cocotb.axis.{prefix}"),
        )
        self.frames: list[AxisFrame] = []
        self._unread: deque[AxisFrame] = deque()
        self._arrived = Event()
        self._backpressure: Iterator[bool] | None = None
        self._port.tready.value = 1
        self._ready = True
        self._task = cocotb.start_soon(self._run())

    @property
    def errors(self) -> list[str]:
        """Protocol violations seen so far."""
        return self.checker.errors

    @property
    def in_frame(self) -> bool:
        """True while a frame is partly received."""
        return self.checker.in_frame

    @property
    def pending(self) -> int:
        """Frames received and not yet returned by :meth:`recv`."""
        return len(self._unread)

    def set_backpressure(self, pattern: "str | Pattern") -> None:
        """Hold ``tready`` low on cycles where ``pattern`` yields True (see :data:`PATTERNS`)."""
        self._backpressure = make_pattern(pattern)
        if self._backpressure is None and not self._ready:
            self._port.tready.value = 1
            self._ready = True

    @property
    def unread(self) -> list[AxisFrame]:
        """The frames received and not yet returned by :meth:`recv` (a copy)."""
        return list(self._unread)

    def get_nowait(self) -> AxisFrame | None:
        """The next unread frame, or None."""
        return self._unread.popleft() if self._unread else None

    async def recv(self, timeout_ns: float | None = None) -> AxisFrame:
        """The next unread frame; waits up to ``timeout_ns`` (forever if None) and raises
        ``cocotb.triggers.SimTimeoutError`` when none comes."""
        while not self._unread:
            self._arrived.clear()
            if timeout_ns is None:
                await self._arrived.wait()
            else:
                await with_timeout(self._arrived.wait(), timeout_ns, "ns")
        return self._unread.popleft()

    def _record(self, frame: AxisFrame) -> None:
        frame.done.set()
        self.frames.append(frame)
        self._unread.append(frame)
        self._arrived.set()

    async def _run(self) -> None:
        p = self._port
        edge = RisingEdge(p.clock)
        valid_rise = RisingEdge(p.tvalid)
        checker = self.checker
        # A 1-bit port reads as a Logic, a wider one as a LogicArray.
        keep_of = int if self.lanes == 1 else _unsigned
        active = bool(p.tvalid.value)
        while True:
            if not active:
                await valid_rise
                active = True
            await edge
            if p.in_reset:
                continue
            if p.tvalid.value:
                frame = checker.valid_cycle(
                    self._ready,
                    p.tdata.value.to_unsigned(),
                    keep_of(p.tkeep.value),
                    int(p.tlast.value),
                )
                if frame is not None:
                    self._record(frame)
            else:
                checker.invalid_cycle()
                active = False
            if self._backpressure is not None:
                ready = not next(self._backpressure, False)
                if ready != self._ready:
                    p.tready.value = int(ready)
                    self._ready = ready
