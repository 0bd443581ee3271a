"""Goodput of the virtual NIC against Linux on an impaired wire (``toe bench-impaired``).

For each wire -- clean, 2 % of frames reordered, 1 % and 5 % lost -- a bulk transfer each way
(Linux -> engine, then engine -> Linux; SHA-256 checked), the goodput and its ratio to
the clean wire's, and what each end did about it: the engine's duplicate ACKs for
out-of-order text (``tcp_out_of_order``), ACKs with SACK blocks (``tcp_sack_acks``),
delayed ACKs, D-SACKs, retransmissions after a timeout and fast retransmissions
(``tcp_retransmits``, ``tcp_fast_retransmits``), and Linux's retransmitted segments
(``nstat``), and how many round trips each sender took to repair a loss
(:mod:`sim.loss_recovery`, from the NIC's capture).  The impairment is the NIC's own
(``sim.vnic.Impairment``, both directions, seeded), so a run is repeatable up to the
timing of the host.
"""

import asyncio
import hashlib
import os
import time

from toe.host.socket_transport import open_engine

from .bench_vnic import bulk_data, engine_to_kernel, kernel_to_engine
from .build import build_root
from .loss_recovery import recovery_stats
from .vnic import Impairment, VirtualNic

__all__ = ["WIRES", "run_impaired_benchmarks"]

#: The wires measured, by name.
WIRES = {
    "clean": Impairment(),
    "reorder_2pct": Impairment(reorder=0.02, seed=7),
    "loss_1pct": Impairment(loss=0.01, seed=7),
    "loss_5pct": Impairment(loss=0.05, seed=7),
}
COUNTERS = ("tcp_out_of_order", "tcp_sack_acks", "tcp_dsack_acks", "tcp_delayed_acks",
            "tcp_retransmits", "tcp_fast_retransmits", "tcp_sack_rexmits", "tcp_lost_rexmits",
            "tcp_ooo_dropped", "tcp_paws_drops")


def _kernel_retransmits(nic: VirtualNic) -> int:
    out = nic.run_in_netns(["nstat", "-az", "TcpRetransSegs"]).stdout.split()
    return int(out[-2])


def _run_wire(name: str, impairment: Impairment, chunks: list[bytes], tag: str) -> dict:
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    result: dict = {}
    pcap = build_root() / "bench-impaired" / f"{name}.pcapng"
    pcap.parent.mkdir(parents=True, exist_ok=True)
    with VirtualNic(netns=tag, impairment=impairment, pcap=pcap) as nic:
        async def scenario() -> None:
            engine = await open_engine(str(nic.socket))
            for way, transfer, port in (("kernel_to_engine", kernel_to_engine, 9200),
                                        ("engine_to_kernel", engine_to_kernel, 9201)):
                before = await engine.transport.read_counters()
                kernel_before = _kernel_retransmits(nic)
                moved = await transfer(engine, nic, chunks, port)
                after = await engine.transport.read_counters()
                if moved["sha256"] != expected:
                    raise RuntimeError(f"{name} {way}: the data arrived damaged")
                result[way] = {
                    "bytes": moved["bytes"],
                    "seconds": round(moved["seconds"], 3),
                    "goodput_mbit_s": round(moved["bytes"] * 8 / moved["seconds"] / 1e6, 2),
                    "engine": {c: after[c] - before[c] for c in COUNTERS},
                    "kernel_retransmits": _kernel_retransmits(nic) - kernel_before,
                }
            result["nic"] = {k: v for k, v in (await engine.transport.stats()).items()
                             if k.startswith("impaired")}
            await engine.transport.close()

        asyncio.run(scenario())
    # How long each sender took to repair its losses, in round trips (the engine's
    # view: frames as they left it and as they reached it).
    engine_ip = nic.engine_ip.split("/")[0]
    for way, sender, port in (("kernel_to_engine", nic.peer_ip, 9200),
                              ("engine_to_kernel", engine_ip, 9201)):
        result[way]["recovery"] = recovery_stats(pcap, sender, receiver_port=port).as_dict()
    return result


def run_impaired_benchmarks(size_mib: int = 16, progress=print) -> dict:
    """Every wire of :data:`WIRES`, ``size_mib`` MiB each way; JSON-ready."""
    chunks = bulk_data(size_mib << 20, seed=3)
    results: dict = {"size_mib": size_mib, "host_cpus": os.cpu_count(), "wires": {}}
    tag = f"toei{os.getpid()}"
    for name, impairment in WIRES.items():
        started = time.monotonic()
        progress(f"bench-impaired: {name} wire, {size_mib} MiB each way ...")
        results["wires"][name] = _run_wire(name, impairment, chunks, tag)
        progress(f"bench-impaired: {name} done in {time.monotonic() - started:.0f} s")
    clean = results["wires"]["clean"]
    for wire in results["wires"].values():
        for way in ("kernel_to_engine", "engine_to_kernel"):
            wire[way]["ratio_to_clean"] = round(
                wire[way]["goodput_mbit_s"] / clean[way]["goodput_mbit_s"], 3)
    results["notes"] = (
        "Goodput of one bulk transfer each way over the virtual NIC (wall clock; the "
        "simulation, the driver and Linux share the host's CPUs). The engine's figures "
        "are counter deltas over the transfer; kernel_retransmits is nstat "
        "TcpRetransSegs.")
    return results
