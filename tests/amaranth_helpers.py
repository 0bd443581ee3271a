"""Small helpers shared by the Amaranth-simulator unit tests of the gateware blocks.

Each unit test drives its block from one async testbench that sets every input for a
cycle and then samples the handshake signals *at* the clock edge with
``ctx.tick().sample(...)``, so what the test sees as "transferred" is exactly what the
gateware saw.
"""

from amaranth.sim import Simulator

__all__ = ["run", "beat_bytes", "split_beats", "fold16"]

CLOCK_PERIOD = 1e-8


def run(dut, *testbenches, background=(), clock=True, vcd=None):
    """Simulate ``dut`` with the given testbenches (and background testbenches) to the end."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(CLOCK_PERIOD)
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def fold16(value: int) -> int:
    """End-around-carry fold of a non-negative integer to 16 bits (RFC 1071 s4.1)."""
    while value > 0xFFFF:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def split_beats(frame: bytes, width: int) -> list[tuple[int, int, int]]:
    """``frame`` as stream beats ``(data, keep, last)``: byte ``p`` in lane ``p % width``."""
    beats = []
    for start in range(0, len(frame), width):
        chunk = frame[start : start + width]
        keep = (1 << len(chunk)) - 1
        last = int(start + width >= len(frame))
        beats.append((int.from_bytes(chunk, "little"), keep, last))
    return beats


def beat_bytes(data: int, keep: int, width: int) -> bytes:
    """The bytes of a beat in lane order, only the lanes with ``keep`` set.

    Raises ``AssertionError`` when ``keep`` is not contiguous from lane 0 or is empty
    (hdl/stream.py: ``keep`` is contiguous from lane 0 and a beat is never empty).
    """
    lanes = [(keep >> i) & 1 for i in range(width)]
    count = sum(lanes)
    assert count >= 1, f"empty beat (keep={keep:#x})"
    assert lanes == [1] * count + [0] * (width - count), f"keep {keep:#x} not contiguous"
    return (data & ((1 << (8 * count)) - 1)).to_bytes(count, "little")
