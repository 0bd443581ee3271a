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
from toe.hdl.tcp.transmitter import MAX_HEADER_BYTES, TcpTransmitter

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


#: Every option combination a request can ask for (RFC 9293 s3.2, RFC 7323, RFC 2018):
#: SYN with each subset of timestamps, window scale and SACK-permitted; any other
#: segment with or without timestamps and 0..4 SACK blocks (4 with timestamps: 3 fit).
COMBOS = (
    [{"syn_options": 1, "ts_on": ts, "wscale_on": ws, "sack_permitted": sp, "sack_count": 0}
     for ts in (0, 1) for ws in (0, 1) for sp in (0, 1)]
    + [{"syn_options": 0, "ts_on": ts, "wscale_on": 0, "sack_permitted": 0, "sack_count": n}
       for ts in (0, 1) for n in range(tcp.MAX_SACK_BLOCKS + 1)]
)


def combo_of(req) -> tuple:
    if req["syn_options"]:
        return (1, req["ts_on"], req["wscale_on"], req["sack_permitted"])
    return (0, req["ts_on"], req["sack_count"])


def reference_options(req) -> bytes:
    """The option bytes the request asks for: :func:`hdl.proto.tcp.option_bytes`."""
    blocks = [(b["left"], b["right"]) for b in req["sack"][: req["sack_count"]]]
    return tcp.option_bytes(
        syn_options=bool(req["syn_options"]), mss=req["mss"],
        wscale_on=bool(req["wscale_on"]), wscale=req["wscale"],
        sack_permitted=bool(req["sack_permitted"]), ts_on=bool(req["ts_on"]),
        ts_val=req["ts_val"], ts_ecr=req["ts_ecr"], sack=blocks)


def scapy_options(req) -> list:
    """The options as scapy's parser lists them, written out independently."""
    nop = ("NOP", None)
    ts = [nop, nop, ("Timestamp", (req["ts_val"], req["ts_ecr"]))] if req["ts_on"] else []
    if req["syn_options"]:
        return ([("MSS", req["mss"])] + ts
                + ([nop, ("WScale", req["wscale"])] if req["wscale_on"] else [])
                + ([nop, nop, ("SAckOK", b"")] if req["sack_permitted"] else []))
    n = min(req["sack_count"], 3 if req["ts_on"] else 4)
    edges = tuple(e for b in req["sack"][:n] for e in (b["left"], b["right"]))
    return ts + ([nop, nop, ("SAck", edges)] if n else [])


def make_requests(rng, config, count, lengths):
    """``count`` random requests; ``lengths`` are payload lengths that must appear (cut
    to what fits the MTU beside the options).  The first ``len(COMBOS)`` requests take
    every option combination once, in random order; the fields a combination leaves
    unused hold random values, which the transmitter must ignore."""
    part = config.tx_ring_bytes
    combos = rng.sample(COMBOS, len(COMBOS))
    requests = []
    for k in range(count):
        combo = combos[k] if k < len(combos) else rng.choice(COMBOS)
        if k < len(lengths):
            length = lengths[k]
        else:
            length = rng.choice([rng.randint(0, 64), rng.randint(0, MAX_PAYLOAD)])
        req = {
            "conn": rng.randrange(config.connections),
            "eth_dst": rng.getrandbits(48) & ~(1 << 40),  # unicast
            "ip_dst": rng.getrandbits(32),
            "sport": rng.getrandbits(16),
            "dport": rng.getrandbits(16),
            "seq": rng.getrandbits(32),
            "ack": rng.getrandbits(32),
            "flags": rng.getrandbits(8),
            "window": rng.getrandbits(16),
            "ecn": rng.randrange(4),
            "ttl": rng.randint(1, 255),
            "dscp": rng.randrange(64),
            "mss": rng.getrandbits(16),
            "wscale": rng.randint(0, tcp.MAX_WSCALE),
            "ts_val": rng.getrandbits(32),
            "ts_ecr": rng.getrandbits(32),
            "sack": [{"left": rng.getrandbits(32), "right": rng.getrandbits(32)}
                     for _ in range(tcp.MAX_SACK_BLOCKS)],
            **combo,
        }
        if req["syn_options"]:  # ignored beside syn_options
            req["sack_count"] = rng.randint(0, tcp.MAX_SACK_BLOCKS)
        else:  # ignored without syn_options
            req["wscale_on"], req["sack_permitted"] = rng.getrandbits(1), rng.getrandbits(1)
        length = min(length, MAX_PAYLOAD - len(reference_options(req)))
        # Half the positions put the payload across the end of the ring part.
        pos = rng.getrandbits(32)
        if rng.random() < 0.5 and length:
            pos = (pos & ~(part - 1)) | (part - rng.randint(1, min(length, part)))
            pos &= 0xFFFF_FFFF
        req["payload_pos"], req["payload_len"] = pos, length
        requests.append(req)
    return requests


def expected_payload(ring: bytes, config, req) -> bytes:
    part = config.tx_ring_bytes
    base = req["conn"] * part
    start = req["payload_pos"] % part
    return bytes(ring[base + (start + j) % part] for j in range(req["payload_len"]))


def check_frame(frame: bytes, req, ident: int, payload: bytes):
    """Every header field against the request (RFC 791 header; RFC 9293 s3.1 header,
    data offset 5 + option words), the options byte for byte against
    :func:`hdl.proto.tcp.option_bytes` and as scapy parses them (MSS of RFC 9293 s3.2
    MUST-14/SHLD-5; window scale and timestamps of RFC 7323 s2.2 and s3.2;
    SACK-permitted and SACK blocks of RFC 2018 s2 and s3, at most 3 beside timestamps),
    both checksums (RFC 1071; the TCP one with the pseudo-header) and the payload."""
    options = reference_options(req)
    header = 54 + len(options)
    assert len(frame) == header + req["payload_len"], "frame length"
    assert header <= MAX_HEADER_BYTES and len(frame) <= 14 + 1500, "MTU"
    pkt = Ether(frame)
    assert pkt.dst == ":".join(f"{b:02x}" for b in req["eth_dst"].to_bytes(6, "big"))
    assert pkt.src == "02:00:00:00:00:02"
    assert pkt.type == 0x0800
    ip = pkt[IP]
    assert (ip.version, ip.ihl) == (4, 5)
    assert ip.tos == req["dscp"] << 2 | req["ecn"], "the DSCP and ECN fields (RFC 2474, 3168)"
    assert ip.len == 40 + len(options) + req["payload_len"]
    assert ip.id == ident
    assert int(ip.flags) == 2 and ip.frag == 0, "DF, no fragment offset"
    assert ip.ttl == req["ttl"] and ip.proto == 6, "the connection's TTL (MUST-49)"
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
    assert seg.dataofs == 5 + len(options) // 4
    assert frame[54:header] == options, "option bytes differ from tcp.option_bytes"
    assert seg.options == scapy_options(req), "options as scapy parses them"
    rebuilt = ip.copy()
    del rebuilt[TCP].chksum
    assert IP(bytes(rebuilt))[TCP].chksum == seg.chksum, "TCP checksum"
    tcp_bytes = frame[34:]
    pseudo = frame[26:34] + bytes([0, 6]) + len(tcp_bytes).to_bytes(2, "big")
    assert reference_sum(pseudo + tcp_bytes) == 0xFFFF
    assert frame[header:] == payload and bytes(seg.payload) == payload, "payload"


def run_transmitter(width, requests, *, ready_prob, gap_prob, seed, ring_bytes=2048):
    """Fill the ring, send ``requests`` under random backpressure (``ready_prob``) and
    random gaps between requests; check every frame.  Returns per-frame timings
    ``(request, frame_beats, take_to_first_beat, first_to_last_beat)``."""
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
                timings.append((req, len(chunks), first_beat - taken,
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


def latency(length, width):
    """Cycles from the request taken to the first beat with ``o.ready`` high, as the
    TcpTransmitter docstring states: ceil(L / W) + 9, or 8 without payload."""
    return -(-length // width) + 9 if length else 8


def check_timings(timings, width):
    """No bubble inside a frame, and the stated latency for every option combination."""
    for req, beats, took, span in timings:
        assert span == beats - 1, "bubble inside a frame"
        assert took == latency(req["payload_len"], width), (
            f"latency {took} for {req['payload_len']} B, options {combo_of(req)}")


@pytest.mark.parametrize("width", [8, 64])
@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_frames_random(width, ready_prob):
    """Random requests in every option combination, with random output backpressure or
    with ``o.ready`` always high: every field of RFC 791 (version, IHL, total length,
    identification counting frames, DF, TTL 64, protocol 6, header checksum) and
    RFC 9293 s3.1 (ports, SEQ, ACK, data offset, flags, window, urgent 0, checksum over
    pseudo-header, header and payload, RFC 1071); the options of RFC 9293 s3.2
    (MUST-14, SHLD-5: MSS in SYNs), RFC 7323 s2-3 (window scale, timestamps) and
    RFC 2018 (SACK-permitted, SACK blocks, 3 at most beside timestamps) byte for byte;
    and the payload read from the connection's ring part, wrapping at its end.  The beat
    stream follows hdl/stream.py (payload stable while stalled, keep contiguous, one
    ``sent`` per frame); with ``o.ready`` always high a frame goes out one beat per
    cycle, no bubbles, after the latency of the docstring."""
    rng = random.Random(width * 10 + int(ready_prob * 10))
    config = ToeConfig(data_bytes=width, connections=4, tx_ring_bytes=2048,
                       rx_ring_bytes=2048)
    requests = make_requests(rng, config, 70, edge_lengths(width))
    assert {combo_of(r) for r in requests} == {combo_of(c) for c in COMBOS}
    timings = run_transmitter(width, requests, ready_prob=ready_prob, gap_prob=0.3,
                              seed=rng.getrandbits(32))
    if ready_prob == 1.0:
        check_timings(timings, width)


@pytest.mark.parametrize("width", [2, 4, 16, 32])
def test_frames_other_widths(width):
    """The remaining data widths: every option combination once (header lengths 54..94
    bytes, so the header ends in every lane alignment of a 4-byte step), short and
    MTU-sized payloads, then a few under backpressure (RFC 9293 s3.1 and s3.2,
    RFC 7323, RFC 2018 as in :func:`test_frames_random`)."""
    rng = random.Random(width)
    config = ToeConfig(data_bytes=width, connections=4, tx_ring_bytes=2048,
                       rx_ring_bytes=2048)
    requests = make_requests(rng, config, 30, edge_lengths(width))
    if width <= 4:  # the narrow datapaths: the edge lengths, then shorter segments
        for req in requests[len(edge_lengths(width)):]:
            req["payload_len"] = min(req["payload_len"], rng.randint(0, 200))
    timings = run_transmitter(width, requests[:20], ready_prob=1.0, gap_prob=0.3,
                              seed=rng.getrandbits(32))
    check_timings(timings, width)
    run_transmitter(width, requests[20:], ready_prob=0.5, gap_prob=0.3,
                    seed=rng.getrandbits(32))


def test_frames_width1():
    """The byte-wide datapath (payload bytes alternate between the high and low halves
    of the checksum words, RFC 1071; the header of 54..94 bytes shifts out one byte a
    beat): every option combination, mostly short segments and a 1460-byte one (less
    its options), half of them under backpressure."""
    rng = random.Random(1)
    config = ToeConfig(data_bytes=1, connections=4, tx_ring_bytes=2048, rx_ring_bytes=2048)
    requests = make_requests(rng, config, 60, edge_lengths(1) + [2, 3])
    for req in requests[8:]:
        req["payload_len"] = min(req["payload_len"], rng.randint(0, 80))
    timings = run_transmitter(1, requests[:30], ready_prob=1.0, gap_prob=0.3, seed=2)
    check_timings(timings, 1)
    run_transmitter(1, requests[30:], ready_prob=0.5, gap_prob=0.3, seed=3)


def test_longest_header():
    """A non-SYN segment with timestamps and 4 SACK blocks asked carries 3 (RFC 2018 s3:
    40 option bytes, data offset 15, the 94-byte header of ``MAX_HEADER_BYTES``), and a
    SYN with every option is 24 option bytes (RFC 7323 s2-3, RFC 2018 s2)."""
    assert MAX_HEADER_BYTES == 94
    rng = random.Random(5)
    config = ToeConfig(data_bytes=8, connections=4, tx_ring_bytes=2048, rx_ring_bytes=2048)
    requests = make_requests(rng, config, 4, [0, MAX_PAYLOAD, 7, 1])
    for req in requests[:2]:
        req.update(syn_options=0, ts_on=1, sack_count=4)
        req["payload_len"] = min(req["payload_len"], MAX_PAYLOAD - 40)
    for req in requests[2:]:
        req.update(syn_options=1, ts_on=1, wscale_on=1, sack_permitted=1)
    assert [len(reference_options(r)) for r in requests] == [40, 40, 24, 24]
    timings = run_transmitter(8, requests, ready_prob=1.0, gap_prob=0.0, seed=6)
    assert [beats for _, beats, _, _ in timings] == [-(-n // 8) for n in (94, 1514, 85, 79)]
    check_timings(timings, 8)


@pytest.mark.parametrize("width", [1, 8, 64])
def test_converts_to_verilog(width):
    """The component elaborates and converts for the default configuration."""
    text = verilog.convert(TcpTransmitter(ToeConfig(data_bytes=width)), name="tcp_tx")
    assert "module tcp_tx" in text


def test_flags_constants_match_scapy():
    """The flag bits used in requests are those of RFC 9293 s3.1 (scapy's order)."""
    assert int(TCP(flags="S").flags) == tcp.SYN
    assert int(TCP(flags="A").flags) == tcp.ACK_FLAG
