"""The demo with the Linux kernel as the peer, on the virtual NIC.

The engine runs as a virtual NIC (:mod:`sim.vnic`) on a TAP device in a namespace of its
own; Linux's TCP is the other end of the wire.  Two connections:

1. the engine's application connects to a Linux server, sends a request, half-closes,
   reads the answer that keeps flowing after its FIN, and ends in TIME-WAIT;
2. a Linux client connects to the engine's echo listener, sends, half-closes, reads the
   echo; Linux closed first, so Linux holds TIME-WAIT and the engine passes LAST-ACK.

Every segment is printed with both ends' states (inferred from the segments by
:mod:`sim.ladder`), then the engine's own trace (its state transitions, with the cycle
they happened in), the kernel's view (``ss``) and the engine's counters.  The capture and
one ladder diagram per connection are written next to the text.
"""

import asyncio
import socket
import time
from pathlib import Path

from toe.hdl.tcp.engine import TRACE_SOURCES, trace_layout
from toe.host.socket_transport import open_engine

from .cwnd_trace import trace_cwnd, write_trace
from .ladder import list_connections, render_ladder
from .netns import kernel_sockets, socket_in_netns
from .state_coverage import event_name
from .vnic import VirtualNic

__all__ = ["run_kernel_demo"]

ENGINE, KERNEL = "10.0.0.2", "10.0.0.1"
REQUEST = b"GET /time HTTP/1.0\r\nHost: 10.0.0.1\r\n\r\n"
ANSWER = [b"HTTP/1.0 200 OK\r\nContent-Length: 600\r\n\r\n", b"x" * 300, b"y" * 300]


def _kernel_server(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(30)
        request = b""
        while data := conn.recv(4096):  # up to the engine's FIN
            request += data
        for piece in ANSWER:  # the engine half-closed; its peer's data still flows
            conn.sendall(piece)
            time.sleep(0.02)


def _kernel_client(netns: str, result: list[bytes]) -> None:
    sock = socket_in_netns(netns)
    with sock:
        sock.settimeout(30)
        sock.connect((ENGINE, 7))
        sock.sendall(b"ping from Linux\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        result.append(data)


async def _engine_side(nic: VirtualNic, trace: list[str]) -> dict:
    engine = await open_engine(str(nic.socket))

    def record(rec) -> None:
        view = trace_layout.from_bits(rec.bits)
        before, after = view.before.name, view.after.name
        if before != after:
            event = event_name(TRACE_SOURCES[view.source], view.flags, bool(view.data), view.op,
                               bool(view.icmp))
            trace.append(f"  cycle {rec.cycle:>11,}  {rec.ns / 1e6:9.3f} ms  "
                         f"{before.replace('_', '-')} --{event}--> {after.replace('_', '-')}")

    engine.transport.subscribe_trace(record)
    server = socket_in_netns(nic.netns)
    server.bind((KERNEL, 80))
    server.listen()
    serving = asyncio.create_task(asyncio.to_thread(_kernel_server, server))
    trace.append("connection 1: the engine connects to Linux")
    conn = await engine.connect(KERNEL, 80)
    conn.write(REQUEST)
    await conn.shutdown()
    answer = await conn.read()
    await conn.close()
    await serving
    server.close()
    await asyncio.sleep(0.1)

    trace.append("connection 2: Linux connects to the engine's echo listener")
    listener = await engine.listen(7)
    echoed: list[bytes] = []
    client = asyncio.create_task(asyncio.to_thread(_kernel_client, nic.netns, echoed))
    peer = await listener.accept()
    peer.write(await peer.read())
    await peer.close()
    await peer.wait_closed()
    await client
    await asyncio.sleep(0.1)
    kernel_view = [f"  {s.state:<12} {s.local[0]}:{s.local[1]} -> {s.peer[0]}:{s.peer[1]}"
                   for s in kernel_sockets(nic.netns)]
    counters = await engine.transport.read_counters()
    await engine.transport.close()
    return {"answer": answer, "echo": echoed[0] if echoed else b"", "kernel": kernel_view,
            "counters": counters}


def run_kernel_demo(out_dir: Path) -> str:
    """Run the demo; write the capture and ladders to ``out_dir``; return the text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / "demo-kernel.pcap"
    trace: list[str] = []
    nic = VirtualNic(netns="toedemo", tap="toe0", pcap=pcap, socket=out_dir / "toe.sock")
    with nic:
        result = asyncio.run(asyncio.wait_for(_engine_side(nic, trace), 60))
    lines = [f"== engine {ENGINE} on a virtual NIC (TAP toe0 in namespace toedemo), "
             f"Linux {KERNEL} on the other end of the wire", ""]
    titles = ["the engine connects, sends a request, half-closes, reads the answer; "
              "it closed first: TIME-WAIT (RFC 9293 s3.5, s3.6)",
              "Linux connects to the engine's echo listener and half-closes; Linux closed "
              "first: the engine passes CLOSE-WAIT and LAST-ACK"]
    svgs = []
    for number, info in enumerate(list_connections(pcap)[:2]):
        c = info.connection
        oriented = ((c.ip_a, c.port_a, c.ip_b, c.port_b) if c.ip_a == ENGINE
                    else (c.ip_b, c.port_b, c.ip_a, c.port_a))
        svg = out_dir / f"demo-kernel-{number + 1}.svg"
        ladder = render_ladder(pcap, svg, connection=oriented, names=("engine", "Linux"))
        svgs.append(svg)
        lines.append(f"== connection {number + 1}: {titles[number]}")
        for row in ladder.rows:
            if row.kind == "summary":
                lines.append(f"  {'':>10}  {row.label}")
                continue
            arrow = "engine -> Linux " if row.direction == "A->B" else "Linux  -> engine"
            lines.append(f"  {row.time * 1e3:8.3f} ms  {arrow}  {row.label:<48} "
                         f"[engine {row.state_a:<12} Linux {row.state_b}]")
        lines.append("")
    lines.append("== the engine's own trace (state transitions, from its trace port)")
    lines += trace
    lines += ["", "== Linux's view (ss -tan in the namespace)", *result["kernel"], ""]
    counters = "  ".join(f"{k}={v}" for k, v in result["counters"].items() if v)
    lines += ["== engine counters", f"  {counters}", ""]
    ok = result["answer"] == b"".join(ANSWER) and result["echo"] == b"ping from Linux\n"
    # The congestion window of a transfer with loss (sim/cwnd_trace.py): slow start,
    # the cuts at each fast retransmit, congestion avoidance in between.
    cwnd = trace_cwnd(size_mib=2, loss=0.01, tag="toedemocw")
    write_trace(cwnd, out_dir / "cwnd.svg")
    top = max(s["cwnd"] for s in cwnd["samples"])
    lines += ["== the congestion window of 2 MiB engine -> Linux at 1 % frame loss",
              f"  {cwnd['seconds']:.2f} s, largest cwnd {top // 1024} KiB, "
              f"fast retransmits {cwnd['engine']['tcp_fast_retransmits']}, "
              f"timeouts {cwnd['engine']['tcp_retransmits']}", ""]
    lines.append(f"application data intact: {'yes' if ok else 'NO'}")
    lines.append(f"pcap: {pcap}")
    lines += [f"ladder: {svg}" for svg in svgs]
    lines.append(f"congestion window: {out_dir / 'cwnd.svg'}")
    text = "\n".join(lines) + "\n"
    (out_dir / "demo-kernel.txt").write_text(text)
    if not ok:
        raise RuntimeError("the demo's data arrived damaged\n" + text)
    return text
