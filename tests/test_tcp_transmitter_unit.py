"""Unit test of hdl/tcp/transmitter.py: segment requests in, Ethernet/IPv4/TCP frames out.

The transmitter reads its payload from a real :class:`LaneRing` that the testbench fills
with random bytes first.  Every frame is reassembled from the beats (hdl/stream.py rules)
and parsed with scapy; the reference for each field is the request, the ring contents
(wrapped inside the connection's part) and the checksums scapy recomputes.
"""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth_helpers import beat_bytes, run
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig
from toe.hdl.proto import tcp
from toe.hdl.tcp.lane_ring import LaneRing
from toe.hdl.tcp.transmitter import TcpTransmitter

MAC = 0x02_00_00_00_00_02
IP_ADDR = 0x0A_00_00_02
MAX_PAYLOAD = 1460  # MTU 1500 - 40


class RingAndTransmitter(Elaboratable):
    """The TX ring (one part per connection) with its read port wired to the transmitter."""

    def __init__(self, config: ToeConfig):
        self.config = config
        self.ring = LaneRing(config.data_bytes, config.connections * config.tx_ring_bytes,
                             config.tx_ring_bytes)
        self.tx = TcpTransmitter(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ring = ring = self.ring
        m.submodules.tx = tx = self.tx
        ring.read_by(m, tx)
        return m


def make_requests(rng, config, count, lengths):
    """``count`` random requests; ``lengths`` are payload lengths that must appear."""
    part = config.tx_ring_bytes
    requests = []
    for k in range(count):
        mss_option = rng.random() < 0.25
        if k < len(lengths):
            length = lengths[k]
        else:
            length = rng.choice([rng.randint(0, 64), rng.randint(0, MAX_PAYLOAD)])
        if mss_option:
            length = min(length, MAX_PAYLOAD - 4)
        # Half the positions put the payload across the end of the ring part.
        pos = rng.getrandbits(32)
        if rng.random() < 0.5 and length:
            pos = (pos & ~(part - 1)) | (part - rng.randint(1, min(length, part)))
            pos &= 0xFFFF_FFFF
        requests.append({
            "conn": rng.randrange(config.connections),
            "eth_dst": rng.getrandbits(48) & ~(1 << 40),  # unicast
            "ip_dst": rng.getrandbits(32),
            "sport": rng.getrandbits(16),
            "dport": rng.getrandbits(16),
            "seq": rng.getrandbits(32),
            "ack": rng.getrandbits(32),
            "flags": rng.getrandbits(8),
            "window": rng.getrandbits(16),
            "mss_option": int(mss_option),
            "mss": rng.getrandbits(16),
            "payload_pos": pos,
            "payload_len": length,
        })
    return requests


def expected_payload(ring: bytes, config, req) -> bytes:
    part = config.tx_ring_bytes
    base = req["conn"] * part
    start = req["payload_pos"] % part
    return bytes(ring[base + (start + j) % part] for j in range(req["payload_len"]))


def check_frame(frame: bytes, req, ident: int, payload: bytes):
    """Every header field against the request (RFC 791 header, RFC 9293 s3.1 header,
    s3.7.1 MUST-14 MSS option), both checksums (RFC 1071) and the payload against the ring."""
    option_bytes = 4 if req["mss_option"] else 0
    assert len(frame) == 14 + 20 + 20 + option_bytes + req["payload_len"], "frame length"
    pkt = Ether(frame)
    assert pkt.dst == ":".join(f"{b:02x}" for b in req["eth_dst"].to_bytes(6, "big"))
    assert pkt.src == "02:00:00:00:00:02"
    assert pkt.type == 0x0800
    ip = pkt[IP]
    assert (ip.version, ip.ihl, ip.tos) == (4, 5, 0)
    assert ip.len == 40 + option_bytes + req["payload_len"]
    assert ip.id == ident
    assert int(ip.flags) == 2 and ip.frag == 0, "DF, no fragment offset"
    assert ip.ttl == 64 and ip.proto == 6
    assert int.from_bytes(bytes(map(int, ip.src.split("."))), "big") == IP_ADDR
    assert int.from_bytes(bytes(map(int, ip.dst.split("."))), "big") == req["ip_dst"]
    rebuilt = ip.copy()
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == ip.chksum, "IPv4 header checksum"
    assert reference_sum(frame[14:34]) == 0xFFFF
    seg = pkt[TCP]
    assert (seg.sport, seg.dport) == (req["sport"], req["dport"])
    assert (seg.seq, seg.ack) == (req["seq"], req["ack"])
    assert int(seg.flags) == req["flags"] and seg.reserved == 0
    assert seg.window == req["window"] and seg.urgptr == 0
    assert seg.dataofs == 5 + option_bytes // 4
    if req["mss_option"]:
        assert seg.options == [("MSS", req["mss"])]
    else:
        assert seg.options == []
    rebuilt = ip.copy()
    del rebuilt[TCP].chksum
    assert IP(bytes(rebuilt))[TCP].chksum == seg.chksum, "TCP checksum"
    tcp_bytes = frame[34:]
    pseudo = frame[26:34] + bytes([0, 6]) + len(tcp_bytes).to_bytes(2, "big")
    assert reference_sum(pseudo + tcp_bytes) == 0xFFFF
    assert bytes(seg.payload) == payload, "payload differs from the ring"


def run_transmitter(width, requests, *, ready_prob, gap_prob, seed, ring_bytes=2048):
    """Fill the ring, send ``requests`` under random backpressure (``ready_prob``) and
    random gaps between requests; check every frame.  Returns per-frame timings
    ``(payload_len, frame_beats, take_to_first_beat, first_to_last_beat)``."""
    config = ToeConfig(data_bytes=width, connections=4, tx_ring_bytes=ring_bytes,
                       rx_ring_bytes=2048)
    dut = RingAndTransmitter(config)
    rng = random.Random(seed)
    ring = rng.randbytes(config.connections * config.tx_ring_bytes)
    timings = []

    async def bench(ctx):
        tx, mem = dut.tx, dut.ring
        ctx.set(tx.mac_addr, MAC)
        ctx.set(tx.ip_addr, IP_ADDR)
        for addr in range(0, len(ring), width):
            ctx.set(mem.wr_addr, addr)
            ctx.set(mem.wr_data, int.from_bytes(ring[addr : addr + width], "little"))
            ctx.set(mem.wr_en, (1 << width) - 1)
            await ctx.tick()
        ctx.set(mem.wr_en, 0)

        queue = list(requests)
        in_flight = []  # (request, cycle taken)
        chunks = []
        frames = 0
        sent_count = 0
        stalled = None
        gap = 0
        cycle = 0
        first_beat = None
        while frames < len(requests):
            cycle += 1
            assert cycle < 200 * len(requests) * (1600 // width + 100), "stuck"
            offer = bool(queue) and gap == 0
            ctx.set(tx.segment.valid, int(offer))
            if queue:
                ctx.set(tx.segment.p, queue[0])
            ctx.set(tx.o.ready, int(rng.random() < ready_prob))
            _, _, s_ready, o_valid, o_ready, o_p, sent = await ctx.tick().sample(
                tx.segment.ready, tx.o.valid, tx.o.ready, tx.o.p, tx.sent)
            if gap:
                gap -= 1
            if offer and s_ready:
                in_flight.append((queue.pop(0), cycle))
                if rng.random() < gap_prob:
                    gap = rng.choice([1, 2, 5, 20])
            beat = (o_p.data, o_p.keep, o_p.last)
            if stalled is not None:
                assert o_valid and beat == stalled, "output changed while stalled"
            stalled = beat if o_valid and not o_ready else None
            if ready_prob == 1 and chunks:
                assert o_valid, "idle cycle inside a frame"
            assert sent == int(o_valid and o_ready and o_p.last), "sent strobe"
            sent_count += sent
            if not (o_valid and o_ready):
                continue
            assert in_flight, "a beat without a request"
            if not chunks:
                first_beat = cycle
            chunks.append(beat_bytes(o_p.data, o_p.keep, width))
            if o_p.last:
                req, taken = in_flight.pop(0)
                frame = b"".join(chunks)
                assert all(len(c) == width for c in chunks[:-1]), "partial beat before last"
                check_frame(frame, req, frames & 0xFFFF, expected_payload(ring, config, req))
                timings.append((req["payload_len"], len(chunks), first_beat - taken,
                                cycle - first_beat))
                chunks = []
                frames += 1
        assert sent_count == len(requests)
        # Nothing comes out without a request.
        ctx.set(tx.segment.valid, 0)
        for _ in range(5):
            _, _, o_valid = await ctx.tick().sample(tx.o.valid)
            assert not o_valid

    run(dut, bench)
    return timings


def edge_lengths(width):
    return [0, 1, max(0, width - 1), width, width + 1, MAX_PAYLOAD]


@pytest.mark.parametrize("width", [8, 64])
@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_frames_random(width, ready_prob):
    """Random requests, with random output backpressure or with ``o.ready`` always high:
    every field of RFC 791 (version, IHL, total length, identification counting frames,
    DF, TTL 64, protocol 6, header checksum) and RFC 9293 s3.1 (ports, SEQ, ACK, data
    offset, flags, window, urgent 0, checksum over pseudo-header, header and payload,
    RFC 1071), the MSS option of MUST-14 when requested, and the payload read from the
    connection's ring part, wrapping at its end.  The beat stream follows hdl/stream.py
    (payload stable while stalled, keep contiguous, one ``sent`` per frame); with
    ``o.ready`` always high a frame goes out one beat per cycle, no bubbles."""
    rng = random.Random(width * 10 + int(ready_prob * 10))
    config = ToeConfig(data_bytes=width, connections=4, tx_ring_bytes=2048,
                       rx_ring_bytes=2048)
    requests = make_requests(rng, config, 70, edge_lengths(width))
    timings = run_transmitter(width, requests, ready_prob=ready_prob, gap_prob=0.3,
                              seed=rng.getrandbits(32))
    if ready_prob == 1.0:
        for length, beats, latency, span in timings:
            assert span == beats - 1, "bubble inside a frame"
            # Pass 1 (ceil(L/W) reads) + the header sums and checksum folding.
            assert latency <= -(-length // width) + 9, f"latency {latency} for {length} B"


def test_frames_width1():
    """The byte-wide datapath (payload bytes alternate between the high and low halves
    of the checksum words, RFC 1071): fewer, mostly short segments, a 1460-byte one,
    half of them under backpressure."""
    rng = random.Random(1)
    config = ToeConfig(data_bytes=1, connections=4, tx_ring_bytes=2048, rx_ring_bytes=2048)
    requests = make_requests(rng, config, 60, edge_lengths(1) + [2, 3])
    for req in requests[8:]:
        req["payload_len"] = min(req["payload_len"], rng.randint(0, 80))
    timings = run_transmitter(1, requests[:30], ready_prob=1.0, gap_prob=0.3, seed=2)
    for length, beats, latency, span in timings:
        assert span == beats - 1, "bubble inside a frame"
        assert latency <= length + 9
    run_transmitter(1, requests[30:], ready_prob=0.5, gap_prob=0.3, seed=3)


@pytest.mark.parametrize("width", [1, 8, 64])
def test_converts_to_verilog(width):
    """The component elaborates and converts for the default configuration."""
    text = verilog.convert(TcpTransmitter(ToeConfig(data_bytes=width)), name="tcp_tx")
    assert "module tcp_tx" in text


def test_flags_constants_match_scapy():
    """The flag bits used in requests are those of RFC 9293 s3.1 (scapy's order)."""
    assert int(TCP(flags="S").flags) == tcp.SYN
    assert int(TCP(flags="A").flags) == tcp.ACK_FLAG
