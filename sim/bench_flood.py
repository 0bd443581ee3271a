"""A spoofed-source SYN flood against the engine on the virtual NIC (``toe bench-flood``).

What the engine's defences (SYN cookies, half-open limits: docs/defences.md) are worth
against Linux clients while a flood runs, in wall-clock time on this machine:

- a bulk transfer Linux -> engine, its connection opened before the flood, with and
  without the flood: goodput in wall time, and bytes per thousand engine cycles, which
  does not depend on how fast the host runs the simulation (the attacker, and Linux
  dropping the SYN-ACKs, take CPU from it);
- legitimate connects from Linux during the flood: each connects, sends 64 bytes, reads
  them back from the engine's echo and waits for the engine's FIN; the share that
  succeed, and their latency;
- the port right after the flood stops: seconds to the first connect that succeeds;
- where the flood's frames went: sent by the attacker, dropped by the TAP device before
  the virtual NIC read them (the kernel's ``tx_dropped`` on the TAP), taken by the
  engine, and the engine's SYN cookie counters.

The flood runs at three rates, each set from the engine's simulated clock as measured
during the clean transfer (the simulation runs at well under 1 MHz, so wall-clock rates
mean nothing to the engine):

- **paced**: one SYN per 84 cycles, the 1 Gbit/s slot of a minimum frame (84 bytes with
  preamble and gap) for a core at 125 MHz taking one byte per cycle;
- **heavy**: one SYN per 36 cycles, 80 % of what the engine can answer (29 cycles per
  cookie SYN-ACK at 8 bytes per beat);
- **max**: as fast as one Python process can send.  The engine then takes SYNs as fast
  as its simulated clock allows and the TAP device drops the rest, legitimate frames
  among them, before the virtual NIC reads them.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from toe.host.socket_transport import open_engine

from .bench_vnic import ENGINE, _rate, bulk_data
from .netns import socket_in_netns
from .vnic import VirtualNic

__all__ = ["run_flood_benchmarks", "connects_under_flood", "FRAME_SLOT_CYCLES", "SYN_CYCLES"]

#: Cycles per minimum-frame slot at 1 Gbit/s for a core at 125 MHz (84 bytes with
#: preamble and gap, one byte per cycle): the paced flood's rate, in simulated time.
FRAME_SLOT_CYCLES = 84

#: Cycles the engine takes per cookie SYN-ACK at 8 bytes per beat (docs/defences.md,
#: ``sim/bench_syn_flood.py``): the "heavy" flood offers one SYN per 1.25 of these.
SYN_CYCLES = 29

ECHO_PORT, BULK_PORT = 7, 9000
COUNTERS = ("tcp_passive_opens", "tcp_cookies_sent", "tcp_cookies_accepted",
            "tcp_cookies_invalid", "tcp_cookie_overflows", "tcp_backlog_drops",
            "tcp_established", "drop_buffer_full", "rx_tcp")


def _tap_dropped(nic: VirtualNic) -> int:
    out = nic.run_in_netns(["ip", "-j", "-s", "link", "show", nic.tap]).stdout
    return json.loads(out)[0]["stats64"]["tx"]["dropped"]


class _Flood:
    """The attacker: ``sim.syn_flood`` in its own process in the NIC's namespace."""

    def __init__(self, nic: VirtualNic, rate: float, seconds: float) -> None:
        self.nic, self.rate, self.seconds = nic, rate, seconds
        self.process: subprocess.Popen | None = None
        self.result: dict = {}

    def __enter__(self) -> "_Flood":
        self.process = self.nic.popen_in_netns(
            [sys.executable, "-m", "toe.sim.syn_flood", "--iface", self.nic.tap,
             "--dst", ENGINE, "--dst-mac", self.nic.engine_mac, "--port", str(ECHO_PORT),
             "--seconds", str(self.seconds), "--rate", str(self.rate)],
            stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "flooding":
            raise RuntimeError("the SYN flood did not start")
        return self

    def stop(self) -> dict:
        if self.result:
            return self.result
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        self.result = json.loads(out.strip().splitlines()[-1])
        return self.result

    def __exit__(self, *exc_info: object) -> None:
        if not self.result:
            self.stop()


def _client(netns: str, timeout: float) -> float | None:
    """One legitimate connection: connect, 64 bytes there and back, the engine's FIN,
    all within ``timeout`` seconds.  Returns the seconds it took, or None."""
    payload = os.urandom(64)
    started = time.monotonic()

    def left() -> float:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise TimeoutError
        return remaining

    try:
        with socket_in_netns(netns) as sock:
            sock.settimeout(left())
            sock.connect((ENGINE, ECHO_PORT))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                sock.settimeout(left())
                data = sock.recv(4096)
                if not data:
                    break
                got += data
        return time.monotonic() - started if got == payload else None
    except OSError:  # TimeoutError among them
        return None


async def _echo(engine, stop: asyncio.Event) -> int:
    """The engine's echo server on ECHO_PORT, each connection served concurrently, until
    ``stop``.  Returns the connections aborted at the end because their client was gone."""
    listener = await engine.listen(ECHO_PORT, backlog=16)

    async def serve(conn) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await conn.read(65536):
                conn.write(data)
                await conn.drain()
            await conn.close()

    tasks: dict[asyncio.Task, object] = {}
    accept = asyncio.create_task(listener.accept())
    waiting = asyncio.create_task(stop.wait())
    while True:
        done, _ = await asyncio.wait({accept, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if accept in done:
            conn = accept.result()
            task = asyncio.create_task(serve(conn))
            tasks[task] = conn
            task.add_done_callback(lambda t: tasks.pop(t, None))
            accept = asyncio.create_task(listener.accept())
        if waiting in done:
            break
    accept.cancel()
    # A client that gave up closed its socket, but its FIN or RST may have been among the
    # frames the TAP dropped: the engine's side then waits for data that will never come
    # (no keep-alive here).  Those connections are aborted and counted.
    stuck = 0
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=5.0)
        for task in pending:
            stuck += 1
            tasks[task].abort()
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await listener.close()
    return stuck


async def _bulk(engine, nic: VirtualNic, chunks: list[bytes], flood: dict | None,
                window: float) -> dict:
    """Linux sends ``chunks`` to the engine over a connection opened first.  With
    ``flood`` (``_Flood`` arguments) the flood starts once it is established and runs
    for the first ``window`` seconds of data (or to the end, if sooner): the goodput is
    the bytes delivered in that time.  The whole stream is checked, SHA-256."""
    opened = asyncio.Event()
    go = asyncio.Event()
    loop = asyncio.get_running_loop()

    def sender() -> None:
        with socket_in_netns(nic.netns) as sock:
            sock.settimeout(300)
            sock.connect((ENGINE, BULK_PORT))
            loop.call_soon_threadsafe(opened.set)
            while not go.is_set():
                time.sleep(0.01)
            for chunk in chunks:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)

    listener = await engine.listen(BULK_PORT)
    task = asyncio.create_task(asyncio.to_thread(sender))
    conn = await listener.accept()
    await opened.wait()
    digest, n = hashlib.sha256(), 0
    with contextlib.ExitStack() as stack:
        attacker = stack.enter_context(_Flood(nic, **flood)) if flood else None
        if attacker:
            await asyncio.sleep(1.0)  # the flood at full strength before the data starts
        tap0 = _tap_dropped(nic)
        before = await engine.transport.stats()
        go.set()
        started = time.monotonic()
        measured: list = []

        async def close_window() -> None:
            # The flood stops after ``window`` seconds of data, whether or not data is
            # flowing then (under the heaviest flood it may not be).
            await asyncio.sleep(window)
            measured[:] = [n, time.monotonic() - started, await engine.transport.stats()]
            await asyncio.to_thread(attacker.stop)

        closer = asyncio.create_task(close_window()) if attacker else None
        while data := await conn.read(1 << 20):
            digest.update(data)
            n += len(data)
        total_seconds = time.monotonic() - started
        if closer is not None:
            if not measured:  # still within the window: the flood was not stopped yet
                closer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closer  # past the window: let its stop() finish, never two at once
        if not measured:
            measured = [n, total_seconds, await engine.transport.stats()]
        sent = attacker.stop() if attacker else None
        tap1 = _tap_dropped(nic)
    await conn.close()
    await task
    await listener.close()
    if digest.hexdigest() != hashlib.sha256(b"".join(chunks)).hexdigest() \
            or n != sum(map(len, chunks)):
        raise RuntimeError("bulk transfer: the data arrived damaged")
    got, seconds, after = measured
    return {"bytes": got, "seconds": round(seconds, 3),
            "goodput_mbit_s": round(got * 8 / seconds / 1e6, 1),
            "cycles_per_second": round(_rate(before, after)),
            "bytes_per_kcycle": round(got / max(1, after["cycles"] - before["cycles"]) * 1000, 1),
            "flood": sent, "whole_transfer_seconds": round(total_seconds, 3),
            "tap_dropped": tap1 - tap0, "sha256_ok": True}


async def connects_under_flood(engine, nic: VirtualNic, flood: dict, clients: int, parallel: int,
                    timeout: float) -> dict:
    """``clients`` legitimate connects during a flood, then the port after it."""
    stop = asyncio.Event()
    server = asyncio.create_task(_echo(engine, stop))
    counters0 = await engine.transport.read_counters()
    stats0 = await engine.transport.stats()
    tap0 = _tap_dropped(nic)
    with _Flood(nic, **flood) as attacker:
        await asyncio.sleep(2.0)  # half-open table full, cookies going out
        with ThreadPoolExecutor(parallel) as pool:
            futures = [asyncio.wrap_future(pool.submit(_client, nic.netns, timeout))
                       for _ in range(clients)]
            latencies = await asyncio.gather(*futures)
        stats1 = await engine.transport.stats()
        sent = attacker.stop()
    tap1 = _tap_dropped(nic)
    counters1 = await engine.transport.read_counters()
    # The port after the flood: connect until one succeeds.
    stopped = time.monotonic()
    after = None
    for _ in range(20):
        if await asyncio.to_thread(_client, nic.netns, 5.0) is not None:
            after = round(time.monotonic() - stopped, 3)
            break
    stop.set()
    stuck = await server
    ok = sorted(t for t in latencies if t is not None)
    frames_in = stats1["frames_in"] - stats0["frames_in"]
    return {
        "flood": sent,
        "tap_dropped": tap1 - tap0,
        "tap_dropped_share": round((tap1 - tap0) / max(1, sent["sent"]), 3),
        "frames_read_by_nic": frames_in,
        "engine_cycles_per_second": round(_rate(stats0, stats1)),
        "engine_cycles_per_frame":
            round((stats1["cycles"] - stats0["cycles"]) / max(1, frames_in), 1),
        "counters": {name: counters1[name] - counters0[name] for name in COUNTERS},
        "connects": clients,
        "connects_ok": len(ok),
        "connects_ok_share": round(len(ok) / clients, 3),
        "connect_seconds_median": round(ok[len(ok) // 2], 3) if ok else None,
        "connect_seconds_max": round(ok[-1], 3) if ok else None,
        "connects_over_1s": sum(t > 1.0 for t in ok),
        "port_usable_after_seconds": after,
        "engine_connections_aborted_at_end": stuck,
    }


def run_flood_benchmarks(size_mib: int = 16, clients: int = 200, parallel: int = 16,
                         timeout: float = 30.0, seconds: float = 3600.0,
                         window: float = 15.0, progress=None) -> dict:
    """Every figure of the module docstring as a JSON-ready dict; ``progress`` (a
    callable taking a line; default: print to stdout at once) hears of each phase."""
    if progress is None:
        def progress(line: str) -> None:
            print(line, flush=True)

    results: dict = {"host_cpus": os.cpu_count(), "clients": clients, "parallel": parallel,
                     "client_timeout_s": timeout, "frame_slot_cycles": FRAME_SLOT_CYCLES}
    chunks = bulk_data(size_mib << 20)
    with VirtualNic(netns=f"toef{os.getpid()}") as nic:

        async def scenario() -> None:
            engine = await open_engine(str(nic.socket))
            progress("bulk transfer, no flood")
            clean = await _bulk(engine, nic, chunks, None, window)
            results["bulk_clean"] = clean
            # The paced rate from the engine's simulated clock during a transfer.
            cycles = clean["cycles_per_second"]
            for name, rate in (("paced", cycles / FRAME_SLOT_CYCLES),
                               ("heavy", cycles / (1.25 * SYN_CYCLES)), ("max", 0.0)):
                flood = {"rate": round(rate), "seconds": seconds}
                progress(f"{name} flood ({'max' if not rate else round(rate)} SYN/s): "
                         f"bulk transfer")
                bulk = await _bulk(engine, nic, chunks, flood, window)
                bulk["goodput_ratio"] = round(bulk["goodput_mbit_s"] / clean["goodput_mbit_s"], 3)
                bulk["per_cycle_ratio"] = round(
                    bulk["bytes_per_kcycle"] / clean["bytes_per_kcycle"], 3)
                progress(f"{name} flood: {clients} connects")
                run = await connects_under_flood(engine, nic, flood, clients, parallel, timeout)
                results[f"flood_{name}"] = {"bulk": bulk, **run}
                progress(json.dumps(results[f"flood_{name}"]))
            await engine.transport.close()

        asyncio.run(scenario())
    return results
