"""ARP cache and next-hop resolver (RFC 826, RFC 1122 s2.3.2)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..proto import ethernet, ipv4

__all__ = ["ArpCache"]


def _reached(now, deadline):
    """Wrapping time comparison: ``now`` is at or past ``deadline`` (32-bit us)."""
    return ~(now - deadline)[31]


class ArpCache(wiring.Component):
    """A small fully associative table of IPv4 -> MAC mappings, and the lookup port.

    A lookup resolves the next hop of an address: the address itself on our subnet, else
    the gateway (RFC 1122 s3.3.1.1); broadcast addresses map to ff:ff:ff:ff:ff:ff.  A
    miss sends an ARP request and repeats it every ``retry_us`` (RFC 1122 s2.3.2.1:
    at most one request per second per address by default), and fails after
    ``retries`` requests go unanswered.  Entries expire ``timeout_us`` after they were
    last learned (RFC 1122 s2.3.2.1: entries MUST time out); a sweep looks at one entry
    per cycle.  A new entry takes a free slot, else the slots in turn.

    Ports
    -----
    learn : In(stream, always ready)
        ``ip``, ``mac``, ``create``: update a present entry; add it if ``create``.
    lookup : In(stream)
        ``ip`` to resolve.
    result : Out(stream)
        ``ok`` and ``mac`` for each lookup, in order.
    request : Out(stream)
        ``tpa``: an ARP request to send.
    now : In
        Microseconds since reset (wraps).
    ip_addr, netmask, gateway : In
    failed : Out
        Strobe: a lookup gave up.
    """

    def __init__(self, entries: int, timeout_us: int, retry_us: int, retries: int):
        self._entries = entries
        self._timeout = timeout_us
        self._retry = retry_us
        self._retries = retries
        super().__init__({
            "learn": In(stream.Signature(
                data.StructLayout({"ip": 32, "mac": 48, "create": 1}), always_ready=True)),
            "lookup": In(stream.Signature(data.StructLayout({"ip": 32}))),
            "result": Out(stream.Signature(data.StructLayout({"ok": 1, "mac": 48}))),
            "request": Out(stream.Signature(data.StructLayout({"tpa": 32}))),
            "now": In(32),
            "ip_addr": In(32),
            "netmask": In(32),
            "gateway": In(32),
            "failed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._entries
        valid = Signal(n)
        ips = [Signal(32, name=f"ip{i}") for i in range(n)]
        macs = [Signal(48, name=f"mac{i}") for i in range(n)]
        expires = [Signal(32, name=f"expires{i}") for i in range(n)]

        # Sweep: one entry per cycle loses its valid bit once expired.
        sweep = Signal(range(n))
        m.d.sync += sweep.eq(sweep + 1)
        for i in range(n):
            with m.If((sweep == i) & _reached(self.now, expires[i])):
                m.d.sync += valid[i].eq(0)

        # Learning (overrides the sweep when both touch an entry in the same cycle).  The
        # request is registered first, so the table writes stay off the RX handshake path.
        lp = Signal.like(self.learn.p)
        learn_valid = Signal()
        m.d.sync += [lp.eq(self.learn.p), learn_valid.eq(self.learn.valid)]
        match = Signal(n)
        free = Signal(n)
        for i in range(n):
            m.d.comb += [match[i].eq(valid[i] & (ips[i] == lp.ip)), free[i].eq(~valid[i])]
        victim = Signal(range(n))
        rotate = Signal(range(n))
        m.d.comb += victim.eq(rotate)
        for i in reversed(range(n)):
            with m.If(free[i]):
                m.d.comb += victim.eq(i)
        with m.If(learn_valid):
            for i in range(n):
                with m.If(match[i] | ((match == 0) & lp.create & (victim == i))):
                    m.d.sync += [
                        valid[i].eq(1), ips[i].eq(lp.ip), macs[i].eq(lp.mac),
                        expires[i].eq(self.now + self._timeout),
                    ]
            with m.If((match == 0) & lp.create & (free == 0)):
                m.d.sync += rotate.eq(rotate + 1)

        # Lookup.
        # The search result is registered: it follows ``hop`` and the table one cycle late.
        hop = Signal(32)
        hit = Signal()
        hit_mac = Signal(48)
        m.d.sync += hit.eq(0)
        for i in range(n):
            with m.If(valid[i] & (ips[i] == hop)):
                m.d.sync += [hit.eq(1), hit_mac.eq(macs[i])]
        tries = Signal(range(self._retries + 1))
        deadline = Signal(32)
        subnet_broadcast = self.ip_addr | ~self.netmask
        on_link = Signal()
        m.d.comb += on_link.eq(
            ((self.lookup.p.ip ^ self.ip_addr) & self.netmask) == 0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.lookup.ready.eq(1)
                with m.If(self.lookup.valid):
                    with m.If(on_link | (self.lookup.p.ip == ipv4.LIMITED_BROADCAST)):
                        m.d.sync += hop.eq(self.lookup.p.ip)
                    with m.Else():
                        m.d.sync += hop.eq(self.gateway)
                    m.d.sync += tries.eq(0)
                    m.next = "COMPARE"
            with m.State("COMPARE"):
                m.next = "SEARCH"
            with m.State("SEARCH"):
                with m.If((hop == ipv4.LIMITED_BROADCAST) | (hop == subnet_broadcast)):
                    m.d.sync += [self.result.p.ok.eq(1), self.result.p.mac.eq(ethernet.BROADCAST)]
                    m.next = "RESULT"
                with m.Elif(hit):
                    m.d.sync += [self.result.p.ok.eq(1), self.result.p.mac.eq(hit_mac)]
                    m.next = "RESULT"
                with m.Elif((hop == 0) | (tries == self._retries)):
                    m.d.sync += [self.result.p.ok.eq(0), self.result.p.mac.eq(0)]
                    m.d.comb += self.failed.eq(1)
                    m.next = "RESULT"
                with m.Else():
                    m.next = "REQUEST"
            with m.State("REQUEST"):
                m.d.comb += [self.request.valid.eq(1), self.request.p.tpa.eq(hop)]
                with m.If(self.request.ready):
                    # One tick more than the interval: the current tick is already partly over,
                    # so the gap between requests is never shorter than ``retry_us``.
                    m.d.sync += [tries.eq(tries + 1), deadline.eq(self.now + self._retry + 1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(hit | _reached(self.now, deadline)):
                    m.next = "COMPARE"
            with m.State("RESULT"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.next = "IDLE"
        return m
