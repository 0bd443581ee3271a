"""What the async host API (:mod:`host.api`) asks of a transport and its runtime.

A :class:`Transport` moves the packed messages between the driver and the engine (a
simulator testbench, the virtual NIC's socket, the boards' Ethernet host link, an
in-memory test double); :class:`RuntimeEvent` is what its ``make_event()`` returns
(:class:`asyncio.Event` and :class:`cocotb.triggers.Event` both fit), and
:class:`DriverSink` what it feeds (:class:`host.api.Engine` is one).  The module
documentation of :mod:`host.api` tells how the driver uses them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

__all__ = ["Transport", "RuntimeEvent", "DriverSink"]


class RuntimeEvent(Protocol):
    """What ``Transport.make_event()`` returns (asyncio.Event, cocotb Event)."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[Any]: ...


class DriverSink(Protocol):
    """What the transport feeds: :class:`Engine` implements it."""

    def feed_event(self, bits: int) -> None: ...
    def feed_rx_beat(self, bits: int) -> None: ...


class Transport(Protocol):
    """Moves packed messages between the driver and the engine.

    ``attach`` is called once by :class:`Engine` with the sink the transport must feed
    with every event (``event_layout``) and RX beat (``data_layout``) of the engine.
    ``send_commands`` and ``send_tx_beats`` take packed ``command_layout`` values and TX
    beats; plain functions or coroutine functions (see the module documentation).
    """

    def attach(self, sink: DriverSink) -> None: ...
    def make_event(self) -> RuntimeEvent: ...
    def send_commands(self, commands: list[int]) -> Awaitable[None] | None: ...
    def send_tx_beats(self, beats: list[int]) -> Awaitable[None] | None: ...
