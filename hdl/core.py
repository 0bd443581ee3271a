"""The portable engine core: every layer composed, no board or simulation specifics."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .arp.cache import ArpCache
from .arp.responder import ArpResponder
from .arp.transmitter import ArpTransmitter
from .config import ToeConfig
from .csr import COUNTERS, RegisterFile
from .host_if import command_layout, data_layout, event_layout
from .icmp.echo import IcmpEcho
from .register_fifo import RegisterFifo
from .rx.dispatch import RxDispatcher
from .rx.frontend import RxFrontend
from .rx.meta import DropReason, Verdict
from .stream import beat_signature
from .tcp.engine import ENGINE_COUNTERS, TcpEngine, trace_layout
from .tcp.lane_ring import LaneRing
from .tcp.reset import TcpReset
from .tcp.rx_copy import RxCopier
from .tcp.rx_delivery import RxDelivery
from .tcp.transmitter import TcpTransmitter
from .tcp.tx_writer import TxWriter
from .tx.arbiter import FrameArbiter

__all__ = ["ToeCore"]

TX_SOURCES = ("tx_arp", "tx_icmp", "tx_tcp_rst", "tx_tcp")


def _queue(m, name, source, sink, depth):
    """A FIFO of ``depth`` messages from stream ``source`` to stream ``sink``."""
    width = len(source.p.as_value())
    fifo = SyncFIFOBuffered(width=width, depth=depth)
    m.submodules[name] = fifo
    m.d.comb += [
        fifo.w_data.eq(source.p.as_value()),
        fifo.w_en.eq(source.valid),
        source.ready.eq(fifo.w_rdy),
        sink.p.eq(fifo.r_data),
        sink.valid.eq(fifo.r_rdy),
        fifo.r_en.eq(sink.ready),
    ]
    return fifo


class ToeCore(wiring.Component):
    """The engine: MAC streams on one side, host register bus and ARP lookups on the other.

    RX: :class:`RxFrontend` parses and buffers each frame; its records wait in a
    two-entry :class:`RegisterFifo` (so parsing overlaps the handling of the frame before)
    and :class:`RxDispatcher` hands them to the ARP responder, the ICMP echo responder or
    the TCP engine.  TCP: :class:`TcpEngine` runs the connections; received payload is
    copied from the frame buffer into per-connection RX rings (:class:`RxCopier`) and
    handed to the host (:class:`RxDelivery`); host bytes go into per-connection TX rings
    (:class:`TxWriter`) from which :class:`TcpTransmitter` builds segments; segments for
    no connection get their RST from :class:`TcpReset`.  TX: all frames, and ARP
    requests and announcements, meet in a round-robin :class:`FrameArbiter`.

    Ports
    -----
    mac_rx : In(stream)
        Frames from the MAC (no FCS).
    mac_rx_error : In
        The MAC's bad-frame mark (``EthernetMac.rx_error``), read with the last beat of
        ``mac_rx``: 1 drops the frame, counted as ``drop_mac_error``.  0 if unused.
    mac_tx : Out(stream)
        Frames to the MAC (no FCS, not padded).
    tick : In
        Time base: the microseconds elapsed this cycle (a strobe, one pulse per
        microsecond, unless ``config.tick_bits`` is wider).
    csr_addr, csr_wdata, csr_we : In; csr_rdata : Out
        Register bus (see :mod:`hdl.csr`).
    arp_lookup : In(stream), arp_result : Out(stream)
        Next-hop resolution for transmit (shared with the TCP engine's active opens).
    cmd : In(stream), evt : Out(stream), host_tx : In(stream), host_rx : Out(stream)
        The host interface (:mod:`hdl.host_if`).
    trace : Out
        The TCP engine's per-event trace (state coverage in simulation).
    """

    def __init__(self, config: ToeConfig = ToeConfig()):
        self.config = config
        super().__init__({
            "mac_rx": In(beat_signature(config.data_bytes)),
            "mac_rx_error": In(1),
            "mac_tx": Out(beat_signature(config.data_bytes)),
            "tick": In(config.tick_bits),
            "csr_addr": In(10),
            "csr_wdata": In(32),
            "csr_we": In(1),
            "csr_rdata": Out(32),
            "arp_lookup": In(stream.Signature(data.StructLayout({"ip": 32}))),
            "arp_result": Out(stream.Signature(data.StructLayout({"ok": 1, "mac": 48}))),
            "cmd": In(stream.Signature(command_layout(config))),
            "evt": Out(stream.Signature(event_layout(config))),
            "host_tx": In(stream.Signature(data_layout(config))),
            "host_rx": Out(stream.Signature(data_layout(config))),
            "trace": Out(trace_layout),
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
        m.submodules.icmp_echo = echo = IcmpEcho(w, ptr_bits, cfg.max_frame_bytes, cfg.ip_ttl)
        m.submodules.tcp_reset = reset = TcpReset(w, ptr_bits, cfg.ip_ttl, cfg.ip_dscp)
        m.submodules.tx_arbiter = arbiter = FrameArbiter(w, len(TX_SOURCES))
        m.submodules.tcp = engine = TcpEngine(cfg, ptr_bits)
        n = cfg.connections
        m.submodules.tx_ring = tx_ring = LaneRing(w, n * cfg.tx_ring_bytes, cfg.tx_ring_bytes)
        m.submodules.rx_ring = rx_ring = LaneRing(w, n * cfg.rx_ring_bytes, cfg.rx_ring_bytes)
        m.submodules.tx_writer = writer = TxWriter(cfg)
        m.submodules.tcp_tx = transmitter = TcpTransmitter(cfg)
        m.submodules.rx_copy = copier = RxCopier(cfg, ptr_bits)
        m.submodules.rx_delivery = delivery = RxDelivery(cfg)

        m.d.comb += [
            csr.addr.eq(self.csr_addr),
            csr.wdata.eq(self.csr_wdata),
            csr.we.eq(self.csr_we),
            self.csr_rdata.eq(csr.rdata),
            csr.tick.eq(self.tick),
        ]
        for block in (rx, arp_tx, echo, reset, engine, transmitter):
            m.d.comb += block.mac_addr.eq(csr.mac_addr)
        for block in (rx, arp_rx, arp_cache, arp_tx, echo, reset, engine, transmitter):
            m.d.comb += block.ip_addr.eq(csr.ip_addr)
        m.d.comb += [
            engine.now.eq(csr.now),
            engine.netmask.eq(csr.netmask),
            engine.isn_key.eq(csr.isn_key),
            engine.isn_key_we.eq(csr.isn_key_we),
            engine.hash_key.eq(csr.hash_key),
            engine.hash_key_we.eq(csr.hash_key_we),
        ]
        m.d.comb += [
            rx.netmask.eq(csr.netmask),
            arp_cache.netmask.eq(csr.netmask),
            arp_cache.gateway.eq(csr.gateway),
            arp_cache.now.eq(csr.now),
            arp_tx.announce.eq(csr.announce),
        ]

        # RX path.
        wiring.connect(m, wiring.flipped(self.mac_rx), rx.i)
        m.d.comb += rx.mac_error.eq(self.mac_rx_error)
        wiring.connect(m, rx.meta, rx_queue.i)
        wiring.connect(m, rx_queue.o, dispatch.meta)
        m.d.comb += [
            rx.release.eq(dispatch.release),
            rx.release_ptr.eq(dispatch.release_ptr),
            # The dispatcher hands out one frame at a time, so the echo responder and
            # the payload copier never read the frame buffer at once.
            rx.rd_addr.eq(Mux(engine.copy.valid, copier.rd_addr, echo.rd_addr)),
            rx.rd_en.eq(echo.rd_en | copier.rd_en),
            echo.rd_data.eq(rx.rd_data),
            copier.rd_data.eq(rx.rd_data),
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
        wiring.connect(m, dispatch.tcp, engine.seg_in)
        wiring.connect(m, engine.reset_meta, reset.meta)
        m.d.comb += self.trace.eq(engine.trace)

        # TCP data paths.
        wiring.connect(m, wiring.flipped(self.cmd), engine.cmd)
        _queue(m, "evt_queue", engine.evt, wiring.flipped(self.evt), 16)
        wiring.connect(m, wiring.flipped(self.host_tx), writer.i)
        tx_ring.written_by(m, writer)
        m.d.comb += [
            writer.limit_we.eq(engine.limit_we),
            writer.limit_addr.eq(engine.limit_addr),
            writer.limit_data.eq(engine.limit_data),
        ]
        _queue(m, "written_queue", writer.written, engine.written, 4)
        _queue(m, "segment_queue", engine.segment, transmitter.segment, 4)
        tx_ring.read_by(m, transmitter)
        wiring.connect(m, engine.copy, copier.copy)
        rx_ring.written_by(m, copier)
        rx_ring.read_by(m, delivery)
        # ``done`` reports queue deeper than requests, so the delivery engine never
        # waits for the TCP engine while the TCP engine waits for it.
        _queue(m, "delivery_queue", engine.delivery, delivery.request, 8)
        _queue(m, "delivered_queue", delivery.done, engine.delivered, 16)
        wiring.connect(m, delivery.o, wiring.flipped(self.host_rx))

        # ARP resolution.
        wiring.connect(m, arp_rx.learn, arp_cache.learn)
        wiring.connect(m, arp_rx.reply, arp_tx.reply)
        wiring.connect(m, arp_cache.request, arp_tx.request)
        # The cache's lookup port serves the TCP engine (active opens) and the outside,
        # one lookup at a time: whoever sent the request owns the result.
        engine_owns = Signal()
        busy = Signal()
        with m.If(~busy):
            with m.If(engine.arp_lookup.valid):
                m.d.comb += [
                    arp_cache.lookup.valid.eq(1),
                    arp_cache.lookup.p.eq(engine.arp_lookup.p),
                    engine.arp_lookup.ready.eq(arp_cache.lookup.ready),
                ]
                with m.If(arp_cache.lookup.ready):
                    m.d.sync += [busy.eq(1), engine_owns.eq(1)]
            with m.Else():
                m.d.comb += [
                    arp_cache.lookup.valid.eq(self.arp_lookup.valid),
                    arp_cache.lookup.p.eq(self.arp_lookup.p),
                    self.arp_lookup.ready.eq(arp_cache.lookup.ready),
                ]
                with m.If(self.arp_lookup.valid & arp_cache.lookup.ready):
                    m.d.sync += [busy.eq(1), engine_owns.eq(0)]
        with m.Else():
            with m.If(engine_owns):
                m.d.comb += [
                    engine.arp_result.valid.eq(arp_cache.result.valid),
                    engine.arp_result.p.eq(arp_cache.result.p),
                    arp_cache.result.ready.eq(engine.arp_result.ready),
                ]
            with m.Else():
                m.d.comb += [
                    self.arp_result.valid.eq(arp_cache.result.valid),
                    self.arp_result.p.eq(arp_cache.result.p),
                    arp_cache.result.ready.eq(self.arp_result.ready),
                ]
            with m.If(arp_cache.result.valid & arp_cache.result.ready):
                m.d.sync += busy.eq(0)

        # TX path.
        for k, source in enumerate((arp_tx.o, echo.o, reset.o, transmitter.o)):
            wiring.connect(m, source, getattr(arbiter, f"i{k}"))
        wiring.connect(m, arbiter.o, wiring.flipped(self.mac_tx))

        # Counters.
        events = {name: 0 for name in COUNTERS}
        events["rx_frames"] = rx.i.valid & rx.i.ready & rx.i.p.last
        events["rx_arp"] = dispatch.arp.valid & dispatch.arp.ready
        events["rx_icmp_echo"] = dispatch.icmp.valid & dispatch.icmp.ready
        tcp_taken = dispatch.tcp.valid & dispatch.tcp.ready
        icmp_error = dispatch.tcp.p.verdict == Verdict.ICMP_ERROR
        events["rx_tcp"] = tcp_taken & ~icmp_error
        events["rx_icmp_errors"] = tcp_taken & icmp_error
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
        events["drop_tcp_no_listener"] = reset.meta.valid & reset.meta.ready & ~reset.ignored
        for k, name in enumerate(ENGINE_COUNTERS):
            events[name] = engine.counters[k]
        m.d.comb += csr.events.eq(Cat(events[name] for name in COUNTERS))
        return m
