"""The register file: configuration, time and counters, one 32-bit word per address.

The addresses are defined once, in :mod:`hdl.csr_map` (plain Python, so software imports
them without Amaranth); the counter names are collected here from the gateware's lists.
Reads have one cycle of latency.

The counters live in LUT RAM, not in flip-flops: each has a small *pending* count in
flip-flops that its event increments, and a scan visits one counter a cycle, adding
its pending count to the word in the RAM and starting it again (a read-modify-write in
one cycle: the RAM reads asynchronously).  With N counters a counter is visited every N
cycles, so N events at most (one a cycle) wait in its pending count, which is
``N.bit_length()`` bits wide and cannot overflow.  A read returns the RAM word plus the
pending count, so it is exact, as the flip-flop counters were.  After reset the scan's
first pass writes each word with its pending count alone (the RAM is not reset; the
pending counts are).  For 79 counters this took the register file from 4,580 to 2,712
LUT4 (with 80 LUT RAM cells) and from 3,042 to 1,075 flip-flops (``toe synth
--breakdown``, docs/performance.md).
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import ToeConfig
from .csr_map import COUNTER_BASE, ID_VALUE, REGISTERS
from .rx.meta import DropReason
from .tcp.engine import ENGINE_COUNTERS

__all__ = ["RegisterFile", "REGISTERS", "COUNTERS", "COUNTER_BASE", "ID_VALUE"]

#: Counter names in address order (COUNTER_BASE + index).  All count events, wrap at 2^32.
COUNTERS = [
    "rx_frames",  # every frame taken from the MAC
    "rx_arp",  # well-formed ARP packets handled
    "rx_icmp_echo",  # echo requests answered
    "rx_tcp",  # valid TCP segments
    "tx_frames",
    "tx_arp",  # ARP replies, requests and announcements sent
    "tx_icmp",  # echo replies sent
    "tx_tcp_rst",  # resets sent for closed ports
    "arp_conflict",  # ARP packets claiming our address (RFC 5227 s2.4)
    "arp_lookup_failed",  # lookups that gave up
] + [f"drop_{reason.name.lower()}" for reason in DropReason if reason != DropReason.NONE] + [
    "tx_tcp",  # segments sent by connections
    "rx_icmp_errors",  # ICMP errors about our TCP segments, handed to the TCP engine
] + ENGINE_COUNTERS


class RegisterFile(wiring.Component):
    """Configuration registers, the microsecond clock and the event counters.

    Ports
    -----
    addr, wdata, we : In; rdata : Out
        The register bus (word addresses; ``rdata`` one cycle after ``addr``).
    events : In
        One bit per entry of :data:`COUNTERS`: count it this cycle.
    tick : In
        Microseconds elapsed this cycle (``config.tick_bits`` wide; a strobe when 1).
    mac_addr, ip_addr, netmask, gateway, now : Out
    announce : Out
        Strobe: send an ARP announcement (at reset, when ``ip_addr`` or the MAC is
        written, and on a write of bit 0 of ``control``).
    """

    def __init__(self, config: ToeConfig):
        self._config = config
        super().__init__({
            "addr": In(10),
            "wdata": In(32),
            "we": In(1),
            "rdata": Out(32),
            "events": In(len(COUNTERS)),
            "tick": In(config.tick_bits),
            "mac_addr": Out(48, init=config.mac_addr),
            "ip_addr": Out(32, init=config.ip_addr),
            "netmask": Out(32, init=config.netmask),
            "gateway": Out(32, init=config.gateway),
            "now": Out(32),
            "announce": Out(1),
            "isn_key": Out(128),
            "isn_key_we": Out(1),
            "hash_key": Out(96),
            "hash_key_we": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config

        # The key strobes follow the key word by a cycle: the key is complete then.
        m.d.sync += [self.isn_key_we.eq(0), self.hash_key_we.eq(0)]
        m.d.sync += self.now.eq(self.now + self.tick)

        # Events are registered first: the counters' adders stay off the handshake paths
        # that raise them (a count shows one cycle later).
        events = Signal.like(self.events)
        m.d.sync += events.eq(self.events)
        n = len(COUNTERS)
        pending = Array(Signal(n.bit_length(), name=f"{name}_pending") for name in COUNTERS)
        m.submodules.counter_ram = ram = Memory(shape=32, depth=n, init=[])
        scan_read = ram.read_port(domain="comb")
        host_read = ram.read_port(domain="comb")
        write = ram.write_port()
        scan = Signal(range(n))
        clearing = Signal(init=1)  # after reset: the first pass ignores the RAM's words
        m.d.sync += scan.eq(Mux(scan == n - 1, 0, scan + 1))
        with m.If(scan == n - 1):
            m.d.sync += clearing.eq(0)
        m.d.comb += [scan_read.addr.eq(scan), write.addr.eq(scan), write.en.eq(1),
                     write.data.eq(Mux(clearing, 0, scan_read.data) + pending[scan])]
        for bit in range(n):
            here = scan == bit
            m.d.sync += pending[bit].eq(Mux(here, 0, pending[bit]) + events[bit])
        index = (self.addr - COUNTER_BASE)[:len(host_read.addr)]
        m.d.comb += host_read.addr.eq(index)
        count = Mux(clearing, 0, host_read.data) + pending[index]

        started = Signal()
        m.d.sync += started.eq(1)
        m.d.comb += self.announce.eq(~started)

        readable = {
            "id": ID_VALUE,
            "params": cfg.data_bytes | cfg.mtu << 16,
            "mac_hi": self.mac_addr[32:],
            "mac_lo": self.mac_addr[:32],
            "ip_addr": self.ip_addr,
            "netmask": self.netmask,
            "gateway": self.gateway,
            "now_us": self.now,
            "tcp_params": cfg.connections | cfg.listeners << 16,
        }
        with m.Switch(self.addr):
            for name, value in readable.items():
                with m.Case(REGISTERS[name][0]):
                    m.d.sync += self.rdata.eq(value)
            with m.Case(*range(COUNTER_BASE, COUNTER_BASE + n)):
                m.d.sync += self.rdata.eq(count)
            with m.Default():
                m.d.sync += self.rdata.eq(0)

        with m.If(self.we):
            with m.Switch(self.addr):
                with m.Case(REGISTERS["mac_hi"][0]):
                    m.d.sync += self.mac_addr[32:].eq(self.wdata[:16])
                    m.d.comb += self.announce.eq(1)
                with m.Case(REGISTERS["mac_lo"][0]):
                    m.d.sync += self.mac_addr[:32].eq(self.wdata)
                    m.d.comb += self.announce.eq(1)
                with m.Case(REGISTERS["ip_addr"][0]):
                    m.d.sync += self.ip_addr.eq(self.wdata)
                    m.d.comb += self.announce.eq(1)
                with m.Case(REGISTERS["netmask"][0]):
                    m.d.sync += self.netmask.eq(self.wdata)
                with m.Case(REGISTERS["gateway"][0]):
                    m.d.sync += self.gateway.eq(self.wdata)
                with m.Case(REGISTERS["control"][0]):
                    m.d.comb += self.announce.eq(self.wdata[0])
                for i in range(4):
                    with m.Case(REGISTERS[f"isn_key{i}"][0]):
                        m.d.sync += self.isn_key[32 * i : 32 * i + 32].eq(self.wdata)
                        if i == 3:
                            m.d.sync += self.isn_key_we.eq(1)
                for i in range(3):
                    with m.Case(REGISTERS[f"hash_key{i}"][0]):
                        # Key byte 0 is the most significant (RSS order).
                        m.d.sync += self.hash_key[96 - 32 * (i + 1) : 96 - 32 * i].eq(
                            _bswap(self.wdata))
                        if i == 2:
                            m.d.sync += self.hash_key_we.eq(1)
        return m


def _bswap(word):
    """Byte 0 of a little-endian register word as the most significant byte."""
    return Cat(word[24:32], word[16:24], word[8:16], word[0:8])
