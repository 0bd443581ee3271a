"""Whole-board simulations at the RGMII pins: the board tops on Verilator under cocotb.

:class:`toe.boards.top.BoardTop` elaborated with ``simulation=True`` (the PLL replaced by
a direct clock, the RGMII pins as top-level ports, the behavioural DDR cells of
:class:`~toe.hdl.mac.rgmii.RgmiiPhy`) is built with Verilator by :func:`run_board_sim`
and driven at its pins by cocotbext-eth's ``RgmiiSource``/``RgmiiSink``
(:mod:`sim.rgmii_bench`); the scenarios are ``tests/cocotb_board.py``.

The suite (``tests/test_board_sim.py``) runs the Colorlight i9 (network on port 0,
host link on port 1).  The ECPIX-5 (network and host link sharing port 0) is the same
cocotb module on a second model, built by the benchmark command, which also measures
the goodput and writes it as JSON::

    nice -n 10 .venv/bin/python -m toe.sim.board_sim --board colorlight-i9 ecpix5-85 \\
        --out build/bench-board.json
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path

from toe.boards.platforms import BOARDS
from toe.boards.top import BoardTop
from toe.hdl.config import ToeConfig

from .runner import RunResult, run_cocotb

__all__ = ["board_config", "board_factory", "model_name", "run_board_sim", "main"]

TESTS = Path(__file__).resolve().parent.parent / "tests"


def board_config(**changes) -> ToeConfig:
    """A small engine for the board models (8 connections, 8 KiB rings, W = 8) with the
    timers scaled down: RTO 1 ms (cap 10 ms), MSL 500 us, ARP retries 200 us apart.
    The board's time base is real time (one tick a microsecond of the 50 MHz clock)."""
    return ToeConfig(
        data_bytes=8, connections=8, listeners=4, tx_ring_bytes=8192, rx_ring_bytes=8192,
        msl_us=500, rto_initial_us=1000, rto_min_us=1000, rto_max_us=10_000,
        r2_retries=4, r2_syn_retries=3, arp_retry_us=200, arp_retries=3,
        ack_delay_us=0,
    ).replace(**changes)


@functools.cache
def board_factory(board: str):
    """The top factory of ``board``'s simulation model (one object per board, so the
    elaborated Verilog is memoised)."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    return functools.partial(BoardTop, board, simulation=True)


def model_name(board: str) -> str:
    return "board_" + board.replace("-", "_")


def run_board_sim(board: str, testcase=None, *, config: ToeConfig | None = None,
                  extra_env=None, artifacts: str | None = None) -> RunResult:
    """Build ``board``'s model (cached) and run ``tests/cocotb_board.py`` on it."""
    env = {"TOE_BOARD": board, **(extra_env or {})}
    return run_cocotb(board_factory(board), config or board_config(), model_name(board),
                      TESTS / "cocotb_board.py", testcase, extra_env=env,
                      artifacts=artifacts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toe.sim.board_sim",
        description="Whole-board simulation at the RGMII pins: every scenario of "
                    "tests/cocotb_board.py and the TCP goodput each way, per board.")
    parser.add_argument("--board", nargs="+", default=["colorlight-i9", "ecpix5-85"],
                        choices=list(BOARDS))
    parser.add_argument("--bytes", type=int, default=65536,
                        help="bytes of each goodput transfer (default 65536)")
    parser.add_argument("--out", default="build/bench-board.json")
    args = parser.parse_args(argv)
    report = {"command": "python -m toe.sim.board_sim " + " ".join(argv or sys.argv[1:]),
              "config": {"data_bytes": 8, "connections": board_config().connections,
                         "tx_ring_bytes": board_config().tx_ring_bytes,
                         "rx_ring_bytes": board_config().rx_ring_bytes},
              "boards": {}}
    for board in args.board:
        started = time.monotonic()
        result = run_board_sim(board, extra_env={"TOE_GOODPUT_BYTES": str(args.bytes)},
                               artifacts=f"board_sim.{board}")
        seconds = time.monotonic() - started
        goodput = json.loads((result.artifacts / "goodput.json").read_text())
        report["boards"][board] = {
            "tests_passed": result.passed,
            "build_seconds": round(result.build.seconds, 1),
            "verilator_compiled": result.build.compiled,
            "wall_seconds": round(seconds, 1),
            **goodput,
        }
        print(f"{board}: {len(result.passed)} tests passed in {seconds:.0f} s; "
              + ", ".join(f"{way} {v['bytes_per_cycle']:.3f} B/cycle "
                          f"({v['fraction_of_line_rate']:.1%} of line rate)"
                          for way, v in goodput["goodput"].items() if "bytes_per_cycle" in v))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
