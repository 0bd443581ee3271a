"""Benchmarks of the virtual NIC against the Linux kernel (``toe bench-vnic``).

- simulation speed in cycles per second: idle (busy-polling, and the default mode that
  sleeps when idle) and while moving bulk data;
- wall-clock goodput of a bulk transfer each way, SHA-256 checked;
- connection setup rate: Linux connects to an engine listener again and again
  (connections per second of wall time, and engine cycles per connection and per
  handshake, from the trace port).

Everything runs with real time: the engine's tick follows the wall clock, so the
figures depend on the host CPU (the virtual NIC, the Python driver and Linux share it).
"""

import asyncio
import hashlib
import os
import random
import socket
import time
from pathlib import Path

from toe.hdl.tcp.engine import trace_layout
from toe.hdl.tcp.tcb import TcpState
from toe.host.socket_transport import open_engine

from .netns import kernel_sockets, socket_in_netns
from .vnic import VirtualNic

__all__ = ["bulk_data", "engine_to_kernel", "kernel_to_engine", "run_vnic_benchmarks",
           "tcpi_options", "TCPI_OPT_TIMESTAMPS", "TCPI_OPT_SACK", "TCPI_OPT_WSCALE"]

ENGINE, KERNEL = "10.0.0.2", "10.0.0.1"


def bulk_data(size: int, seed: int = 1) -> list[bytes]:
    """``size`` bytes (a multiple of 1 MiB) as 1 MiB chunks, no two chunks alike."""
    block = random.Random(seed).randbytes(1 << 20)
    return [block[4099 * i:] + block[: 4099 * i] for i in range(size >> 20)]


#: ``tcpi_options`` bits of Linux's ``struct tcp_info`` (include/uapi/linux/tcp.h).
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4


def tcpi_options(sock: socket.socket) -> int:
    """The options Linux agreed on for ``sock`` (``TCP_INFO``: timestamps, SACK, window
    scale; ``ss -ti`` of iproute2 6.1 does not print ts and sack on this kernel)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[5]


def _kernel_socket(netns: str) -> socket.socket:
    sock = socket_in_netns(netns)
    sock.settimeout(60)
    return sock


async def kernel_to_engine(engine, nic: VirtualNic, chunks: list[bytes], port: int) -> dict:
    """Linux sends ``chunks`` to an engine listener on ``port`` and half-closes; the
    engine reads to the FIN and closes.  Returns bytes, SHA-256, seconds, the kernel
    socket seen by ``ss -ti`` during the transfer, and the NIC statistics around it."""
    seen: dict = {}

    def sender() -> None:
        with _kernel_socket(nic.netns) as sock:
            sock.connect((ENGINE, port))
            for i, chunk in enumerate(chunks):
                sock.sendall(chunk)
                if i == len(chunks) // 2:
                    seen["kernel"] = [s for s in kernel_sockets(nic.netns) if s.peer[1] == port]
                    seen["tcpi_options"] = tcpi_options(sock)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)

    listener = await engine.listen(port)
    task = asyncio.create_task(asyncio.to_thread(sender))
    conn = await listener.accept()
    before = await engine.transport.stats()
    started = time.monotonic()
    digest, n = hashlib.sha256(), 0
    while data := await conn.read(1 << 20):
        digest.update(data)
        n += len(data)
    seconds = time.monotonic() - started
    after = await engine.transport.stats()
    await conn.close()
    await task
    await listener.close()
    return {"bytes": n, "sha256": digest.hexdigest(), "seconds": seconds,
            "kernel": seen.get("kernel", []), "tcpi_options": seen.get("tcpi_options"),
            "stats": (before, after)}


async def engine_to_kernel(engine, nic: VirtualNic, chunks: list[bytes], port: int) -> dict:
    """The engine connects to a Linux server on ``port`` and sends ``chunks``, then
    closes; Linux reads to the FIN.  Same results as :func:`kernel_to_engine`."""
    seen: dict = {}
    server = _kernel_socket(nic.netns)
    server.bind((KERNEL, port))
    server.listen()

    def receiver() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            digest, n = hashlib.sha256(), 0
            while data := conn.recv(1 << 20):
                digest.update(data)
                n += len(data)
                if "kernel" not in seen and n > sum(map(len, chunks)) // 2:
                    seen["kernel"] = [s for s in kernel_sockets(nic.netns)
                                      if s.local[1] == port and s.state != "LISTEN"]
                    seen["tcpi_options"] = tcpi_options(conn)
            seen["sha256"], seen["bytes"] = digest.hexdigest(), n

    task = asyncio.create_task(asyncio.to_thread(receiver))
    conn = await engine.connect(KERNEL, port)
    before = await engine.transport.stats()
    started = time.monotonic()
    for chunk in chunks:
        conn.write(chunk)
        await conn.drain()
    await conn.close()
    await task
    seconds = time.monotonic() - started
    after = await engine.transport.stats()
    server.close()
    return {"bytes": seen["bytes"], "sha256": seen["sha256"], "seconds": seconds,
            "kernel": seen.get("kernel", []), "tcpi_options": seen.get("tcpi_options"),
            "stats": (before, after)}


def _rate(before: dict, after: dict) -> float:
    return (after["cycles"] - before["cycles"]) / max(1, after["ns"] - before["ns"]) * 1e9


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _idle(nic: VirtualNic, seconds: float) -> dict:
    engine = await open_engine(str(nic.socket))
    await asyncio.sleep(0.5)
    before, cpu0 = await engine.transport.stats(), _cpu_seconds(nic.process.pid)
    await asyncio.sleep(seconds)
    after, cpu1 = await engine.transport.stats(), _cpu_seconds(nic.process.pid)
    await engine.transport.close()
    return {"cycles_per_second": round(_rate(before, after)),
            "cpu_fraction": round((cpu1 - cpu0) / seconds, 3)}


async def _setup_rate(nic: VirtualNic, count: int, port: int) -> dict:
    engine = await open_engine(str(nic.socket))
    syn_cycle: list[int] = []
    handshake: list[int] = []

    def record(rec) -> None:
        view = trace_layout.from_bits(rec.bits)
        if view.before == TcpState.LISTEN and view.after == TcpState.SYN_RECEIVED:
            syn_cycle.append(rec.cycle)
        elif view.before == TcpState.SYN_RECEIVED and view.after == TcpState.ESTABLISHED:
            if syn_cycle:
                handshake.append(rec.cycle - syn_cycle.pop(0))

    engine.transport.subscribe_trace(record)
    listener = await engine.listen(port, backlog=16)

    def clients() -> None:
        for _ in range(count):
            with _kernel_socket(nic.netns) as sock:
                sock.connect((ENGINE, port))
                sock.shutdown(socket.SHUT_WR)
                sock.recv(1)

    async def server() -> None:
        for _ in range(count):
            conn = await listener.accept()
            await conn.read()
            await conn.close()

    before = await engine.transport.stats()
    started = time.monotonic()
    await asyncio.gather(asyncio.to_thread(clients), server())
    seconds = time.monotonic() - started
    after = await engine.transport.stats()
    await engine.transport.close()
    handshake.sort()
    return {
        "connections": count,
        "seconds": round(seconds, 3),
        "connections_per_second": round(count / seconds, 1),
        "cycles_per_connection": round((after["cycles"] - before["cycles"]) / count),
        "handshake_cycles_median": handshake[len(handshake) // 2] if handshake else None,
        "note": "cycles_per_connection: engine cycles elapsed per connection (open, "
                "data, close; the clock runs while waiting for Linux and the driver). "
                "handshake_cycles: SYN processed (LISTEN -> SYN-RECEIVED) to the final "
                "ACK processed (-> ESTABLISHED), including Linux's turn-around.",
    }


def run_vnic_benchmarks(size_mib: int = 64, connections: int = 200,
                        idle_seconds: float = 3.0) -> dict:
    """All virtual-NIC figures as a JSON-ready dict."""
    results: dict = {"host_cpus": os.cpu_count()}
    tag = f"toeb{os.getpid()}"
    with VirtualNic(netns=tag, busy_poll=True) as nic:
        results["idle_busy_poll"] = asyncio.run(_idle(nic, idle_seconds))
    with VirtualNic(netns=tag) as nic:
        results["idle_sleeping"] = asyncio.run(_idle(nic, idle_seconds))
        chunks = bulk_data(size_mib << 20)
        expected = hashlib.sha256(b"".join(chunks)).hexdigest()

        async def bulk() -> dict:
            engine = await open_engine(str(nic.socket))
            up = await kernel_to_engine(engine, nic, chunks, 9000)
            down = await engine_to_kernel(engine, nic, chunks, 9001)
            await engine.transport.close()
            return {"kernel_to_engine": up, "engine_to_kernel": down}

        for way, result in asyncio.run(bulk()).items():
            if result["sha256"] != expected or result["bytes"] != size_mib << 20:
                raise RuntimeError(f"bulk {way}: the data arrived damaged")
            results[way] = {
                "bytes": result["bytes"],
                "seconds": round(result["seconds"], 3),
                "goodput_mbit_s": round(result["bytes"] * 8 / result["seconds"] / 1e6, 1),
                "cycles_per_second": round(_rate(*result["stats"])),
                "sha256_ok": True,
            }
        results["setup"] = asyncio.run(_setup_rate(nic, connections, 7100))
    return results
