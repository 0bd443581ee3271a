"""The demo, as a cocotb test: a scapy peer and the engine on one simulated link.

The peer (10.0.0.1) and the engine (10.0.0.2) exchange ARP, ping and a TCP SYN to a
closed port.  Every frame is printed with its simulated time as it crosses the link, and
written to ``demo.txt`` and ``demo.pcapng`` in the artefacts directory.
"""

import os
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge
from scapy.layers.l2 import Ether

from hdl.csr import COUNTER_BASE, COUNTERS
from sim.decode import describe
from sim.peer import Peer
from sim.testbench import MacTestbench, artifacts_path

TICK_CYCLES = 100  # 1 us of engine time = 100 cycles of 10 ns: real time


class Narrator:
    """Prints the frames that crossed the link, in the order they started, whenever the
    demo reaches a new step (no per-cycle work)."""

    def __init__(self, tb: MacTestbench, path: Path):
        self.tb = tb
        self.lines: list[str] = []
        self.path = path
        self.seen_in = 0
        self.seen_out = 0

    def say(self, text: str, time_ns: float | None = None) -> None:
        time_ns = self.tb.now_ns if time_ns is None else time_ns
        line = f"{time_ns / 1000:10.3f} us  {text}"
        self.lines.append(line)
        print(line, flush=True)

    def heading(self, text: str) -> None:
        self.catch_up()
        self.lines.append("")
        self.lines.append(f"== {text}")
        print(f"\n== {text}", flush=True)

    def catch_up(self) -> None:
        """Print every frame completed since the last call, in the order they started."""
        tb = self.tb
        done_in = [f for f in tb.injected if f.end_ns is not None]
        sent = tb.sent
        news = [(f.start_ns, "peer   -> engine", Ether(f.data)) for f in done_in[self.seen_in:]]
        news += [(f.time_ns, "engine -> peer  ", f.ether) for f in sent[self.seen_out:]]
        self.seen_in, self.seen_out = len(done_in), len(sent)
        for time_ns, direction, frame in sorted(news, key=lambda n: n[0]):
            self.say(f"{direction}  {describe(frame)}", time_ns)

    def save(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


@cocotb.test()
async def demo(dut):
    """ARP resolution both ways, a ping, and a SYN to a closed port answered by RST."""
    tb = MacTestbench(dut, tick_cycles=TICK_CYCLES)
    peer = Peer(tb.config)
    out = artifacts_path()
    narrator = Narrator(tb, out / "demo.txt")
    narrator.heading(
        f"engine {peer.engine_ip} ({peer.engine_mac}), "
        f"peer {peer.ip} ({peer.mac}), {tb.config.data_bytes} bytes per beat"
    )
    await tb.reset()

    narrator.heading("start: the engine announces its address (RFC 5227)")
    await tb.recv(timeout_ns=50_000)

    narrator.heading("ARP: the engine resolves the peer for transmit")
    lookup = cocotb.start_soon(tb.arp_lookup(0x0A000001))
    await tb.recv(timeout_ns=50_000)
    tb.send(peer.arp_reply_to_engine())
    ok, mac = await lookup
    narrator.catch_up()
    narrator.say(f"host   lookup 10.0.0.1 -> {'ok' if ok else 'failed'} {mac:012x}")

    narrator.heading("ARP: the peer resolves the engine")
    tb.send(peer.arp_request())
    await tb.recv(timeout_ns=50_000)

    narrator.heading("ping: ICMP echo request and reply")
    for seq in (1, 2):
        tb.send(peer.ping(b"hello from the peer " * 2, seq=seq))
        await tb.recv(timeout_ns=50_000)

    narrator.heading("TCP: a SYN to port 80, where nothing listens, is refused with RST")
    tb.send(
        peer.tcp(
            flags="S",
            seq=1000,
            window=64240,
            options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)],
        )
    )
    await tb.recv(timeout_ns=50_000)
    narrator.heading("TCP: a stray ACK gets RST with SEQ=SEG.ACK; a RST is never answered")
    tb.send(peer.tcp(flags="A", seq=5000, ack=123456))
    await tb.recv(timeout_ns=50_000)
    tb.send(peer.tcp(flags="R", seq=5000))
    await tb.wait_sent()
    await tb.wait_ns(5_000)
    await RisingEdge(tb.clk)
    await RisingEdge(tb.clk)
    narrator.catch_up()

    narrator.heading("counters")
    values = {name: await tb.csr_read(COUNTER_BASE + i) for i, name in enumerate(COUNTERS)}
    narrator.lines.append("  " + "  ".join(f"{k}={v}" for k, v in values.items() if v))
    print(narrator.lines[-1], flush=True)
    pcap = await tb.finish("demo")
    narrator.lines.append("")
    narrator.lines.append(f"pcap: {pcap}")
    narrator.save()
    if os.environ.get("TOE_DEMO_STRICT"):
        assert values["tx_icmp"] == 2 and values["tx_tcp_rst"] == 2
