"""The portable engine core: every layer composed, no board or simulation specifics."""

from amaranth.hdl import Cat, Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arp.cache import ArpCache
from .arp.responder import ArpResponder
from .arp.transmitter import ArpTransmitter
from .config import ToeConfig
from .csr import COUNTERS, RegisterFile
from .icmp.echo import IcmpEcho
from .register_fifo import RegisterFifo
from .rx.dispatch import RxDispatcher
from .rx.frontend import RxFrontend
from .rx.meta import DropReason
from .stream import beat_signature
from .tcp.reset import TcpReset
from .tx.arbiter import FrameArbiter

__all__ = ["ToeCore"]

TX_SOURCES = ("tx_arp", "tx_icmp", "tx_tcp_rst")


class ToeCore(wiring.Component):
    """The engine: MAC streams on one side, host register bus and ARP lookups on the other.

    RX: :class:`RxFrontend` parses and buffers each frame; its records wait in a
    two-entry :class:`RegisterFifo` (so parsing overlaps the handling of the frame before)
    and :class:`RxDispatcher` hands them to the ARP responder, the ICMP echo responder or
    the TCP closed-port reset.  TX:
    their frames, and ARP requests and announcements, meet in a round-robin
    :class:`FrameArbiter`.

    Ports
    -----
    mac_rx : In(stream)
        Frames from the MAC (no FCS).
    mac_tx : Out(stream)
        Frames to the MAC (no FCS, not padded).
    tick : In
        Time-base strobe: one pulse per microsecond.
    csr_addr, csr_wdata, csr_we : In; csr_rdata : Out
        Register bus (see :mod:`hdl.csr`).
    arp_lookup : In(stream), arp_result : Out(stream)
        Next-hop resolution for transmit.
    """

    def __init__(self, config: ToeConfig = ToeConfig()):
        self.config = config
        super().__init__({
            "mac_rx": In(beat_signature(config.data_bytes)),
            "mac_tx": Out(beat_signature(config.data_bytes)),
            "tick": In(1),
            "csr_addr": In(10),
            "csr_wdata": In(32),
            "csr_we": In(1),
            "csr_rdata": Out(32),
            "arp_lookup": In(stream.Signature(data.StructLayout({"ip": 32}))),
            "arp_result": Out(stream.Signature(data.StructLayout({"ok": 1, "mac": 48}))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        w = cfg.data_bytes

        m.submodules.csr = csr = RegisterFile(cfg)
        m.submodules.rx = rx = RxFrontend(cfg)
        ptr_bits = rx.ptr_bits
        m.submodules.rx_queue = rx_queue = RegisterFifo(rx.meta.p.shape(), 2)
        m.submodules.dispatch = dispatch = RxDispatcher(ptr_bits)
        m.submodules.arp_responder = arp_rx = ArpResponder()
        m.submodules.arp_cache = arp_cache = ArpCache(
            cfg.arp_entries, cfg.arp_timeout_us, cfg.arp_retry_us, cfg.arp_retries)
        m.submodules.arp_tx = arp_tx = ArpTransmitter(w)
        m.submodules.icmp_echo = echo = IcmpEcho(w, ptr_bits, cfg.max_frame_bytes)
        m.submodules.tcp_reset = reset = TcpReset(w, ptr_bits)
        m.submodules.tx_arbiter = arbiter = FrameArbiter(w, len(TX_SOURCES))

        m.d.comb += [
            csr.addr.eq(self.csr_addr),
            csr.wdata.eq(self.csr_wdata),
            csr.we.eq(self.csr_we),
            self.csr_rdata.eq(csr.rdata),
            csr.tick.eq(self.tick),
        ]
        for block in (rx, arp_tx, echo, reset):
            m.d.comb += block.mac_addr.eq(csr.mac_addr)
        for block in (rx, arp_rx, arp_cache, arp_tx, echo, reset):
            m.d.comb += block.ip_addr.eq(csr.ip_addr)
        m.d.comb += [
            rx.netmask.eq(csr.netmask),
            arp_cache.netmask.eq(csr.netmask),
            arp_cache.gateway.eq(csr.gateway),
            arp_cache.now.eq(csr.now),
            arp_tx.announce.eq(csr.announce),
        ]

        # RX path.
        wiring.connect(m, wiring.flipped(self.mac_rx), rx.i)
        wiring.connect(m, rx.meta, rx_queue.i)
        wiring.connect(m, rx_queue.o, dispatch.meta)
        m.d.comb += [
            rx.release.eq(dispatch.release),
            rx.release_ptr.eq(dispatch.release_ptr),
            rx.rd_addr.eq(echo.rd_addr),
            rx.rd_en.eq(echo.rd_en),
            echo.rd_data.eq(rx.rd_data),
        ]
        m.d.comb += [
            arp_rx.meta.valid.eq(dispatch.arp.valid),
            dispatch.arp.ready.eq(arp_rx.meta.ready),
            arp_rx.meta.p.oper.eq(dispatch.arp.p.arp_oper),
            arp_rx.meta.p.sha.eq(dispatch.arp.p.arp_sha),
            arp_rx.meta.p.spa.eq(dispatch.arp.p.arp_spa),
            arp_rx.meta.p.tpa.eq(dispatch.arp.p.arp_tpa),
        ]
        wiring.connect(m, dispatch.icmp, echo.meta)
        wiring.connect(m, dispatch.tcp, reset.meta)

        # ARP resolution.
        wiring.connect(m, arp_rx.learn, arp_cache.learn)
        wiring.connect(m, arp_rx.reply, arp_tx.reply)
        wiring.connect(m, arp_cache.request, arp_tx.request)
        wiring.connect(m, wiring.flipped(self.arp_lookup), arp_cache.lookup)
        wiring.connect(m, wiring.flipped(self.arp_result), arp_cache.result)

        # TX path.
        for k, source in enumerate((arp_tx.o, echo.o, reset.o)):
            wiring.connect(m, source, getattr(arbiter, f"i{k}"))
        wiring.connect(m, arbiter.o, wiring.flipped(self.mac_tx))

        # Counters.
        events = {name: 0 for name in COUNTERS}
        events["rx_frames"] = rx.i.valid & rx.i.ready & rx.i.p.last
        events["rx_arp"] = dispatch.arp.valid & dispatch.arp.ready
        events["rx_icmp_echo"] = dispatch.icmp.valid & dispatch.icmp.ready
        events["rx_tcp"] = dispatch.tcp.valid & dispatch.tcp.ready
        events["tx_frames"] = arbiter.sent.any()
        for k, name in enumerate(TX_SOURCES):
            events[name] = arbiter.sent[k]
        events["arp_conflict"] = arp_rx.conflict
        events["arp_lookup_failed"] = arp_cache.failed
        for reason in DropReason:
            if reason == DropReason.NONE:
                continue
            events[f"drop_{reason.name.lower()}"] = dispatch.dropped & (dispatch.reason == reason)
        events["drop_tcp_rst_closed"] = reset.ignored
        events["drop_tcp_no_listener"] = (dispatch.tcp.valid & dispatch.tcp.ready
                                          & ~reset.ignored)
        m.d.comb += csr.events.eq(Cat(events[name] for name in COUNTERS))
        return m
