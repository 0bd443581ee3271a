"""Unit tests of hdl/tcp/reset.py (TcpReset): the reset sent for a segment that reaches no
connection.

RFC 9293 s3.10.7.1 (state CLOSED): "An incoming segment containing a RST is discarded.
An incoming segment not containing a RST causes a RST to be sent in response.  The
acknowledgment and sequence field values are selected to make the reset sequence
acceptable to the TCP endpoint that sent the offending segment.  If the ACK bit is off,
sequence number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.  If the ACK bit
is on, <SEQ=SEG.ACK><CTL=RST>."  SEG.LEN counts the data and SYN and FIN (s3.4).

Each segment is built with scapy (rx_frames.tcp_frame), its record filled with the fields
scapy reads from it (as the parser would), and the reset is parsed back with scapy: both
checksums verify (RFC 1071, the TCP one over the RFC 9293 s3.1 pseudo-header), addresses
and ports are those of the segment reversed, the reset goes to the sender's MAC, the
IPv4 header has DF set, TTL 64 and a running identification (docs/architecture.md and
the TcpReset docstring), and the frame is 54 bytes (no data, no options).
"""

import random

import pytest
from amaranth_helpers import beat_bytes, run
from rx_frames import OUR_IP, OUR_MAC, expected_fields, tcp_frame
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig
from toe.hdl.proto.tcp import ACK_FLAG, FIN, PSH, RST, SYN
from toe.hdl.rx.meta import Verdict
from toe.hdl.tcp.reset import RST_FRAME_BYTES, TcpReset

PTR_BITS = 10
CONFIG = ToeConfig()


def segment(rng: random.Random, flags: int, payload: int, seq=None, ack=None) -> bytes:
    options = rng.choice([b"", b"\x02\x04\x05\xb4", b"\x01\x01\x08\x0a" + bytes(8)])
    ip_options = rng.choice([b"", b"", b"\x01\x01\x01\x00", b"\x01" * 40])
    frame = tcp_frame(rng, payload=payload, options=options, ip_options=ip_options)
    at = 14 + 4 * (frame[14] & 15)
    frame[at + 13] = flags
    if seq is not None:
        frame[at + 4 : at + 8] = seq.to_bytes(4, "big")
    if ack is not None:
        frame[at + 8 : at + 12] = ack.to_bytes(4, "big")
    return bytes(frame)  # the checksum no longer matters: the record is what is read


def record(frame: bytes) -> dict:
    fields = expected_fields(frame, "TCP")
    fields.pop("tcp_options")
    return {"verdict": Verdict.TCP, **fields}


def check_reset(reply: bytes, frame: bytes, label: str) -> int:
    """The reset against the RFC 9293 s3.10.7.1 rule; returns its IPv4 identification."""
    assert len(reply) == RST_FRAME_BYTES, label
    seg = Ether(frame)
    tcp_in = TCP(bytes(seg[TCP]))
    length = len(bytes(tcp_in.payload)) + bool(tcp_in.flags & SYN) + bool(tcp_in.flags & FIN)
    pkt = Ether(reply)
    assert (pkt.dst, pkt.src, pkt.type) == (seg.src, OUR_MAC, 0x0800), label
    ip = pkt[IP]
    assert (ip.version, ip.ihl, ip.len, ip.proto, ip.ttl) == (4, 5, 40, 6, 64), label
    assert int(ip.flags) == 2 and ip.frag == 0, f"{label}: DF only"
    assert (ip.src, ip.dst) == (OUR_IP, seg[IP].src), label
    assert reference_sum(reply[14:34]) == 0xFFFF, f"{label}: IPv4 header checksum"
    rst = pkt[TCP]
    assert (rst.sport, rst.dport) == (tcp_in.dport, tcp_in.sport), label
    assert rst.dataofs == 5 and not bytes(rst.payload), label
    pseudo = (bytes(map(int, OUR_IP.split("."))) + bytes(map(int, seg[IP].src.split(".")))
              + bytes([0, 6, 0, 20]))
    assert reference_sum(pseudo + reply[34:]) == 0xFFFF, f"{label}: TCP checksum"
    rebuilt = Ether(reply)
    del rebuilt[IP].chksum, rebuilt[TCP].chksum
    assert Ether(bytes(rebuilt))[TCP].chksum == rst.chksum, f"{label}: scapy's TCP checksum"
    if tcp_in.flags & ACK_FLAG:
        assert int(rst.flags) == RST, f"{label}: flags {rst.flags}"
        assert rst.seq == tcp_in.ack, label
    else:
        assert int(rst.flags) == RST | ACK_FLAG, f"{label}: flags {rst.flags}"
        assert rst.seq == 0, label
        assert rst.ack == (tcp_in.seq + length) % (1 << 32), f"{label}: SEG.LEN {length}"
    return ip.id


def run_reset(width: int, frames, seed: int):
    """Offer each segment's record (after a random delay) and collect what leaves, under
    random back-pressure.  Returns ``[(reset bytes or None, ignored strobes)]``."""
    dut = TcpReset(width, PTR_BITS)
    rng = random.Random(seed)
    outcomes = []

    async def bench(ctx):
        ctx.set(dut.mac_addr, CONFIG.mac_addr)
        ctx.set(dut.ip_addr, CONFIG.ip_addr)
        for frame, _ in frames:
            await ctx.tick().repeat(rng.choice([1, 1, 2, 5]))
            ctx.set(dut.meta.p, record(frame))
            ctx.set(dut.meta.valid, 1)
            ignored = 0
            while True:
                _, _, ready, strobe = await ctx.tick().sample(dut.meta.ready, dut.ignored)
                ignored += strobe
                if ready:
                    break
            ctx.set(dut.meta.valid, 0)
            ctx.set(dut.meta.p, record(frames[rng.randrange(len(frames))][0]))  # garbage
            out = b""
            for _ in range(RST_FRAME_BYTES * 3 + 20):
                o_ready = rng.random() < 0.6
                ctx.set(dut.o.ready, o_ready)
                _, _, valid, p, strobe = await ctx.tick().sample(dut.o.valid, dut.o.p,
                                                                 dut.ignored)
                ignored += strobe
                if valid and o_ready:
                    data = beat_bytes(p.data, p.keep, width)
                    assert p.last or len(data) == width
                    out += data
                    if p.last:
                        break
            ctx.set(dut.o.ready, 0)
            outcomes.append((out or None, ignored))

    run(dut, bench)
    return outcomes


CASES = [  # (label, flags, payload bytes, seq, ack)
    ("SYN to a closed port", SYN, 0, None, None),
    ("SYN with data", SYN, 10, None, None),
    ("SYN+FIN, seq wraps", SYN | FIN, 3, 0xFFFF_FFFE, None),
    ("FIN alone", FIN, 0, None, None),
    ("data, no flags", 0, 100, None, None),
    ("PSH data, seq wraps", PSH, 1460, 0xFFFF_FF00, None),
    ("ACK", ACK_FLAG, 0, None, 0x1234_5678),
    ("SYN+ACK", SYN | ACK_FLAG, 0, None, 0),
    ("ACK+FIN+PSH with data", ACK_FLAG | FIN | PSH, 77, None, 0xFFFF_FFFF),
    ("every flag but RST", 0xFF & ~RST, 5, None, None),
]


@pytest.mark.parametrize("width", [1, 8, 64])
def test_reset_for_closed_port(width):
    """RFC 9293 s3.10.7.1: ACK off -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> with SEG.LEN
    counting data, SYN and FIN (s3.4), modulo 2^32; ACK on -> <SEQ=SEG.ACK><CTL=RST>.
    Hand cases plus random segments (random flags, lengths, IP options in the segment);
    the resets leave in order, with IPv4 identifications one apart."""
    rng = random.Random(9293 + width)
    frames = [(segment(rng, flags, payload, seq, ack), label)
              for label, flags, payload, seq, ack in CASES]
    for k in range(30 if width > 1 else 10):
        flags = rng.getrandbits(8) & ~RST
        frames.append((segment(rng, flags, rng.choice([0, 1, 2, 999])), f"random {k}"))
    outcomes = run_reset(width, frames, seed=width)
    idents = []
    for (frame, label), (reply, ignored) in zip(frames, outcomes, strict=True):
        assert ignored == 0 and reply is not None, label
        idents.append(check_reset(reply, frame, f"W={width} {label}"))
    assert all((b - a) % 65536 == 1 for a, b in zip(idents[:-1], idents[1:], strict=True))


@pytest.mark.parametrize("width", [1, 8])
def test_incoming_reset_is_never_answered(width):
    """RFC 9293 s3.10.7.1: "An incoming segment containing a RST is discarded" (and
    s3.10.7 MUST NOT answer a RST with a RST): a segment with RST (alone, with ACK, with
    SYN, FIN or data) is taken, strobes ``ignored`` once and sends nothing, and the
    segments around it are still answered."""
    rng = random.Random(width)
    frames = []
    for flags in (RST, RST | ACK_FLAG, RST | SYN, RST | FIN | PSH, 0xFF):
        frames.append((segment(rng, SYN, 0), "SYN before"))
        frames.append((segment(rng, flags, rng.choice([0, 20])), f"flags {flags:#x}"))
    outcomes = run_reset(width, frames, seed=width + 10)
    for (frame, label), (reply, ignored) in zip(frames, outcomes, strict=True):
        if label == "SYN before":
            assert ignored == 0
            check_reset(reply, frame, label)
        else:
            assert reply is None and ignored == 1, label
