"""The host driver's simulation transport: :class:`host.api.Engine` over a cocotb bench.

The driver (:mod:`host.api`) awaits only events the transport makes, so under cocotb it
runs on cocotb's scheduler: ``make_event`` gives :class:`cocotb.triggers.Event`, the
send methods queue packed messages on :class:`sim.host_port.HostPort`, and the port's
monitors feed every engine event and RX beat to the driver.  A test then uses the same
API an application would::

    host = HostPort(dut, config)
    engine = Engine(CocotbTransport(host), config)
    listener = await engine.listen(80)
    conn = await listener.accept()
    data = await conn.read(100)
"""

from cocotb.triggers import Event

from toe.host.api import DriverSink

from .host_port import HostPort

__all__ = ["CocotbTransport"]


class CocotbTransport:
    """Moves the driver's messages through a :class:`HostPort`; with a testbench
    (:class:`sim.testbench.MacTestbench`) also writes registers (the secret keys)."""

    def __init__(self, port: HostPort, bench=None):
        self.port = port
        self.bench = bench

    async def write_registers(self, writes: list[tuple[int, int]]) -> None:
        for addr, value in writes:
            await self.bench.csr_write(addr, value)

    def attach(self, sink: DriverSink) -> None:
        self.port.on_event = sink.feed_event
        self.port.on_rx_beat = sink.feed_rx_beat

    def make_event(self) -> Event:
        return Event()

    def send_commands(self, commands: list[int]) -> None:
        self.port.send_command_bits(commands)

    def send_tx_beats(self, beats: list[int]) -> None:
        self.port.send_tx_bits(beats)
