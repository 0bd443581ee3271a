"""The benchmark command: cycle-count measurements in simulation, and synthesis.

``toe bench`` (``make bench``) runs :mod:`sim.bench_cocotb` (the datapath) at each width,
:mod:`sim.bench_tcp` (connections), :mod:`sim.bench_syn_flood` (SYNs at line rate) and
:mod:`sim.bench_recovery` (loss recovery) at width 8 and, unless told not to, the ECP5
synthesis of :mod:`boards.synth` of the whole engine with 64 connections at width 8, and
writes one JSON file; ``--only`` runs some of these parts.
"""

import json
import platform
import time

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop

from .runner import run_cocotb

__all__ = ["run_benchmarks", "SYNTH_CONFIG", "PARTS"]

#: The synthesized configuration: 64 connections with 2 KiB rings each way fit the block
#: RAM of an LFE5U-85F (208 DP16KD).
SYNTH_CONFIG = ToeConfig(data_bytes=8, connections=64, tx_ring_bytes=2048, rx_ring_bytes=2048)


#: The parts of ``toe bench``, in the order they run.
PARTS = ("datapath", "tcp", "syn-flood", "recovery", "synthesis")


def run_benchmarks(widths=(1, 8), synth: bool = True, parts=PARTS) -> dict:
    """Run ``parts`` of the bench (all by default; ``synth=False`` leaves out the
    synthesis) and return their figures."""
    parts = [p for p in parts if synth or p != "synthesis"]
    results: dict = {
        "command": "toe bench" + ("" if list(parts) == list(PARTS) else
                                  " --only " + " ".join(parts)),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
    }
    if "datapath" in parts:
        results["datapath"] = {}
    for width in widths if "datapath" in parts else ():
        config = ToeConfig(data_bytes=width)
        run = run_cocotb(ToeTop, config, "toe_core", "toe.sim.bench_cocotb", "bench",
                         artifacts=f"bench-w{width}")
        figures = json.loads((run.artifacts / "bench.json").read_text())
        figures["verilator_build_seconds"] = round(run.build.seconds, 1)
        results["datapath"][f"w{width}"] = figures
    tcp_config = ToeConfig(data_bytes=8, connections=32, tx_ring_bytes=65536,
                           rx_ring_bytes=65536)
    if "tcp" in parts:
        run = run_cocotb(ToeTop, tcp_config, "toe_core", "toe.sim.bench_tcp", "bench_tcp",
                         artifacts="bench-tcp-w8")
        results["tcp"] = json.loads((run.artifacts / "bench_tcp.json").read_text())
        results["tcp"]["config"] = {"connections": 32, "tx_ring_bytes": 65536,
                                    "rx_ring_bytes": 65536}
    if "syn-flood" in parts:
        run = run_cocotb(ToeTop, tcp_config, "toe_core", "toe.sim.bench_syn_flood",
                         "bench_syn_flood", artifacts="bench-syn-flood-w8")
        results["syn_flood"] = json.loads(
            (run.artifacts / "bench_syn_flood.json").read_text())
    if "recovery" in parts:
        run = run_cocotb(ToeTop, tcp_config, "toe_core", "toe.sim.bench_recovery",
                         "bench_recovery", artifacts="bench-recovery-w8")
        results["recovery"] = json.loads((run.artifacts / "bench_recovery.json").read_text())
    if "synthesis" in parts:
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
