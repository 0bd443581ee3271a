"""The ``toe`` command: demo, virtual NIC, benchmarks and synthesis of the engine."""

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    if args.peer != "scapy":
        from toe.sim.vnic import can_run_vnic

        why_not = can_run_vnic()
        if why_not is None:
            from toe.sim.build import build_root
            from toe.sim.demo_kernel import run_kernel_demo

            print("The peer is the Linux kernel, on a TAP device. Building the virtual NIC "
                  "(cached after the first run) ...", flush=True)
            print(run_kernel_demo(build_root() / "artifacts" / "demo-kernel"), end="")
            return 0
        if args.peer == "kernel":
            print(f"toe demo: the kernel peer {why_not}", file=sys.stderr)
            return 1
        print(f"The Linux kernel cannot be the peer here ({why_not}): "
              "the peer is scapy, in the cocotb testbench.", flush=True)
    return _scapy_demo(args)


def _scapy_demo(args: argparse.Namespace) -> int:
    from toe.hdl.config import ToeConfig
    from toe.hdl.top import ToeTop
    from toe.sim.runner import run_cocotb

    # TIME-WAIT is 2 * MSL: the demo's MSL is 2 ms so that the wait fits in the demo.
    config = ToeConfig(data_bytes=args.width, msl_us=2_000)
    print(f"Building the engine ({args.width} bytes per beat) with Verilator "
          "(cached after the first run) ...", flush=True)
    result = run_cocotb(ToeTop, config, "toe_core", "toe.sim.demo_bench", "demo",
                        artifacts="demo", extra_env={"TOE_DEMO_STRICT": "1"})
    print((result.artifacts / "demo.txt").read_text(), end="")
    from toe.sim.ladder import list_connections, render_ladder

    pcap = result.artifacts / "demo.pcapng"
    for number, info in enumerate(list_connections(pcap)):
        svg = result.artifacts / f"demo-{number + 1}.svg"
        c = info.connection
        engine_first = c.ip_a == "10.0.0.2"
        render_ladder(pcap, svg, names=("engine", "peer"),
                      connection=((c.ip_a, c.port_a, c.ip_b, c.port_b) if engine_first
                                  else (c.ip_b, c.port_b, c.ip_a, c.port_a)))
        print(f"ladder: {svg}")
    print(f"simulator log: {result.log}")
    return 0


def _write_results(results: dict, path: str) -> None:
    """Write benchmark results as JSON to ``path`` and print them."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results: {out}")


def _bench(args: argparse.Namespace) -> int:
    from toe.sim.bench import PARTS, run_benchmarks

    results = run_benchmarks(widths=args.widths, synth=not args.no_synth,
                             parts=args.only or PARTS)
    _write_results(results, args.out)
    return 0


def _bench_vnic(args: argparse.Namespace) -> int:
    from toe.sim.bench_vnic import run_vnic_benchmarks
    from toe.sim.vnic import can_run_vnic

    why_not = can_run_vnic()
    if why_not:
        print(f"toe bench-vnic: {why_not}", file=sys.stderr)
        return 1
    results = run_vnic_benchmarks(size_mib=args.mib, connections=args.connections)
    _write_results(results, args.out)
    return 0


def _bench_impaired(args: argparse.Namespace) -> int:
    from toe.sim.bench_impaired import run_impaired_benchmarks
    from toe.sim.vnic import can_run_vnic

    why_not = can_run_vnic()
    if why_not:
        print(f"toe bench-impaired: {why_not}", file=sys.stderr)
        return 1
    _write_results(run_impaired_benchmarks(size_mib=args.mib), args.out)
    return 0


def _bench_flood(args: argparse.Namespace) -> int:
    from toe.sim.bench_flood import run_flood_benchmarks
    from toe.sim.vnic import can_run_vnic

    why_not = can_run_vnic()
    if why_not:
        print(f"toe bench-flood: {why_not}", file=sys.stderr)
        return 1
    results = run_flood_benchmarks(size_mib=args.mib, clients=args.clients,
                                   window=args.window)
    _write_results(results, args.out)
    return 0


def _cwnd_trace(args: argparse.Namespace) -> int:
    from toe.sim.cwnd_trace import trace_cwnd, write_trace
    from toe.sim.vnic import can_run_vnic

    why_not = can_run_vnic()
    if why_not:
        print(f"toe cwnd-trace: {why_not}", file=sys.stderr)
        return 1
    print(f"{args.mib} MiB engine -> Linux at {args.loss * 100:g} % loss, "
          f"tcp_info every {args.interval * 1000:g} ms ...", flush=True)
    result = trace_cwnd(size_mib=args.mib, loss=args.loss, interval=args.interval)
    out = Path(args.out)
    write_trace(result, out)
    print(f"{len(result['samples'])} samples in {result['seconds']} s; engine "
          f"{result['engine']}; {out.with_suffix('.svg')}, {out.with_suffix('.json')}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from toe.boards.synth import breakdown, synthesize, synthesize_mac
    from toe.sim.bench import SYNTH_CONFIG

    if args.breakdown:
        config = SYNTH_CONFIG.replace(data_bytes=args.width, connections=args.connections)
        result = breakdown(config, Path("build/synth")
                           / f"breakdown-w{args.width}-c{args.connections}")
        for row in result["modules"]:
            print(f"{'  ' * row['depth']}{row['module'].rsplit('.', 1)[-1]:<28}"
                  f"{row['lut4_equivalent']:>8} LUT4 {row['TRELLIS_FF']:>7} FF"
                  f"{row['DP16KD']:>5} DP16KD")
    elif args.mac:
        result = synthesize_mac(args.width, Path("build/synth") / f"mac-w{args.width}")
    else:
        config = SYNTH_CONFIG.replace(data_bytes=args.width, connections=args.connections)
        result = synthesize(config, Path("build/synth") / f"w{args.width}-c{args.connections}")
    result.pop("utilization", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.breakdown:
        print(json.dumps(result, indent=2))
    return 0


def _build(args: argparse.Namespace) -> int:
    from toe.boards.build import main as build_main

    return build_main(args)


def _sim(args: argparse.Namespace) -> int:
    import signal
    import time

    from toe.sim.vnic import Impairment, VirtualNic, can_run_vnic

    why_not = can_run_vnic() if args.netns else None
    if why_not:
        print(f"toe sim: {why_not}", file=sys.stderr)
        return 1
    socket_path = Path(args.socket).resolve()
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    nic = VirtualNic(netns=args.netns or None, tap=args.tap, engine_ip=args.ip,
                     peer_ip=args.peer_ip, socket=socket_path,
                     pcap=Path(args.pcap).resolve() if args.pcap else None,
                     busy_poll=args.busy_poll,
                     impairment=Impairment(args.loss, args.duplicate, args.reorder, args.seed))
    print("Building the virtual NIC (cached after the first run) ...", flush=True)
    nic.start()
    inside = f"ip netns exec {args.netns} " if args.netns else ""
    print(f"engine {args.ip} on TAP {args.tap}"
          + (f" in namespace {args.netns}" if args.netns else "")
          + f"; Linux's end of the wire: {args.peer_ip}\n"
          f"host driver socket: {socket_path}\n"
          f"  python -m toe.host.examples.echo_server --socket {socket_path} --port 7\n"
          f"  {inside}curl http://{nic.engine_address}/   (with the HTTP example running)\n"
          "Ctrl-C stops it and removes what it created.", flush=True)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    try:
        while not stop and nic.process.poll() is None:
            if args.seconds and time.monotonic() - started > args.seconds:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    stats = nic.stop()
    print(json.dumps(stats, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="whole TCP connections against Linux (or scapy), "
                                       "with ladder diagrams")
    demo.add_argument("--width", type=int, default=8,
                      help="bytes per beat of the scapy demo (default 8)")
    demo.add_argument("--peer", choices=("auto", "kernel", "scapy"), default="auto",
                      help="the Linux kernel on a TAP device (needs root), or scapy "
                           "(auto: the kernel when possible)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="datapath throughput, latency, simulation speed")
    bench.add_argument("--out", default="build/bench.json")
    bench.add_argument("--widths", type=int, nargs="+", default=[1, 8])
    bench.add_argument("--no-synth", action="store_true", help="skip the ECP5 synthesis")
    from toe.boards.platforms import BOARDS
    from toe.sim.bench import PARTS

    bench.add_argument("--only", nargs="+", metavar="PART", choices=PARTS,
                       help=f"run only these parts ({', '.join(PARTS)})")
    bench.set_defaults(func=_bench)

    bench_vnic = sub.add_parser("bench-vnic", help="virtual NIC against Linux: simulation "
                                "speed, goodput, connection setup rate (needs root)")
    bench_vnic.add_argument("--out", default="build/bench-vnic.json")
    bench_vnic.add_argument("--mib", type=int, default=64, help="bulk size each way (MiB)")
    bench_vnic.add_argument("--connections", type=int, default=200,
                            help="connections of the setup-rate run")
    bench_vnic.set_defaults(func=_bench_vnic)

    impaired = sub.add_parser("bench-impaired", help="virtual NIC against Linux: goodput "
                              "on a clean, a reordering and a lossy wire (needs root)")
    impaired.add_argument("--out", default="build/bench-impaired.json")
    impaired.add_argument("--mib", type=int, default=16, help="bulk size each way (MiB)")
    impaired.set_defaults(func=_bench_impaired)

    flood = sub.add_parser("bench-flood", help="virtual NIC against Linux under a spoofed "
                           "SYN flood: connects, goodput, TAP drops, cookies (needs root)")
    flood.add_argument("--out", default="build/bench-flood.json")
    flood.add_argument("--mib", type=int, default=16, help="bulk transfer size (MiB)")
    flood.add_argument("--clients", type=int, default=200,
                       help="legitimate connects during each flood")
    flood.add_argument("--window", type=float, default=15.0,
                       help="seconds of bulk transfer measured under the flood")
    flood.set_defaults(func=_bench_flood)

    cwnd = sub.add_parser("cwnd-trace", help="the congestion window over a transfer with "
                          "loss on the virtual NIC, as SVG and JSON (needs root)")
    cwnd.add_argument("--out", default="build/cwnd.svg")
    cwnd.add_argument("--mib", type=int, default=4)
    cwnd.add_argument("--loss", type=float, default=0.01)
    cwnd.add_argument("--interval", type=float, default=0.005, help="seconds between samples")
    cwnd.set_defaults(func=_cwnd_trace)

    synth = sub.add_parser("synth", help="synthesize the engine for an ECP5 LFE5U-85F-8")
    synth.add_argument("--width", type=int, default=8)
    synth.add_argument("--connections", type=int, default=64)
    synth.add_argument("--breakdown", action="store_true",
                       help="yosys only, without flattening: LUT4, FF and DP16KD per "
                            "module of the hierarchy (no place and route)")
    synth.add_argument("--mac", action="store_true",
                       help="the MAC layer alone (both clocks at 125 MHz), not the engine")
    synth.add_argument("--out", default="build/synth.json")
    synth.set_defaults(func=_synth)

    build = sub.add_parser("build", help="a board's bitstream (.bit, .svf) and report "
                           "with the open ECP5 flow (docs/boards.md)")
    build.add_argument("--board", required=True, choices=list(BOARDS))
    build.add_argument("--connections", type=int, default=None,
                       help="TCBs (default: 64 on the ECPIX-5, 32 on the i9 "
                       "and the ButterStick)")
    build.add_argument("--width", type=int, default=8, help="bytes per beat")
    build.set_defaults(func=_build)

    vnic = sub.add_parser("sim", help="run the engine as a virtual NIC on a Linux TAP device")
    vnic.add_argument("--tap", default="toe0", help="TAP device (created, removed at exit)")
    vnic.add_argument("--ip", default="10.0.0.2/24", help="the engine's address/prefix")
    vnic.add_argument("--peer-ip", default="10.0.0.1", help="Linux's address on the TAP")
    vnic.add_argument("--netns", default="toe",
                      help="network namespace (created if missing; '' for this one)")
    vnic.add_argument("--socket", default="build/vnic/toe.sock", help="host driver socket")
    vnic.add_argument("--pcap", help="write every frame in and out of the engine")
    vnic.add_argument("--busy-poll", action="store_true", help="never sleep when idle")
    vnic.add_argument("--loss", type=float, default=0.0, help="frame loss probability")
    vnic.add_argument("--duplicate", type=float, default=0.0, help="duplication probability")
    vnic.add_argument("--reorder", type=float, default=0.0, help="reordering probability")
    vnic.add_argument("--seed", type=int, default=1)
    vnic.add_argument("--seconds", type=float, default=0.0, help="stop after (0: never)")
    vnic.set_defaults(func=_sim)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
