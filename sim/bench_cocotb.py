"""Datapath measurements in clock cycles, as a cocotb test (run by sim/bench.py).

Every figure is a count of simulated clock cycles; none depends on the speed of the
machine except ``sim_cycles_per_second``.  Results go to ``bench.json`` in the artefacts
directory.
"""

import json
import time

import cocotb

from toe.sim.peer import Peer
from toe.sim.testbench import MacTestbench, artifacts_path

CLOCK_NS = 10


def cycles(ns: float) -> int:
    return round(ns / CLOCK_NS)


async def echo_throughput(tb: MacTestbench, peer: Peer, frame_len: int, count: int) -> dict:
    """``count`` echo requests of ``frame_len`` bytes back to back, sink always ready."""
    payload = bytes(i & 0xFF for i in range(frame_len - 42))
    requests = [peer.ping(payload, seq=i) for i in range(count)]
    assert len(bytes(requests[0])) == frame_len
    first_sent = len(tb.sent)
    for r in requests:
        tb.send(r)
    for _ in requests:
        await tb.recv(timeout_ns=10_000_000)
    frames_in = tb.injected[-count:]
    frames_out = tb.sent[first_sent:]
    start = frames_in[0].start_ns
    span_in = cycles(frames_in[-1].end_ns - start) + 1
    span = cycles(frames_out[-1].end_ns - start) + 1
    w = tb.config.data_bytes
    beats = -(-frame_len // w)
    return {
        "frame_bytes": frame_len,
        "frames": count,
        "cycles_rx": span_in,
        "cycles_total": span,
        "rx_frames_per_cycle": round(count / span_in, 5),
        "rx_bytes_per_cycle": round(count * frame_len / span_in, 3),
        "ceiling_frames_per_cycle": round(1 / beats, 5),
        "ceiling_bytes_per_cycle": round(frame_len / beats, 3),
        "efficiency": round((count / span_in) * beats, 4),
    }


async def rx_only_throughput(tb: MacTestbench, peer: Peer, frame_len: int, count: int) -> dict:
    """``count`` TCP segments with RST for a closed port (fully parsed, checksummed,
    dropped without reply), back to back: the RX path alone."""
    segment = peer.tcp(b"r" * (frame_len - 54), flags="RA", seq=1, ack=1,
                       options=[])
    assert len(bytes(segment)) == frame_len
    for _ in range(count):
        tb.send(segment)
    await tb.wait_sent()
    frames = tb.injected[-count:]
    span = cycles(frames[-1].end_ns - frames[0].start_ns) + 1
    beats = -(-frame_len // tb.config.data_bytes)
    return {
        "frame_bytes": frame_len,
        "frames": count,
        "cycles": span,
        "frames_per_cycle": round(count / span, 5),
        "bytes_per_cycle": round(count * frame_len / span, 3),
        "ceiling_bytes_per_cycle": round(frame_len / beats, 3),
        "efficiency": round((count / span) * beats, 4),
    }


async def latency(tb: MacTestbench, frame) -> int:
    """Cycles from the last beat of ``frame`` into the engine to the first beat out."""
    tb.send(frame)
    reply = await tb.recv(timeout_ns=1_000_000)
    return cycles(reply.time_ns - tb.injected[-1].end_ns)


@cocotb.test()
async def bench(dut):
    """Throughput, latency and simulation speed of the datapath."""
    tb = MacTestbench(dut, tick_cycles=100)
    await tb.reset()
    peer = Peer(tb.config)
    await tb.recv(timeout_ns=50_000)  # the announcement
    wall = time.perf_counter()
    sim_start = tb.now_ns
    results = {"data_bytes": tb.config.data_bytes, "clock_ns": CLOCK_NS}
    w = tb.config.data_bytes
    count_small = 400 if w > 1 else 100
    count_large = 40 if w > 1 else 12
    results["echo_60B"] = await echo_throughput(tb, peer, 60, count_small)
    results["echo_1514B"] = await echo_throughput(tb, peer, 1514, count_large)
    results["rx_only_60B"] = await rx_only_throughput(tb, peer, 60, count_small)
    results["rx_only_1514B"] = await rx_only_throughput(tb, peer, 1514, count_large)
    results["latency_cycles"] = {
        "icmp_echo_60B_last_in_to_first_out": await latency(tb, peer.ping(b"x" * 18)),
        "icmp_echo_1514B_last_in_to_first_out": await latency(tb, peer.ping(b"x" * 1472)),
        "tcp_syn_to_rst": await latency(tb, peer.tcp(flags="S", seq=1)),
        "arp_request_to_reply": await latency(tb, peer.arp_request()),
    }
    sim_cycles = cycles(tb.now_ns - sim_start)
    seconds = time.perf_counter() - wall
    results["sim_cycles"] = sim_cycles
    results["sim_wall_seconds"] = round(seconds, 2)
    results["sim_cycles_per_second_python_driven"] = round(sim_cycles / seconds)
    # The Verilated model alone: no frame moving, Python wakes only for the tick.
    idle_start = time.perf_counter()
    await tb.wait_ns(200_000)
    results["sim_cycles_per_second_model_idle"] = round(
        cycles(200_000) / (time.perf_counter() - idle_start))
    (artifacts_path() / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    await tb.finish("bench")
