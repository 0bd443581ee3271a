"""Unit tests of hdl/tcp/isn.py (IsnGenerator) against a plain-Python SipHash-2-4.

The reference SipHash-2-4 below is written from the SipHash paper (Aumasson and
Bernstein, "SipHash: a fast short-input PRF", 2012, s2) and checked against the
published test vectors: key 00 01 .. 0f, message 00 01 .. (n-1) for n = 0..16, the
64-bit results of the reference implementation's ``vectors.h`` (n = 15 is the paper's
appendix A example, 0xa129ca6149be45e5).

The ISN rule checked (RFC 6528 s3, RFC 9293 s3.4.1 SHLD-1):

    ISN = M + F(localip, localport, remoteip, remoteport, secretkey)  (mod 2**32)

with M = now_us >> 2 (the 4 us timer, MUST-8; the generator extends it past the wrap of
``now_us``) and F = the low 32 bits of SipHash-2-4 under the 128-bit key of the message
``struct.pack("!IIHH", local_ip, remote_ip, local_port, remote_port)``.
"""

import random
from collections import deque
from itertools import pairwise

from amaranth.back import verilog
from amaranth_helpers import run

from toe.hdl.tcp.isn import ISN_LATENCY, MESSAGE_BYTES, IsnGenerator
from toe.sim.isn_model import MASK32, isn_message, reference_isn, siphash24

SEED = 6528
PAPER_KEY = bytes(range(16))

# SipHash-2-4 reference vectors (vectors.h), key 00..0f, message 00..(n-1).
SIPHASH_VECTORS = {
    0: 0x726FDB47DD0E0E31,
    1: 0x74F839C593DC67FD,
    2: 0x0D6C8009D9A94F5A,
    3: 0x85676696D7FB7E2D,
    4: 0xCF2794E0277187B7,
    7: 0xAB0200F58B01D137,
    8: 0x93F5F5799A932462,
    12: 0x751E8FBC860EE5FB,
    15: 0xA129CA6149BE45E5,  # the paper's appendix A example
    16: 0x3F2ACC7F57C29BDB,
}


def random_connection(rng: random.Random) -> dict:
    return {"local_ip": rng.randrange(2**32), "local_port": rng.randrange(2**16),
            "remote_ip": rng.randrange(2**32), "remote_port": rng.randrange(2**16)}


async def write_key(ctx, dut, key: bytes):
    ctx.set(dut.key, int.from_bytes(key, "little"))
    ctx.set(dut.key_we, 1)
    await ctx.tick()
    ctx.set(dut.key_we, 0)


def drive_requests(dut, key, jobs, rng, valid_prob=1.0, ready_prob=1.0, now_step=(0, 1)):
    """Send ``jobs`` (connections) as requests, return ``(now_us at transfer, isn)`` each.

    ``now_us`` advances every cycle by a random step in ``now_step`` (and never wraps);
    the request stays valid and stable from the cycle it is first offered until taken.
    Also returns the edges at which requests and responses transferred.
    """
    out = {"isn": [], "now": [], "req_edges": [], "resp_edges": []}

    async def bench(ctx):
        await write_key(ctx, dut, key)
        pending = deque(jobs)
        offered = None
        now = 0
        edge = 0
        while len(out["isn"]) < len(jobs):
            if offered is None and pending and rng.random() < valid_prob:
                offered = pending.popleft()
            ctx.set(dut.request.valid, int(offered is not None))
            if offered is not None:
                ctx.set(dut.request.p, offered)
            ctx.set(dut.response.ready, int(rng.random() < ready_prob))
            ctx.set(dut.now_us, now)
            _, _, q_ready, r_valid, r_ready, isn = await ctx.tick().sample(
                dut.request.ready, dut.response.valid, dut.response.ready, dut.response.p.isn)
            if r_valid and r_ready:
                out["isn"].append(isn)
                out["resp_edges"].append(edge)
            if offered is not None and q_ready:
                out["now"].append(now)
                out["req_edges"].append(edge)
                offered = None
            now += rng.randint(*now_step)
            assert now <= MASK32
            edge += 1

    run(dut, bench)
    return out


def test_reference_siphash_matches_published_vectors():
    """SipHash paper appendix A / vectors.h: key 00..0f, message 00..(n-1).

    Includes the paper's 15-byte example 0xa129ca6149be45e5 and the 12-byte length of
    the ISN message (RFC 6528 s3 PRF input).
    """
    for length, expected in SIPHASH_VECTORS.items():
        assert siphash24(PAPER_KEY, bytes(range(length))) == expected, length
    assert len(isn_message(1, 2, 3, 4)) == MESSAGE_BYTES == 12


def test_message_layout_is_network_order():
    """The PRF input of RFC 6528 s3 (connection-id) as documented: big-endian fields,
    local IP, remote IP, local port, remote port."""
    message = isn_message(local_ip=0x0A000002, local_port=0x1F90, remote_ip=0xC0A80101,
                          remote_port=0xD431)
    assert message == bytes.fromhex("0a000002 c0a80101 1f90 d431")


def test_isn_is_timer_plus_siphash_for_random_connections():
    """RFC 6528 s3 / RFC 9293 s3.4.1 SHLD-1: ISN = (now_us >> 2) + low32(SipHash-2-4).

    300 random 4-tuples under a random key, with time running in random steps, random
    gaps between requests and random backpressure on the response.
    """
    rng = random.Random(SEED)
    key = rng.randbytes(16)
    jobs = [random_connection(rng) for _ in range(300)]
    dut = IsnGenerator()
    out = drive_requests(dut, key, jobs, rng, valid_prob=0.5, ready_prob=0.6,
                         now_step=(0, 2**19))
    expected = [reference_isn(key, now, job) for now, job in zip(out["now"], jobs, strict=True)]
    assert out["isn"] == expected


def test_isn_with_paper_key_matches_reference():
    """SipHash paper key 00..0f: the hardware's PRF is SipHash-2-4 (RFC 6528 s3 F)."""
    rng = random.Random(SEED + 1)
    jobs = [random_connection(rng) for _ in range(20)]
    jobs.append({"local_ip": 0x03020100, "local_port": 0x0A0B, "remote_ip": 0x07060504,
                 "remote_port": 0x0809})  # message bytes 03 02 01 00 07 06 05 04 0a 0b 08 09
    out = drive_requests(IsnGenerator(), PAPER_KEY, jobs, rng, now_step=(0, 0))
    assert out["now"] == [0] * len(jobs)
    assert out["isn"] == [reference_isn(PAPER_KEY, 0, job) for job in jobs]


def test_back_to_back_requests_one_isn_every_ten_cycles():
    """Docstring contract: with requests always valid and responses always ready, each
    response transfers ISN_LATENCY (10) edges after its request, and the next request is
    taken on the same edge (RFC 9293 s3.4.1 ISNs for a burst of SYNs)."""
    rng = random.Random(SEED + 2)
    key = rng.randbytes(16)
    jobs = [random_connection(rng) for _ in range(12)]
    out = drive_requests(IsnGenerator(), key, jobs, rng, now_step=(1, 1))
    assert out["isn"] == [reference_isn(key, now, job)
                          for now, job in zip(out["now"], jobs, strict=True)]
    req, resp = out["req_edges"], out["resp_edges"]
    assert [b - a for a, b in zip(req, resp, strict=True)] == [ISN_LATENCY] * len(jobs)
    assert [b - a for a, b in pairwise(req)] == [ISN_LATENCY] * (len(jobs) - 1)
    assert req[0] == 0  # taken in the first cycle after the key write


def test_different_keys_give_different_isns():
    """RFC 6528 s3: F is keyed by the secret; the same connection and time under other
    keys gives other ISNs (each one the SipHash of its own key)."""
    rng = random.Random(SEED + 3)
    connection = random_connection(rng)
    keys = [rng.randbytes(16) for _ in range(8)]
    isns = []
    for key in keys:
        out = drive_requests(IsnGenerator(), key, [connection], rng, now_step=(0, 0))
        assert out["isn"] == [reference_isn(key, 0, connection)]
        isns.append(out["isn"][0])
    assert len(set(isns)) == len(keys)


def test_key_write_takes_effect_for_next_request_only():
    """RFC 6528 s3 key change: a key written while a hash runs does not disturb it; the
    request after uses the new key.  ``keyed`` reports a key written since reset."""
    rng = random.Random(SEED + 4)
    old_key, new_key = rng.randbytes(16), rng.randbytes(16)
    connection = random_connection(rng)
    dut = IsnGenerator()

    async def bench(ctx):
        assert not ctx.get(dut.keyed)
        await write_key(ctx, dut, old_key)
        assert ctx.get(dut.keyed)
        ctx.set(dut.response.ready, 1)
        isns = []
        for key_during in [new_key, new_key]:
            ctx.set(dut.request.valid, 1)
            ctx.set(dut.request.p, connection)
            await ctx.tick().until(dut.request.ready)
            ctx.set(dut.request.valid, 0)
            await ctx.tick()
            await write_key(ctx, dut, key_during)  # mid-hash
            (isn,) = await ctx.tick().sample(dut.response.p.isn).until(dut.response.valid)
            isns.append(isn)
        assert isns == [reference_isn(old_key, 0, connection),
                        reference_isn(new_key, 0, connection)]

    run(dut, bench)


def test_same_connection_isn_advances_with_4us_timer():
    """RFC 9293 s3.4.1 MUST-8: the ISN clock's low bit counts every 4 us, so one
    connection's ISN grows by (t2 >> 2) - (t1 >> 2) between times t1 and t2."""
    rng = random.Random(SEED + 5)
    key = rng.randbytes(16)
    connection = random_connection(rng)
    out = drive_requests(IsnGenerator(), key, [connection] * 6, rng, valid_prob=0.3,
                         now_step=(0, 7))
    for (t1, i1), (t2, i2) in pairwise(zip(out["now"], out["isn"], strict=True)):
        assert (i2 - i1) & MASK32 == (t2 >> 2) - (t1 >> 2)
    assert out["now"][-1] >> 2 > out["now"][0] >> 2


def test_timer_keeps_counting_across_now_us_wrap():
    """RFC 9293 s3.4.1 MUST-8: M is a 32-bit 4 us clock (cycling every 4.55 hours), so it
    continues at 2**30 when the 32-bit microsecond time base wraps instead of falling
    back to 0; and wraps mod 2**32 after four wraps of the time base."""
    rng = random.Random(SEED + 6)
    key = rng.randbytes(16)
    connection = random_connection(rng)
    prf = siphash24(key, isn_message(**connection)) & MASK32
    dut = IsnGenerator()

    async def request_at(ctx, now):
        ctx.set(dut.now_us, now)
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.request.p, connection)
        await ctx.tick().until(dut.request.ready)
        ctx.set(dut.request.valid, 0)
        (isn,) = await ctx.tick().sample(dut.response.p.isn).until(dut.response.valid)
        return (isn - prf) & MASK32

    async def bench(ctx):
        await write_key(ctx, dut, key)
        ctx.set(dut.response.ready, 1)
        assert await request_at(ctx, MASK32 - 3) == MASK32 >> 2
        for wrap in range(1, 5):
            ctx.set(dut.now_us, MASK32)
            await ctx.tick()
            # The request is taken in the very cycle the time base wraps.
            m = await request_at(ctx, 5)
            assert m == ((wrap << 30) + 1) & MASK32, wrap
            ctx.set(dut.now_us, 0x8000_0000)
            await ctx.tick()
        assert await request_at(ctx, 0x8000_0008) == (4 << 30 | 0x2000_0002) & MASK32

    run(dut, bench)


def test_key_is_write_only():
    """RFC 6528 s3 / RFC 9293 s3.4.1 MUST-9: F must not be computable from outside, so
    the secret key has input ports only and no output port reveals it."""
    dut = IsnGenerator()
    outputs = {name for name, member in dut.signature.members.items()
               if member.flow.name == "Out"}
    assert outputs == {"response", "keyed"}
    assert dut.signature.members["key"].flow.name == "In"
    text = verilog.convert(dut, name="isn_generator")
    declared_outputs = [line.strip() for line in text.splitlines()
                        if line.strip().startswith("output ")]
    assert len(declared_outputs) == 4  # request__ready, response__valid/payload, keyed
    assert all("[127:0]" not in line for line in declared_outputs)
    assert "input [127:0] key;" in text
