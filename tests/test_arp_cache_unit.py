"""Unit tests of hdl/arp/cache.py (ArpCache): the IPv4 -> MAC table and the lookup port.

The expectations come from the RFCs and the block's documented policy
(docs/architecture.md "ARP", the ArpCache docstring):

- RFC 826 "Packet Reception": a learned pair updates an entry already present (merge),
  and is added only when we are the target (``create``).
- RFC 1122 s3.3.1.1: a destination on our subnet is its own next hop, others go through
  the gateway; s3.3.6: broadcast addresses map to the link broadcast ff:ff:ff:ff:ff:ff.
- RFC 1122 s2.3.2.1: a miss sends an ARP request, repeated at most once per
  ``retry_us`` and given up after ``retries`` requests; entries MUST time out
  (``timeout_us`` after they were last learned).
- Full table: a new entry takes a free slot, else the slots in turn (oldest slot first).

One testbench drives every input each cycle; ``now`` advances by ``rate`` microseconds a
cycle, so request spacing and lifetimes are measured in the block's own time base.
"""

import random

from amaranth_helpers import run

from toe.hdl.arp.cache import ArpCache
from toe.hdl.config import ip, mac

OUR_IP, NETMASK, GATEWAY = ip("10.0.0.2"), ip("255.255.255.0"), ip("10.0.0.1")
BROADCAST_MAC = 0xFFFF_FFFF_FFFF


def host(n: int) -> int:
    return ip(f"10.0.0.{n}")


def hw(n: int) -> int:
    return mac(f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}")


class CacheBench:
    """Drives one ArpCache cycle by cycle and records what leaves it."""

    def __init__(self, entries=4, timeout_us=1000, retry_us=20, retries=3, seed=0,
                 gateway=GATEWAY):
        self.dut = ArpCache(entries, timeout_us, retry_us, retries)
        self.entries, self.timeout, self.retry, self.retries = (entries, timeout_us,
                                                                retry_us, retries)
        self.rng = random.Random(seed)
        self.gateway = gateway
        self.now = 0
        self.rate = 1  # microseconds per cycle
        self.requests = []  # (now, tpa)
        self.failed = 0

    async def cycle(self, ctx):
        dut = self.dut
        ctx.set(dut.now, self.now & 0xFFFF_FFFF)
        ctx.set(dut.ip_addr, OUR_IP)
        ctx.set(dut.netmask, NETMASK)
        ctx.set(dut.gateway, self.gateway)
        ctx.set(dut.request.ready, self.rng.random() < 0.6)
        _, _, rv, rr, tpa, failed, res_valid, res_ready, res = await ctx.tick().sample(
            dut.request.valid, dut.request.ready, dut.request.p.tpa, dut.failed,
            dut.result.valid, dut.result.ready, dut.result.p)
        ctx.set(dut.learn.valid, 0)
        if rv and rr:
            self.requests.append((self.now, tpa))
        self.failed += failed
        self.now += self.rate
        return (res.ok, res.mac) if res_valid and res_ready else None

    async def idle(self, ctx, cycles):
        for _ in range(cycles):
            assert await self.cycle(ctx) is None

    async def learn(self, ctx, address, hwaddr, create=True):
        ctx.set(self.dut.learn.valid, 1)
        ctx.set(self.dut.learn.p, {"ip": address, "mac": hwaddr, "create": create})
        await self.idle(ctx, 2)

    async def lookup(self, ctx, address, *, learn_after=None, limit=100_000):
        """Resolve ``address``; optionally learn ``(ip, mac, create)`` once the first
        request for it has left.  Returns ``(ok, mac, requests sent meanwhile)``."""
        dut = self.dut
        first = len(self.requests)
        ctx.set(dut.lookup.valid, 1)
        ctx.set(dut.lookup.p.ip, address)
        ctx.set(dut.result.ready, 0)
        while not ctx.get(dut.lookup.ready):
            await self.cycle(ctx)
        await self.cycle(ctx)
        ctx.set(dut.lookup.valid, 0)
        for _ in range(limit):
            ctx.set(dut.result.ready, self.rng.random() < 0.5)
            if learn_after and len(self.requests) > first:
                await self.learn(ctx, *learn_after)
                learn_after = None
            result = await self.cycle(ctx)
            if result is not None:
                ctx.set(dut.result.ready, 0)
                return (*result, self.requests[first:])
        raise AssertionError("no lookup result")


def simulate(bench: CacheBench, body):
    async def testbench(ctx):
        await bench.idle(ctx, 2)
        await body(ctx)

    run(bench.dut, testbench)


def test_learn_then_hit_and_merge_update():
    """RFC 826 merge: learned pairs (``create``) are found by later lookups without any
    request; a second pair for the same address replaces the MAC even without
    ``create`` (merge_flag); a pair without ``create`` for an address not in the table
    is not added (only the target adds, RFC 826)."""
    b = CacheBench(entries=4)

    async def body(ctx):
        for n in (1, 3, 4):
            await b.learn(ctx, host(n), hw(n))
        for n in (4, 1, 3):
            assert await b.lookup(ctx, host(n)) == (1, hw(n), [])
        await b.learn(ctx, host(3), hw(333), create=False)
        assert await b.lookup(ctx, host(3)) == (1, hw(333), [])
        await b.learn(ctx, host(9), hw(9), create=False)
        ok, _, sent = await b.lookup(ctx, host(9))
        assert not ok and [t for _, t in sent] == [host(9)] * b.retries
        assert b.failed == 1

    simulate(b, body)


def test_miss_requests_paced_then_fails():
    """RFC 1122 s2.3.2.1: an unresolved on-link address gets ARP requests for itself, at
    least ``retry_us`` apart, ``retries`` of them; then the lookup fails (``ok`` low,
    ``failed`` strobed once) no sooner than ``retry_us`` after the last request."""
    b = CacheBench(retry_us=25, retries=4, seed=3)

    async def body(ctx):
        ok, hwaddr, sent = await b.lookup(ctx, host(50))
        assert (ok, hwaddr) == (0, 0)
        assert [t for _, t in sent] == [host(50)] * 4
        times = [t for t, _ in sent]
        assert all(t1 - t0 >= 25 for t0, t1 in zip(times[:-1], times[1:], strict=True))
        assert b.now - times[-1] >= 25
        assert b.failed == 1

    simulate(b, body)


def test_reply_during_retries_resolves():
    """RFC 826 / RFC 1122 s2.3.2.1: the reply to our request (we are its target, so it is
    added) resolves the waiting lookup before the next retry; a pair learned without
    ``create`` while waiting does not."""
    b = CacheBench(retry_us=200, retries=3, seed=4)

    async def body(ctx):
        ok, hwaddr, sent = await b.lookup(ctx, host(60), learn_after=(host(60), hw(60), True))
        assert (ok, hwaddr) == (1, hw(60)) and len(sent) == 1
        ok, hwaddr, sent = await b.lookup(ctx, host(61), learn_after=(host(61), hw(61), False))
        assert not ok and len(sent) == 3

    simulate(b, body)


def test_next_hop_and_broadcast():
    """RFC 1122 s3.3.1.1: an off-subnet address resolves to the gateway's MAC (the request
    asks for the gateway); s3.3.6: 255.255.255.255 and our subnet broadcast map to
    ff:ff:ff:ff:ff:ff without a request, while another subnet's broadcast goes through the
    gateway.  Without a gateway (0.0.0.0) an off-subnet lookup fails at once."""
    b = CacheBench(seed=5)

    async def body(ctx):
        ok, hwaddr, sent = await b.lookup(ctx, ip("8.8.8.8"),
                                          learn_after=(GATEWAY, hw(1), True))
        assert (ok, hwaddr) == (1, hw(1)) and [t for _, t in sent] == [GATEWAY]
        assert await b.lookup(ctx, ip("192.168.1.255")) == (1, hw(1), [])
        for address in (ip("255.255.255.255"), ip("10.0.0.255")):
            assert await b.lookup(ctx, address) == (1, BROADCAST_MAC, [])
        assert await b.lookup(ctx, host(1)) == (1, hw(1), [])  # the gateway itself
        b.gateway = 0
        assert await b.lookup(ctx, ip("8.8.4.4")) == (0, 0, [])
        assert b.failed == 1

    simulate(b, body)


def test_full_table_replaces_slots_in_turn():
    """ArpCache policy (docstring): a new entry takes a free slot, else the slots in turn.
    With 4 entries filled from empty, learning 2 more evicts the first two learned; once
    entries time out (RFC 1122 s2.3.2.1) their slots are taken by new addresses before
    anything is evicted, and a refreshed entry survives; a full table again evicts
    exactly one entry per new address."""
    b = CacheBench(entries=4, timeout_us=400, retry_us=10, retries=1, seed=6)

    async def present(ctx, numbers):
        out = []
        for n in numbers:
            ok, hwaddr, _ = await b.lookup(ctx, host(n))
            assert not ok or hwaddr == hw(n)
            out += [n] if ok else []
        return out

    async def body(ctx):
        for n in range(10, 16):
            await b.learn(ctx, host(n), hw(n))
        assert await present(ctx, range(10, 16)) == [12, 13, 14, 15]
        b.now += 300
        await b.learn(ctx, host(13), hw(13))  # refreshed: lives 400 us from now
        b.now += 150  # 12, 14 and 15 are over 400 us old
        await b.idle(ctx, 2 * b.entries)
        for n in (20, 21, 22):
            await b.learn(ctx, host(n), hw(n))
        assert await present(ctx, (12, 13, 14, 15, 20, 21, 22)) == [13, 20, 21, 22]
        await b.learn(ctx, host(23), hw(23))
        held = await present(ctx, (13, 20, 21, 22, 23))
        assert len(held) == 4 and 23 in held

    simulate(b, body)


def test_entries_time_out_across_the_clock_wrap():
    """RFC 1122 s2.3.2.1 (entries MUST time out), ArpCache docstring: an entry lives
    ``timeout_us`` from its last learning, also when the 32-bit microsecond count wraps:
    found at ``timeout - 1`` us, gone (the lookup sends a request) at ``timeout``."""
    b = CacheBench(entries=2, timeout_us=1000, retry_us=5, retries=1, seed=7)
    b.rate = 0

    async def body(ctx):
        for start in (0x1000, 0xFFFF_FE00):
            b.now = start
            await b.learn(ctx, host(70), hw(70))
            b.now = start + 999
            await b.idle(ctx, 2 * b.entries)
            assert await b.lookup(ctx, host(70)) == (1, hw(70), [])
            b.now = start + 1000
            await b.idle(ctx, 2 * b.entries)
            b.rate = 1
            ok, _, sent = await b.lookup(ctx, host(70))
            b.rate = 0
            assert not ok and [t for _, t in sent] == [host(70)]

    simulate(b, body)
