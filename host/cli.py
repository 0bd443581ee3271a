"""The ``toe`` command: demo, benchmarks and synthesis of the engine."""

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from hdl.config import ToeConfig
    from hdl.top import ToeTop
    from sim.runner import run_cocotb

    # TIME-WAIT is 2 * MSL: the demo's MSL is 2 ms so that the wait fits in the demo.
    config = ToeConfig(data_bytes=args.width, msl_us=2_000)
    print(f"Building the engine ({args.width} bytes per beat) with Verilator "
          "(cached after the first run) ...", flush=True)
    result = run_cocotb(ToeTop, config, "toe_core", "sim.demo_bench", "demo",
                        artifacts="demo", extra_env={"TOE_DEMO_STRICT": "1"})
    print((result.artifacts / "demo.txt").read_text(), end="")
    print(f"simulator log: {result.log}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sim.bench import run_benchmarks

    results = run_benchmarks(widths=args.widths, synth=not args.no_synth)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from boards.synth import synthesize
    from sim.bench import SYNTH_CONFIG

    config = SYNTH_CONFIG.replace(data_bytes=args.width, connections=args.connections)
    result = synthesize(config, Path("build/synth") / f"w{args.width}-c{args.connections}")
    result.pop("utilization", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the engine in simulation against a scapy peer")
    demo.add_argument("--width", type=int, default=8, help="bytes per beat (default 8)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="datapath throughput, latency, simulation speed")
    bench.add_argument("--out", default="build/bench.json")
    bench.add_argument("--widths", type=int, nargs="+", default=[1, 8])
    bench.add_argument("--no-synth", action="store_true", help="skip the ECP5 synthesis")
    bench.set_defaults(func=_bench)

    synth = sub.add_parser("synth", help="synthesize the engine for an ECP5 LFE5U-85F-8")
    synth.add_argument("--width", type=int, default=8)
    synth.add_argument("--connections", type=int, default=64)
    synth.add_argument("--out", default="build/synth.json")
    synth.set_defaults(func=_synth)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
