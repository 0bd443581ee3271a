"""The benchmark command: cycle-count measurements in simulation, and synthesis.

``toe bench`` (``make bench``) runs :mod:`sim.bench_cocotb` (the datapath) at each width,
:mod:`sim.bench_tcp` (connections) and :mod:`sim.bench_syn_flood` (SYNs at line rate) at
width 8 and, unless told not to, the ECP5 synthesis
of :mod:`boards.synth` of the whole engine with 64 connections at width 8, and writes one
JSON file.
"""

import json
import platform
import time

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop

from .runner import run_cocotb

__all__ = ["run_benchmarks", "SYNTH_CONFIG"]

#: The synthesized configuration: 64 connections with 2 KiB rings each way fit the block
#: RAM of an LFE5U-85F (208 DP16KD).
SYNTH_CONFIG = ToeConfig(data_bytes=8, connections=64, tx_ring_bytes=2048, rx_ring_bytes=2048)


def run_benchmarks(widths=(1, 8), synth: bool = True) -> dict:
    results: dict = {
        "command": "toe bench",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "datapath": {},
    }
    for width in widths:
        config = ToeConfig(data_bytes=width)
        run = run_cocotb(ToeTop, config, "toe_core", "toe.sim.bench_cocotb", "bench",
                         artifacts=f"bench-w{width}")
        figures = json.loads((run.artifacts / "bench.json").read_text())
        figures["verilator_build_seconds"] = round(run.build.seconds, 1)
        results["datapath"][f"w{width}"] = figures
    tcp_config = ToeConfig(data_bytes=8, connections=32, tx_ring_bytes=65536,
                           rx_ring_bytes=65536)
    run = run_cocotb(ToeTop, tcp_config, "toe_core", "toe.sim.bench_tcp", "bench_tcp",
                     artifacts="bench-tcp-w8")
    results["tcp"] = json.loads((run.artifacts / "bench_tcp.json").read_text())
    results["tcp"]["config"] = {"connections": 32, "tx_ring_bytes": 65536,
                                "rx_ring_bytes": 65536}
    run = run_cocotb(ToeTop, tcp_config, "toe_core", "toe.sim.bench_syn_flood",
                     "bench_syn_flood", artifacts="bench-syn-flood-w8")
    results["syn_flood"] = json.loads((run.artifacts / "bench_syn_flood.json").read_text())
    if synth:
        from pathlib import Path

        from toe.boards.synth import synthesize

        config = SYNTH_CONFIG
        figures = synthesize(config, Path("build/synth/tcp64"))
        figures.pop("utilization", None)
        figures["config"] = {"data_bytes": 8, "connections": config.connections,
                             "tx_ring_bytes": config.tx_ring_bytes,
                             "rx_ring_bytes": config.rx_ring_bytes}
        results["synthesis"] = figures
    return results
