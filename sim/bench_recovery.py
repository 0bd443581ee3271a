"""Loss recovery in clock cycles, as a cocotb test (run by sim/bench.py; issue 11's
recovery bench, docs/congestion.md).

The engine sends a bulk transfer at MSS 1000 to a scripted peer that agreed SACK.  The
peer first ACKs every segment in order until 20 are in flight; then three segments of
one window are lost, and the peer answers every later segment with a duplicate ACK
whose SACK blocks say what it holds (the latest first, RFC 2018 s4); then one ACK of
everything ends the recovery.  Measured, each from the last byte of the ACK in to the
first byte of the engine's answer out:

- ``ack_to_new_segment``: an ACK in order, to the new segment it lets go (the output
  routine outside recovery, the baseline);
- ``limited_transmit``: the first and second duplicate ACKs, to the new segment each
  lets go (RFC 3042);
- ``fast_retransmit``: the third duplicate ACK, to the retransmission of the first hole
  (RFC 5681 s3.2);
- ``sack_hole``: a duplicate ACK in recovery whose SACK blocks leave cwnd - pipe room
  for the next hole, to that hole (RFC 6675 s5 (C): merging the blocks, the pipe steps,
  the hole search);
- ``full_ack``: the ACK of everything, which ends the recovery, to the new data it
  lets go.

Also which segments went again (each lost one once, no other) and the counters.
Every figure is a count of simulated cycles of the 10 ns bench clock.  Results go to
``bench_recovery.json``.
"""

import json
from statistics import median

import cocotb
from cocotb.triggers import Timer
from scapy.layers.inet import TCP
from scapy.layers.l2 import ARP

from toe.hdl.csr import COUNTER_BASE, COUNTERS
from toe.hdl.host_if import CommandOp, EventKind, SocketOption
from toe.sim.host_port import HostPort
from toe.sim.peer import sack_runs, tcp_payload
from toe.sim.tcp_peer import ScriptedPeer
from toe.sim.testbench import MacTestbench, artifacts_path

CLOCK_NS = 10
MSS = 1000
PORT = 80
LOST = (2, 5, 8)  # positions in the window of 20 whose first copies are lost


def cycles(ns: float) -> int:
    return round(ns / CLOCK_NS)


class _Recovery:
    def __init__(self, tb: MacTestbench, peer: ScriptedPeer, base: int):
        self.tb, self.peer, self.base = tb, peer, base
        self.highest = -1  # the highest segment sent so far
        self.resent: list[int] = []

    def index(self, seq: int) -> int:
        return ((seq - self.base) % 2**32) // MSS

    def seq(self, k: int) -> int:
        return (self.base + k * MSS) % 2**32

    async def answer(self, ack: int, blocks=(), quiet_ns: float = 3_000):
        """Send an ACK of segment ``ack`` with SACK ``blocks`` (segment ranges); return
        the segments (indices) the engine sent for it and the cycles to the first."""
        options = [("SAck", tuple(x for s, e in blocks for x in (self.seq(s), self.seq(e))))
                   ] if blocks else []
        first_out = len(self.tb.sent)
        ack_in = self.tb.send(self.peer.segment("A", ack=self.seq(ack), options=options))
        await Timer(quiet_ns, "ns")
        while True:  # until the engine has been quiet for ``quiet_ns``
            count = len(self.tb.sent)
            await Timer(quiet_ns, "ns")
            if len(self.tb.sent) == count:
                break
        out = [f for f in self.tb.sent[first_out:]
               if TCP in f.ether and tcp_payload(f.ether)]
        segs = []
        for f in out:
            k = self.index(f.ether[TCP].seq)
            if k <= self.highest:
                self.resent.append(k)
            self.highest = max(self.highest, k)
            segs.append(k)
        latency = cycles(out[0].time_ns - ack_in.end_ns) if out else None
        return segs, latency


async def _counters(tb) -> dict[str, int]:
    return {name: await tb.csr_read(COUNTER_BASE + i) for i, name in enumerate(COUNTERS)}


@cocotb.test()
async def bench_recovery(dut):
    """One recovery from three losses in a window of 20, with SACK."""
    tb = MacTestbench(dut, tick_cycles=100)
    host = HostPort(dut, tb.config)
    await tb.reset()
    assert ARP in (await tb.recv(timeout_ns=50_000)).ether
    host.command(CommandOp.LISTEN, port=PORT, value=4, tag=1)
    await host.event(EventKind.LISTENING)
    peer = ScriptedPeer(tb.config, port=45000, engine_port=PORT, isn=1234)
    tb.send(peer.segment("S", options=[("MSS", MSS), ("SAckOK", b"")]))
    synack = await tb.recv(timeout_ns=1_000_000)
    peer.take(synack.ether)
    tb.send(peer.segment("A"))
    conn = (await host.event(EventKind.ACCEPTED)).conn
    host.command(CommandOp.ACCEPT, conn=conn)
    host.command(CommandOp.SET_OPTION, conn=conn, port=SocketOption.NODELAY.value, value=1)
    r = _Recovery(tb, peer, (synack.ether[TCP].seq + 1) % 2**32)
    before = await _counters(tb)
    for _ in range(60):  # one write per segment's worth, as the driver does
        host.write(conn, bytes(MSS))
    await Timer(100_000, "ns")
    assert any(TCP in f.ether and tcp_payload(f.ether) for f in tb.sent), "no data sent"
    for f in tb.sent:
        if TCP in f.ether and tcp_payload(f.ether):
            r.highest = max(r.highest, r.index(f.ether[TCP].seq))
    results = {"data_bytes": tb.config.data_bytes, "clock_ns": CLOCK_NS, "mss": MSS,
               "initial_flight": r.highest + 1}

    # Slow start: each ACK in order lets new segments go, until 20 are in flight.
    acked, in_order = 0, []
    while r.highest + 1 - acked < 20:
        assert acked <= r.highest, f"the engine sent nothing beyond segment {r.highest}"
        acked += 1
        segs, latency = await r.answer(acked)
        if latency is not None:
            in_order.append(latency)
    results["ack_to_new_segment_cycles"] = {"median": median(in_order), "max": max(in_order),
                                            "samples": len(in_order)}

    # One window of 20 from ``una``; three of its segments are lost.
    una = acked
    window = list(range(una, una + 20))
    lost = {una + k for k in LOST}
    held: list[int] = []
    dupacks, figures = 0, {"limited_transmit": [], "sack_hole": []}
    cum = una
    for k in window:
        if k in lost:
            continue
        if k == cum:
            cum += 1
            segs, latency = await r.answer(cum)
            continue
        held.append(k)
        segs, latency = await r.answer(cum, sack_runs(held, k)[:4])
        dupacks += 1
        if dupacks < 3 and segs:
            figures["limited_transmit"].append(latency)
        elif dupacks == 3:
            assert segs and segs[0] == cum, f"no fast retransmit: {segs}"
            figures["fast_retransmit"] = latency
        elif segs and segs[0] in lost:
            figures["sack_hole"].append(latency)
    first_round = sorted(set(r.resent))

    # The peer gets the retransmissions and every segment sent meanwhile: one ACK of
    # everything ends the recovery (RFC 6582 s3.2 step 3).
    segs, full_ack = await r.answer(r.highest + 1)
    after = await _counters(tb)
    delta = {name: (after[name] - before[name]) % 2**32 for name in after
             if after[name] != before[name]}
    results.update({
        "lost": [k - una for k in sorted(lost)],
        "limited_transmit_cycles": figures["limited_transmit"],
        "fast_retransmit_cycles": figures.get("fast_retransmit"),
        "sack_hole_cycles": figures["sack_hole"],
        "full_ack_to_new_segment_cycles": full_ack,
        "holes_resent_in_first_round_trip": [k - una for k in first_round],
        "segments_resent": [k - una for k in r.resent],
        "counters": {name: delta.get(name, 0) for name in (
            "tcp_fast_retransmits", "tcp_sack_rexmits", "tcp_retransmits")},
    })
    (artifacts_path() / "bench_recovery.json").write_text(json.dumps(results, indent=2) + "\n")
    await tb.finish("bench_recovery")
