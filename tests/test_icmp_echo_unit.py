"""Unit tests of hdl/icmp/echo.py (IcmpEcho): echo request in the frame buffer -> reply.

The block reads the request back from a frame-buffer-like memory (one word per beat,
``rd_data`` one cycle after ``rd_addr``/``rd_en`` and held while ``rd_en`` is low, as
hdl/rx/frame_buffer.py documents) and gets the request's record with the fields scapy
reads from it (``rx_frames.expected_fields``).  The reply is checked against the request
by the rules it must follow:

- RFC 792 "Echo or Echo Reply Message": type 0, code 0, identifier, sequence number and
  data returned unchanged; RFC 1122 s3.2.2.6: the data is returned entirely, and the IP
  options of the request are returned (the house choice: as received, docs/architecture.md
  "TX path"); source and destination swapped (RFC 792 "the source and destination
  addresses are simply reversed").
- RFC 1071: the ICMP checksum and the IPv4 header checksum of the reply verify (the sum
  over the message, checksum included, is 0xFFFF), and scapy reads the reply the same way.
- docs/architecture.md: TTL 64, reply to the request's source MAC, no Ethernet padding;
  the record is taken with the last beat (the buffer is released only once read).
"""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory
from amaranth_helpers import beat_bytes, run
from rx_frames import OUR_IP, OUR_MAC, expected_fields, icmp_frame, insert_ip_options
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig
from toe.hdl.icmp.echo import IcmpEcho
from toe.hdl.rx.frontend import buffer_geometry
from toe.hdl.rx.meta import Verdict

ETH = 14
CONFIG = ToeConfig()


class EchoWithBuffer(Elaboratable):
    """IcmpEcho reading a memory laid out like the RX frame buffer."""

    def __init__(self, width: int):
        self.width = width
        self.depth, _, _ = buffer_geometry(ToeConfig(data_bytes=width))
        self.ptr_bits = self.depth.bit_length()
        self.echo = IcmpEcho(width, self.ptr_bits, CONFIG.max_frame_bytes)
        self.mem = memory.Memory(shape=8 * width, depth=self.depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.echo = echo = self.echo
        m.submodules.mem = mem = self.mem
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(echo.rd_addr[: self.ptr_bits - 1]), rd.en.eq(echo.rd_en),
                     echo.rd_data.eq(rd.data)]
        return m


def request_record(frame: bytes, start: int, width: int, depth: int) -> dict:
    words = -(-len(frame) // width)
    fields = expected_fields(frame, "ICMP_ECHO")
    return {"verdict": Verdict.ICMP_ECHO, "buf_start": start,
            "buf_end": (start + words) % (2 * depth), **fields}


def expected_reply(frame: bytes) -> bytes:
    """The reply built from the request by the rules above, checksums left to check."""
    ihl = frame[ETH] & 15
    total = int.from_bytes(frame[ETH + 2 : ETH + 4], "big")
    r = bytearray(frame[: ETH + total])  # no padding
    r[0:6], r[6:12] = frame[6:12], bytes.fromhex(OUR_MAC.replace(":", ""))
    r[ETH + 8] = 64
    r[ETH + 12 : ETH + 16] = bytes(map(int, OUR_IP.split(".")))
    r[ETH + 16 : ETH + 20] = frame[ETH + 12 : ETH + 16]
    r[ETH + 4 * ihl] = 0
    return bytes(r)


def check_reply(reply: bytes, request: bytes, label: str):
    ihl = request[ETH] & 15
    at = ETH + 4 * ihl
    want = expected_reply(request)
    assert len(reply) == len(want), f"{label}: {len(reply)} bytes, want {len(want)}"
    masked = bytearray(reply)
    for offset in (ETH + 10, ETH + 11, at + 2, at + 3):  # the checksums, verified below
        masked[offset] = want[offset]
    assert bytes(masked) == want, f"{label}:\n{reply.hex()}\n{want.hex()}"
    assert reference_sum(reply[ETH:at]) == 0xFFFF, f"{label}: IPv4 header checksum"
    assert reference_sum(reply[at:]) == 0xFFFF, f"{label}: ICMP checksum"
    pkt = Ether(reply)
    req = Ether(request)
    assert pkt[IP].src == OUR_IP and pkt[IP].dst == req[IP].src and pkt[IP].ttl == 64
    assert pkt[ICMP].type == 0 and pkt[ICMP].code == 0
    assert (pkt[ICMP].id, pkt[ICMP].seq) == (req[ICMP].id, req[ICMP].seq)
    assert bytes(pkt[ICMP].payload) == bytes(req[ICMP].payload)[: len(bytes(pkt[ICMP].payload))]
    assert pkt[IP].options == req[IP].options


def run_echo(width: int, requests, seed: int, ready_prob: float = 0.7):
    """Each request is stored at a random word of the ring, its record offered, and the
    reply collected under random back-pressure; every reply is checked."""
    dut = EchoWithBuffer(width)
    echo = dut.echo
    rng = random.Random(seed)
    replies = []

    async def bench(ctx):
        ctx.set(echo.mac_addr, CONFIG.mac_addr)
        ctx.set(echo.ip_addr, CONFIG.ip_addr)
        for frame, label in requests:
            depth = dut.depth
            start = rng.randrange(2 * depth)
            if rng.random() < 0.5:  # across the end of the ring
                start = (depth - rng.randint(1, 4)) + rng.choice([0, depth])
            words = -(-len(frame) // width)
            for k in range(words):
                chunk = frame[k * width : (k + 1) * width]
                chunk += bytes(rng.getrandbits(8) for _ in range(width - len(chunk)))
                ctx.set(dut.mem.data[(start + k) % depth], int.from_bytes(chunk, "little"))
            ctx.set(echo.meta.p, request_record(frame, start, width, depth))
            ctx.set(echo.meta.valid, 1)
            out = b""
            for _ in range(10 * words + 20):
                ready = rng.random() < ready_prob
                ctx.set(echo.o.ready, ready)
                _, _, valid, p, taken = await ctx.tick().sample(
                    echo.o.valid, echo.o.p, echo.meta.ready)
                transferred = valid and ready
                assert taken == (transferred and p.last), f"{label}: record taken early/late"
                if transferred:
                    out += beat_bytes(p.data, p.keep, width)
                    assert p.last or len(beat_bytes(p.data, p.keep, width)) == width
                    if p.last:
                        break
            else:
                raise AssertionError(f"{label}: no complete reply")
            ctx.set(echo.meta.valid, 0)
            ctx.set(echo.o.ready, 0)
            for _ in range(rng.choice([0, 0, 1, 3])):
                _, _, valid = await ctx.tick().sample(echo.o.valid)
                assert not valid, f"{label}: output after the last beat"
            replies.append(out)

    run(dut, bench)
    for (frame, label), reply in zip(requests, replies, strict=True):
        check_reply(reply, frame, f"W={width} {label}")


def requests_for(rng: random.Random, count: int):
    out = []
    for k in range(count):
        payload = rng.choice([0, 1, 2, 3, 7, 8, 31, 56, 57, 99, 500, 1471, 1472])
        frame = icmp_frame(rng, payload=payload)
        label = f"{payload} data bytes"
        if k % 3 == 1:
            words = rng.randint(1, 10)
            frame = insert_ip_options(bytes(frame), bytes([1] * (4 * words - 1) + [0]))
            label += f", {4 * words} bytes of IP options"
        if k % 4 == 2:  # Ethernet padding past the total length is not echoed
            frame += bytes(max(0, 60 - len(frame))) + bytes(rng.randint(0, 9))
            label += ", padded"
        out.append((bytes(frame), label))
    return out


def zero_request(rng) -> bytes:
    """An echo request whose reply is all zero bytes but the checksum (identifier 0,
    sequence 0, zero data): the one case where the right ICMP checksum is 0xFFFF."""
    frame = bytearray(icmp_frame(rng, payload=rng.choice([0, 5, 32])))
    at = ETH + 20
    frame[at + 4 :] = bytes(len(frame) - at - 4)
    frame[at + 2 : at + 4] = (~0x0800 & 0xFFFF).to_bytes(2, "big")
    assert reference_sum(frame[at:]) == 0xFFFF
    return bytes(frame)


@pytest.mark.parametrize("width", [1, 3, 8, 64])
def test_echo_replies(width):
    """RFC 792 echo reply, RFC 1122 s3.2.2.6, RFC 1071 checksums: requests with 0..1472
    data bytes (odd and even lengths), with IP options (IHL 6..15) and with Ethernet
    padding, stored anywhere in the ring (wrapping past its end), answered under random
    back-pressure at 1, 3, 8 and 64 bytes per beat; the TTL of the request varies, so the
    incremental IPv4 checksum update (RFC 1624 eqn. 3) is exercised."""
    rng = random.Random(792 + width)
    count = {1: 8, 3: 14, 8: 30, 64: 40}[width]
    requests = requests_for(rng, count)
    if width == 1:
        requests = [(f, label) for f, label in requests if len(f) <= 200]
    run_echo(width, requests, seed=width)


@pytest.mark.parametrize("width", [1, 8])
def test_echo_reply_checksum_of_zero_message(width):
    """RFC 1071 / RFC 1624 s3: an echo reply whose bytes are all zero but the checksum
    must carry 0xFFFF (the complement of a +0 sum); 0x0000 does not verify (the sum
    over the message would be 0, not 0xFFFF).  The request's checksum is 0xF7FF."""
    rng = random.Random(1624)
    run_echo(width, [(zero_request(rng), "all-zero echo") for _ in range(3)], seed=width)
