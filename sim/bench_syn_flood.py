"""A SYN flood at the MAC's line rate, in clock cycles, as a cocotb test (run by
sim/bench.py; issue 12's absorption measurement, docs/defences.md).

Spoofed SYNs (random source addresses and ports, each with an MSS option: 58 bytes,
60 on the wire) go to a listening port one every ``period`` cycles.  At 8 bytes per beat
a minimum frame takes 84 bytes of wire time (60 + FCS 4 + preamble 8 + gap 12), 10.5
beats: a core clocked at exactly the line's beat rate (15.625 MHz for 1 Gbit/s) sees a
SYN every 10.5 cycles, and any faster core clock sees them further apart.  The figures:

- how many SYNs were answered (SYN cookies once the listener's 8 half-open places are
  taken) and how many dropped where (``drop_buffer_full``: the RX frame buffer was full),
  and the steady cycles per SYN the engine needs;
- whether an established connection's segments starve: one data segment of that
  connection among every ``data_every`` SYNs, the cycles from each segment's last byte
  in to its ACK out, against the same latency with no flood, and how many of its
  segments were dropped with the SYNs.

Every figure is a count of simulated cycles of the 10 ns bench clock.  Results go to
``bench_syn_flood.json``.
"""

import json

import cocotb
from cocotb.triggers import Timer
from scapy.layers.inet import TCP
from scapy.layers.l2 import ARP

from toe.hdl.csr import COUNTER_BASE, COUNTERS
from toe.hdl.host_if import CommandOp, EventKind, SocketOption
from toe.sim.host_port import HostPort
from toe.sim.peer import ip_str, mac_str, tcp_payload
from toe.sim.syn_flood import syn_frames
from toe.sim.tcp_peer import ScriptedPeer, flags_of
from toe.sim.testbench import MacTestbench, artifacts_path

CLOCK_NS = 10
PORT = 80
#: A SYN every 10.5 cycles: line rate for minimum frames at 8 bytes per beat.
LINE_RATE_PERIOD = 10.5


def cycles(ns: float) -> int:
    return round(ns / CLOCK_NS)


def spoofed_syns(config, count: int, seed: int) -> list[bytes]:
    """The virtual NIC's attacker's frames (``sim/syn_flood.py``) for this engine."""
    return syn_frames(count, ip_str(config.ip_addr), mac_str(config.mac_addr),
                      "02:00:00:00:de:ad", PORT, seed)


class _Flood:
    def __init__(self, tb: MacTestbench, host: HostPort):
        self.tb, self.host = tb, host

    async def counters(self) -> dict[str, int]:
        return {name: await self.tb.csr_read(COUNTER_BASE + i)
                for i, name in enumerate(COUNTERS)}

    async def drain(self, quiet_ns: float = 50_000) -> None:
        """Wait until the engine has sent nothing for ``quiet_ns``."""
        while True:
            count = len(self.tb.sent)
            await Timer(quiet_ns, "ns")
            if len(self.tb.sent) == count:
                return

    async def run(self, syns: list[bytes], period: float, data_peer=None, data_conn=None,
                  data_every: int = 0) -> dict:
        tb = self.tb
        before = await self.counters()
        first_out = len(tb.sent)
        start = tb.now_ns + 1_000
        injected = []
        data_sent = []  # (frame, seq) of each data segment of the established connection
        for k, frame in enumerate(syns):
            at = start + k * period * CLOCK_NS
            injected.append(tb.send(frame, at_ns=at))
            if data_every and k % data_every == data_every // 2:
                seg = data_peer.segment("PA", bytes([k & 0xFF]) * 500)
                data_sent.append((tb.send(seg, at_ns=at + period * CLOCK_NS / 2),
                                  seg[TCP].seq))
        await Timer(len(syns) * period * CLOCK_NS + 5_000, "ns")
        await self.drain()
        after = await self.counters()
        delta = {name: (after[name] - before[name]) % 2**32 for name in after
                 if after[name] != before[name]}
        out = tb.sent[first_out:]
        synacks = [f for f in out if TCP in f.ether and flags_of(f.ether) == "SA"]
        end_in = max(f.end_ns for f in injected)
        first_in = min(f.start_ns for f in injected)
        figures = {
            "syns": len(syns),
            "period_cycles": period,
            "offered_syns_per_cycle": round(1 / period, 4),
            "cycles_in": cycles(end_in - first_in) + 1,
            "synacks": len(synacks),
            "cookies_sent": delta.get("tcp_cookies_sent", 0),
            "half_open_synacks": delta.get("tcp_passive_opens", 0),
            "dropped_buffer_full": delta.get("drop_buffer_full", 0),
            "dropped_backlog": delta.get("tcp_backlog_drops", 0),
        }
        if synacks:
            span = cycles(synacks[-1].end_ns - first_in) + 1
            figures["cycles_first_syn_in_to_last_synack_out"] = span
            figures["answered_syns_per_cycle"] = round(len(synacks) / span, 4)
            figures["cycles_per_answered_syn"] = round(span / len(synacks), 2)
        if data_sent:
            acked, latencies, lost = self._data_acks(out, data_sent, data_peer)
            figures["data_segments"] = len(data_sent)
            figures["data_segments_acked"] = acked
            figures["data_segments_dropped"] = lost
            if latencies:
                latencies.sort()
                figures["data_ack_latency_cycles"] = {
                    "median": latencies[len(latencies) // 2], "max": latencies[-1]}
        figures["counters"] = delta
        return figures

    def _data_acks(self, out, data_sent, peer):
        """ACK latency of each data segment the engine took in order; the rest count as
        dropped (the buffer was full when they came)."""
        acks = [f for f in out if TCP in f.ether and f.ether[TCP].dport == peer.port
                and not tcp_payload(f.ether)]
        latencies, acked = [], 0
        for frame, seq in data_sent:
            end = (seq + 500) % 2**32
            after = [a for a in acks if a.time_ns >= frame.end_ns and a.ether[TCP].ack == end]
            if after:
                acked += 1
                latencies.append(cycles(after[0].time_ns - frame.end_ns))
        return acked, latencies, len(data_sent) - acked


@cocotb.test()
async def bench_syn_flood(dut):
    """SYNs at line rate and back to back, alone and beside an established connection."""
    tb = MacTestbench(dut, tick_cycles=100)
    host = HostPort(dut, tb.config)
    await tb.reset()
    assert ARP in (await tb.recv(timeout_ns=50_000)).ether
    flood = _Flood(tb, host)
    host.command(CommandOp.LISTEN, port=PORT, value=64, tag=1)
    await host.event(EventKind.LISTENING)
    w = tb.config.data_bytes
    results = {"data_bytes": w, "clock_ns": CLOCK_NS, "syn_frame_bytes": 60,
               "line_rate_period_cycles": LINE_RATE_PERIOD,
               "syn_backlog": tb.config.syn_backlog}

    # The established connection whose segments must not starve.
    peer = ScriptedPeer(tb.config, port=45000, engine_port=PORT, isn=1234)
    tb.send(peer.syn())
    synack = await tb.recv(timeout_ns=1_000_000)
    peer.take(synack.ether)
    tb.send(peer.segment("A"))
    accepted = await host.event(EventKind.ACCEPTED)
    conn = accepted.conn
    host.command(CommandOp.ACCEPT, conn=conn)
    host.command(CommandOp.CREDIT, conn=conn, value=1 << 24)
    host.command(CommandOp.SET_OPTION, conn=conn, port=SocketOption.QUICKACK.value, value=1)
    await flood.drain()

    # Latency of a data segment's ACK with nothing else going on.
    idle = []
    for k in range(5):
        seg = peer.segment("PA", bytes([k]) * 500)
        sent = tb.send(seg)
        while True:
            out = await tb.recv(timeout_ns=1_000_000)
            if TCP in out.ether and out.ether[TCP].ack == peer.snd_nxt:
                idle.append(cycles(out.time_ns - sent.end_ns))
                break
        await Timer(5_000, "ns")
    results["data_ack_latency_idle_cycles"] = sorted(idle)[len(idle) // 2]

    seed = 4987
    for name, period in (("line_rate", LINE_RATE_PERIOD), ("back_to_back", 8)):
        syns = spoofed_syns(tb.config, 1000, seed)
        seed += 1
        results[f"flood_{name}"] = await flood.run(syns, period)
    syns = spoofed_syns(tb.config, 1000, seed)
    got_before = len(host.received.get(conn, b""))
    results["flood_line_rate_with_data"] = await flood.run(
        syns, LINE_RATE_PERIOD, peer, conn, data_every=20)
    # The bytes that reached the host in order (the bench does not send again what the
    # buffer dropped; a real peer would).
    figures = results["flood_line_rate_with_data"]
    want = figures["data_segments"] * 500
    delivered = len(host.received.get(conn, b"")) - got_before
    figures["data_bytes_delivered_in_order"] = delivered
    figures["data_bytes_sent"] = want
    figures["offered_data_bytes_per_cycle"] = round(want / figures["cycles_in"], 3)
    figures["data_goodput_bytes_per_cycle"] = round(delivered / figures["cycles_in"], 3)
    (artifacts_path() / "bench_syn_flood.json").write_text(json.dumps(results, indent=2) + "\n")
    await tb.finish("bench_syn_flood")
