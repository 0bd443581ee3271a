"""The congestion window over time, for a transfer on the virtual NIC (``toe cwnd-trace``).

The engine sends ``size`` bytes to a Linux socket over an impaired wire (loss by
default) while the driver reads the connection with ``Connection.tcp_info()`` (GET_INFO)
every ``interval`` seconds: cwnd, ssthresh, the bytes in flight and the retransmissions.
The samples go to a JSON file and an SVG: the textbook picture of slow start, the
sawtooth of congestion avoidance, and the drops at each fast retransmit or timeout.
"""

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path

from toe.host.socket_transport import open_engine

from .bench_vnic import KERNEL, bulk_data
from .netns import socket_in_netns
from .vnic import Impairment, VirtualNic

__all__ = ["trace_cwnd", "cwnd_svg"]


async def _transfer(engine, nic: VirtualNic, chunks, port: int, interval: float) -> dict:
    server = socket_in_netns(nic.netns)
    server.settimeout(120)
    server.bind((KERNEL, port))
    server.listen()
    got = {}

    def receiver() -> None:
        conn, _ = server.accept()
        with conn:
            digest, n = hashlib.sha256(), 0
            while data := conn.recv(1 << 20):
                digest.update(data)
                n += len(data)
            got["sha256"], got["bytes"] = digest.hexdigest(), n

    thread = threading.Thread(target=receiver, daemon=True)
    thread.start()
    conn = await engine.connect(KERNEL, port)
    samples, done = [], asyncio.Event()
    started = time.monotonic()

    async def sampler() -> None:
        while not done.is_set():
            info = await conn.tcp_info()
            samples.append({"t": round(time.monotonic() - started, 4), "cwnd": info.cwnd,
                            "ssthresh": info.ssthresh, "flight": info.flight,
                            "retransmits": info.retransmits, "srtt_us": info.srtt_us})
            await asyncio.sleep(interval)

    task = asyncio.create_task(sampler())
    for chunk in chunks:
        conn.write(chunk)
        await conn.drain()
    await conn.wait_acked()
    done.set()
    await task
    await conn.close()
    await asyncio.to_thread(thread.join, 120)
    server.close()
    return {"samples": samples, "seconds": round(time.monotonic() - started, 3), **got}


def trace_cwnd(size_mib: int = 4, loss: float = 0.01, interval: float = 0.005,
               seed: int = 7, tag: str = "toecw") -> dict:
    """Run the transfer; the samples and the transfer's figures, JSON-ready."""
    chunks = bulk_data(size_mib << 20)
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    with VirtualNic(netns=tag, impairment=Impairment(loss=loss, seed=seed)) as nic:
        async def scenario() -> dict:
            engine = await open_engine(str(nic.socket))
            before = await engine.transport.read_counters()
            out = await _transfer(engine, nic, chunks, 9300, interval)
            after = await engine.transport.read_counters()
            await engine.transport.close()
            out["engine"] = {c: after[c] - before[c] for c in
                             ("tcp_retransmits", "tcp_fast_retransmits", "tcp_sack_rexmits",
                              "tcp_ecn_reductions")}
            return out

        out = asyncio.run(scenario())
    if out.get("sha256") != expected:
        raise RuntimeError("the data arrived damaged")
    out.update(loss=loss, bytes=size_mib << 20, interval_s=interval)
    return out


def cwnd_svg(result: dict, width: int = 900, height: int = 360) -> str:
    """cwnd (blue), ssthresh (orange, dashed, where below the top), the bytes in
    flight (grey) and a red tick at each retransmission, against time."""
    samples = result["samples"]
    if not samples:
        raise ValueError("no samples")
    left, right, top, bottom = 70, 20, 30, 40
    t_max = max(s["t"] for s in samples) or 1.0
    y_max = max(max(s["cwnd"], s["flight"]) for s in samples) * 1.1 or 1

    def x(t):
        return left + (width - left - right) * t / t_max

    def y(v):
        return top + (height - top - bottom) * (1 - min(v, y_max) / y_max)

    def line(key, colour, dash=""):
        pts = " ".join(f"{x(s['t']):.1f},{y(s[key]):.1f}" for s in samples)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return (f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{extra} '
                f'points="{pts}"/>')

    ticks = []
    for before, now in zip(samples, samples[1:], strict=False):
        if now["retransmits"] > before["retransmits"]:
            ticks.append(f'<line x1="{x(now["t"]):.1f}" x2="{x(now["t"]):.1f}" '
                         f'y1="{height - bottom}" y2="{height - bottom - 8}" stroke="red"/>')
    axis = (f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
            f'y2="{height - bottom}" stroke="black"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>')
    labels = [f'<text x="{left - 6}" y="{y(v):.1f}" font-size="11" text-anchor="end">'
              f'{v // 1024} KiB</text>' for v in (0, y_max // 2, int(y_max / 1.1))]
    labels.append(f'<text x="{width - right}" y="{height - 8}" font-size="11" '
                  f'text-anchor="end">{t_max:.2f} s</text>')
    title = (f'cwnd (blue), ssthresh (orange), flight (grey), retransmissions (red): '
             f'{result["bytes"] >> 20} MiB at {result["loss"] * 100:g} % loss')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<text x="{left}" y="18" font-size="13">{title}</text>{axis}'
            + "".join(labels) + line("flight", "#999") + line("ssthresh", "#e08000", "5,4")
            + line("cwnd", "#1f5fbf") + "".join(ticks) + "</svg>\n")


def write_trace(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".svg").write_text(cwnd_svg(result))
