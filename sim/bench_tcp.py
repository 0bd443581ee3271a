"""TCP measurements in clock cycles, as a cocotb test (run by sim/bench.py).

Bulk goodput of connections in both directions at MSS 1460, for one connection and for
16 interleaved ones, as bytes of payload per cycle and as a fraction of the ceiling that
framing sets (1460 payload bytes per ``ceil(1514 / W)`` beats); and latencies through the
engine, among them the ACK of a segment in order, out of order and filling a hole.
Every figure is a count of simulated cycles.  Results go to ``bench_tcp.json``.
"""

import json

import cocotb
from cocotb.triggers import Timer
from scapy.layers.inet import TCP
from scapy.layers.l2 import ARP

from toe.hdl.host_if import CommandOp, EventKind, SocketOption
from toe.sim.host_port import HostPort
from toe.sim.peer import tcp_payload
from toe.sim.tcp_peer import ScriptedPeer
from toe.sim.testbench import MacTestbench, artifacts_path

CLOCK_NS = 10
MSS = 1460


def cycles(ns: float) -> int:
    return round(ns / CLOCK_NS)


class _Bench:
    def __init__(self, tb: MacTestbench, host: HostPort):
        self.tb = tb
        self.host = host
        self.w = tb.config.data_bytes
        self.ceiling = MSS / -(-(MSS + 54) // self.w)

    async def tcp(self) -> object:
        while True:
            frame = (await self.tb.recv(timeout_ns=10_000_000)).ether
            if TCP in frame:
                return frame

    async def accept(self, peer: ScriptedPeer) -> tuple[int, int]:
        since = len(self.host.events)
        self.tb.send(peer.syn())
        synack = await self.tcp()
        peer.take(synack)
        self.tb.send(peer.segment("A"))
        conn = (await self.host.event(EventKind.ACCEPTED, since=since)).conn
        self.host.command(CommandOp.ACCEPT, conn=conn)
        self.host.command(CommandOp.CREDIT, conn=conn, value=1 << 30)
        return conn, (synack[TCP].seq + 1) % 2**32

    def figures(self, payload: int, span_ns: float) -> dict:
        span = cycles(span_ns) + 1
        return {
            "payload_bytes": payload,
            "cycles": span,
            "goodput_bytes_per_cycle": round(payload / span, 3),
            "ceiling_bytes_per_cycle": round(self.ceiling, 3),
            "efficiency": round(payload / span / self.ceiling, 4),
        }

    async def rx_bulk(self, peers, conns, segments: int) -> dict:
        """``segments`` full segments per connection, interleaved, back to back on the
        MAC; from the first beat in to the last payload byte on the host RX stream."""
        before = {c: len(self.host.received[c]) for c in conns}
        first = len(self.tb.injected)
        for _ in range(segments):
            for peer in peers:
                self.tb.send(peer.segment("A", bytes(MSS)))
        for conn in conns:
            await self.host.bytes_received(conn, before[conn] + segments * MSS,
                                           timeout_ns=100_000_000)
        start = self.tb.injected[first].start_ns
        end = max(t for t, c, _ in self.host.rx_log if c in conns)
        # Let the ACKs drain before the next measurement.
        await Timer(20_000, "ns")
        while self.tb.tx.get_nowait() is not None:
            pass
        return self.figures(segments * MSS * len(conns), end - start)

    async def tx_bulk(self, peers, conns, starts, segments: int) -> dict:
        """``segments * MSS`` bytes written per connection, in writes of one MSS,
        interleaved; the peers ACK every segment; from the first beat taken on the host
        TX stream to the end of the last data frame."""
        first_beat = len(self.host.tx_log)
        expect = dict(zip(conns, starts, strict=True))
        by_port = {p.port: (c, p) for c, p in zip(conns, peers, strict=True)}
        for _ in range(segments):  # one write per segment's worth, as the driver does
            for conn in conns:
                self.host.write(conn, bytes(MSS))
        done = {c: 0 for c in conns}
        last_end = 0.0
        while any(n < segments * MSS for n in done.values()):
            frame = await self.tb.recv(timeout_ns=100_000_000)
            ether = frame.ether
            if TCP not in ether or not tcp_payload(ether):
                continue
            conn, peer = by_port[ether[TCP].dport]
            if ether[TCP].seq != expect[conn]:
                continue
            length = len(tcp_payload(ether))
            done[conn] += length
            expect[conn] = (expect[conn] + length) % 2**32
            peer.rcv_nxt = expect[conn]
            self.tb.send(peer.segment("A"))
            last_end = frame.end_ns
        start = self.host.tx_log[first_beat]
        await Timer(20_000, "ns")
        return self.figures(segments * MSS * len(conns), last_end - start)


@cocotb.test()
async def bench_tcp(dut):
    """Bulk goodput both ways (1 and 16 connections) and latencies."""
    tb = MacTestbench(dut, tick_cycles=100)
    host = HostPort(dut, tb.config)
    await tb.reset()
    assert ARP in (await tb.recv(timeout_ns=50_000)).ether
    b = _Bench(tb, host)
    host.command(CommandOp.LISTEN, port=80, value=64, tag=1)
    await host.event(EventKind.LISTENING)
    results = {"data_bytes": b.w, "clock_ns": CLOCK_NS, "mss": MSS}

    peers = [ScriptedPeer(tb.config, port=45000 + k, isn=k * 7919) for k in range(16)]
    opened = [await b.accept(p) for p in peers]
    conns = [c for c, _ in opened]
    starts = [s for _, s in opened]

    results["rx_1_connection"] = await b.rx_bulk(peers[:1], conns[:1], 40)
    results["rx_16_connections"] = await b.rx_bulk(peers, conns, 3)
    results["tx_1_connection"] = await b.tx_bulk(peers[:1], conns[:1], starts[:1], 40)
    starts[0] = (starts[0] + 40 * MSS) % 2**32
    results["tx_16_connections"] = await b.tx_bulk(peers, conns, starts, 3)

    # Latencies on an idle engine.
    latency = {}
    peer, conn = peers[1], conns[1]
    tb.send(peer.segment("PA", b"q" * 100))
    got = len(host.received[conn]) + 100
    await host.bytes_received(conn, got)
    first_rx = min(t for t, c, _ in host.rx_log if c == conn and t >= tb.injected[-1].end_ns)
    latency["rx_last_byte_in_to_host_rx"] = cycles(first_rx - tb.injected[-1].end_ns)
    await Timer(20_000, "ns")
    while tb.tx.get_nowait() is not None:
        pass
    mark = len(host.tx_log)
    sent_before = len(tb.sent)
    host.write(conn, b"r" * 100)
    while True:
        frame = await tb.recv(timeout_ns=1_000_000)
        if TCP in frame.ether and tcp_payload(frame.ether):
            break
    latency["tx_host_first_byte_to_mac_tx"] = cycles(frame.time_ns - host.tx_log[mark])
    assert len(tb.sent) > sent_before
    syn = ScriptedPeer(tb.config, port=46000).syn()
    tb.send(syn)
    synack = None
    while synack is None:
        frame = await tb.recv(timeout_ns=1_000_000)
        if TCP in frame.ether and "S" in str(frame.ether[TCP].flags):
            synack = frame
    latency["syn_in_to_synack_out"] = cycles(synack.time_ns - tb.injected[-1].end_ns)
    results["latency_cycles"] = latency

    # ACKs: the last byte of a 100-byte segment in to the first byte of its ACK out, in
    # order (with QUICKACK: no delayed ACK), out of order (the duplicate ACK, the text
    # held) and filling the hole (RCV.NXT moves over the held text).
    peer, conn = peers[2], conns[2]
    host.command(CommandOp.SET_OPTION, conn=conn, port=SocketOption.QUICKACK.value, value=1)
    await Timer(20_000, "ns")

    async def ack_latency(frame) -> int:
        tb.send(frame)
        while True:
            out = await tb.recv(timeout_ns=1_000_000)
            if TCP in out.ether and not tcp_payload(out.ether):
                await Timer(20_000, "ns")
                return cycles(out.time_ns - tb.injected[-1].end_ns)

    acks = {"in_order": await ack_latency(peer.segment("PA", b"i" * 100))}
    hole = peer.snd_nxt
    acks["out_of_order"] = await ack_latency(peer.segment("PA", b"o" * 100, seq=hole + 100))
    acks["hole_fill"] = await ack_latency(peer.segment("PA", b"f" * 100, seq=hole))
    peer.snd_nxt = (hole + 200) % 2**32
    results["ack_latency_cycles"] = acks
    (artifacts_path() / "bench_tcp.json").write_text(json.dumps(results, indent=2) + "\n")
    await tb.finish("bench_tcp")
