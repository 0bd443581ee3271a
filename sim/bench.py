"""The benchmark command: cycle-count measurements in simulation, and synthesis.

``toe bench`` (``make bench``) runs :mod:`sim.bench_cocotb` at each width and, unless told
not to, the ECP5 synthesis of :mod:`boards.synth` at width 8, and writes one JSON file.
"""

import json
import platform
import time

from hdl.config import ToeConfig
from hdl.top import ToeTop

from .runner import run_cocotb

__all__ = ["run_benchmarks"]


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
        run = run_cocotb(ToeTop, config, "toe_core", "sim.bench_cocotb", "bench",
                         artifacts=f"bench-w{width}")
        figures = json.loads((run.artifacts / "bench.json").read_text())
        figures["verilator_build_seconds"] = round(run.build.seconds, 1)
        results["datapath"][f"w{width}"] = figures
    if synth:
        from pathlib import Path

        from boards.synth import synthesize

        figures = synthesize(ToeConfig(data_bytes=8), Path("build/synth/w8"))
        figures.pop("utilization", None)
        results["synthesis"] = figures
    return results
