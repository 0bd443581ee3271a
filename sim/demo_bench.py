"""The demo, as a cocotb test: a scapy peer and the engine on one simulated link.

The peer (10.0.0.1) and the engine (10.0.0.2) exchange ARP and ping, then a whole TCP
connection: the engine's application (written with the host driver, :mod:`host.api`)
connects to the peer's port 80 -- three-way handshake, a request, a response, a
half-close by the engine while the peer's data keeps flowing, the peer's close, TIME-WAIT
and CLOSED -- with both ends' states printed beside each segment.  A SYN to a closed port
ends the demo.  Everything is written to ``demo.txt`` and ``demo.pcapng``.
"""

import os
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge
from scapy.layers.l2 import Ether

from toe.hdl.csr import COUNTER_BASE, COUNTERS
from toe.host.api import Engine
from toe.sim.decode import describe
from toe.sim.host_port import HostPort
from toe.sim.host_transport import CocotbTransport
from toe.sim.peer import Peer
from toe.sim.state_coverage import TraceMonitor
from toe.sim.tcp_peer import ScriptedPeer
from toe.sim.testbench import MacTestbench, artifacts_path

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
        self.engine_states: list[tuple[float, str]] = []  # (time, state after an event)
        self.peer_states: list[tuple[float, str]] = []
        self.show_states = False

    def peer_state(self, state: str) -> None:
        self.peer_states.append((self.tb.now_ns, state))

    @staticmethod
    def _state_at(history, time_ns: float) -> str:
        state = "-"
        for when, value in history:
            if when <= time_ns:
                state = value
        return state

    def _states(self, time_ns: float, inbound: bool) -> str:
        if not self.show_states:
            return ""
        # Each end is shown in the state the segment leaves it in: the engine takes a
        # few hundred ns to process a segment; the scripted peer changes state as it
        # sends or right after it receives.
        engine = self._state_at(self.engine_states, time_ns + (1_000 if inbound else 0))
        peer = self._state_at(self.peer_states, time_ns + 200)
        return f"   [engine {engine:<12} peer {peer}]"

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
        news = [(f.start_ns, "peer   -> engine", Ether(f.data), True)
                for f in done_in[self.seen_in:]]
        news += [(f.time_ns, "engine -> peer  ", f.ether, False) for f in sent[self.seen_out:]]
        self.seen_in, self.seen_out = len(done_in), len(sent)
        for time_ns, direction, frame, inbound in sorted(news, key=lambda n: n[0]):
            self.say(f"{direction}  {describe(frame)}{self._states(time_ns, inbound)}", time_ns)

    def save(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")


class _EngineStates(list):
    """Collects the engine's traced transitions with their times for the narrator."""

    def __init__(self, narrator: Narrator, tb: MacTestbench):
        super().__init__()
        self.narrator = narrator
        self.tb = tb

    def append(self, transition) -> None:
        super().append(transition)
        if transition.before != transition.after or not self.narrator.engine_states:
            self.narrator.engine_states.append((self.tb.now_ns, transition.after))


@cocotb.test()
async def demo(dut):
    """ARP and ping, then a TCP connection from open to CLOSED, then a refused SYN."""
    tb = MacTestbench(dut, tick_cycles=TICK_CYCLES)
    config = tb.config
    host = HostPort(dut, config)
    peer = Peer(config)
    out = artifacts_path()
    narrator = Narrator(tb, out / "demo.txt")
    TraceMonitor(dut, _EngineStates(narrator, tb))
    narrator.heading(
        f"engine {peer.engine_ip} ({peer.engine_mac}), "
        f"peer {peer.ip} ({peer.mac}), {config.data_bytes} bytes per beat"
    )
    await tb.reset()

    narrator.heading("start: the engine announces its address (RFC 5227)")
    await tb.recv(timeout_ns=50_000)

    narrator.heading("ARP: the peer resolves the engine")
    tb.send(peer.arp_request())
    await tb.recv(timeout_ns=50_000)

    narrator.heading("ping: ICMP echo request and reply")
    tb.send(peer.ping(b"hello from the peer " * 2, seq=1))
    await tb.recv(timeout_ns=50_000)

    # -- A whole connection -------------------------------------------------------------
    narrator.catch_up()
    narrator.show_states = True
    engine = Engine(CocotbTransport(host, tb), config)
    await engine.write_keys()  # random ISN and lookup-hash keys (RFC 6528, MUST-9)
    remote = ScriptedPeer(config, port=80, engine_port=50000, isn=300_000, window=8192)
    narrator.peer_state("LISTEN")
    narrator.heading("TCP open: the application calls connect(10.0.0.1, 80); ARP resolves "
                     "the next hop, then the three-way handshake (RFC 9293 s3.5)")
    connecting = cocotb.start_soon(engine.connect(peer.ip, 80, local_port=50000))
    while True:
        frame = (await tb.recv(timeout_ns=1_000_000)).ether
        if frame.haslayer("ARP"):
            tb.send(peer.arp_reply_to_engine())
            continue
        break
    syn = frame
    remote.take(syn)
    narrator.peer_state("SYN_RECEIVED")
    tb.send(remote.segment("SA", options=[("MSS", 1460)]))
    await tb.recv(timeout_ns=1_000_000)  # the ACK
    narrator.peer_state("ESTABLISHED")
    conn = await connecting

    narrator.heading("data both ways: a request from the engine, a response from the peer")
    request = b"GET /index.html HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n"
    conn.write(request)
    segment = await tb.recv(timeout_ns=1_000_000)
    remote.take(segment.ether)
    tb.send(remote.segment("A"))
    header = b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\n\r\n"
    tb.send(remote.segment("PA", header))
    await tb.recv(timeout_ns=1_000_000)  # ACK
    got = await conn.readexactly(len(header))

    narrator.heading("half-close: the application calls shutdown(); FIN from the engine, "
                     "while the peer's data keeps flowing (RFC 9293 s3.6)")
    await conn.shutdown()
    fin = await tb.recv(timeout_ns=1_000_000)
    remote.take(fin.ether)
    narrator.peer_state("CLOSE_WAIT")
    tb.send(remote.segment("A"))
    body_bytes = bytes(range(48, 48 + 60)) * 10
    for at in (0, 300):
        tb.send(remote.segment("PA", body_bytes[at : at + 300]))
        await tb.recv(timeout_ns=1_000_000)  # ACK
    got += await conn.readexactly(len(body_bytes))

    narrator.heading("the peer closes: FIN, ACK; the engine waits 2*MSL in TIME-WAIT "
                     f"(MSL set to {config.msl_us} us for the demo; RFC default 2 min)")
    narrator.peer_state("LAST_ACK")
    tb.send(remote.segment("FA"))
    await tb.recv(timeout_ns=1_000_000)  # ACK of the FIN
    narrator.peer_state("CLOSED")
    assert await conn.read() == b""  # end of the peer's stream
    await conn.close()
    await conn.wait_closed()
    narrator.catch_up()
    narrator.say(f"engine CLOSED after TIME-WAIT; the application read {len(got)} bytes "
                 f"{'intact' if got == header + body_bytes else 'CORRUPTED'}")
    narrator.show_states = False

    narrator.heading("TCP: a SYN to port 81, where nothing listens, is refused with RST")
    tb.send(peer.tcp(flags="S", seq=1000, dport=81, window=64240,
                     options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
    await tb.recv(timeout_ns=50_000)
    await tb.wait_sent()
    await tb.wait_ns(2_000)
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
        assert got == header + body_bytes
        assert values["tx_icmp"] == 1 and values["tx_tcp_rst"] == 1
        assert values["tcp_active_opens"] == 1
