"""Flat-port top for Verilog: AXI4-Stream names, so MAC cores and cocotbext-axi fit."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import ToeConfig
from .core import ToeCore
from .host_if import command_layout, data_layout, event_layout
from .tcp.engine import trace_layout

#: Host interface streams: Verilog prefix -> (core port, layout function, direction).
HOST_STREAMS = {
    "cmd": ("cmd", command_layout, "in"),
    "evt": ("evt", event_layout, "out"),
    "htx": ("host_tx", data_layout, "in"),
    "hrx": ("host_rx", data_layout, "out"),
}

__all__ = ["ToeTop"]


class ToeTop(wiring.Component):
    """:class:`ToeCore` with its ports flattened to conventional Verilog names.

    ``rx_axis_*`` (MAC RX into the core) and ``tx_axis_*`` (MAC TX out of it) follow
    AXI4-Stream: ``tdata`` byte 0 is the first byte on the wire, ``tkeep`` one bit per
    byte.  ``rx_axis_tuser`` (1 bit) is the MAC's bad-frame flag, read with
    ``rx_axis_tlast`` as verilog-ethernet's MACs drive it: 1 drops the frame, counted as
    ``drop_mac_error``; tie it to 0 if the MAC has none.  ``tick``, the ``csr_*``
    register bus and the ``arp_*`` lookup port as in :class:`ToeCore`.  The host
    interface streams are ``<name>_valid``, ``<name>_ready`` and ``<name>_data`` (the
    packed message of :mod:`hdl.host_if`) for ``cmd`` and ``htx`` (host to engine) and
    ``evt`` and ``hrx`` (engine to host).  ``trace_data`` is the TCP engine's
    :data:`~hdl.tcp.engine.trace_layout` (bit 0: valid).
    """

    def __init__(self, config: ToeConfig = ToeConfig()):
        self.config = config
        w = config.data_bytes
        super().__init__({
            "rx_axis_tdata": In(8 * w), "rx_axis_tkeep": In(w), "rx_axis_tlast": In(1),
            "rx_axis_tuser": In(1), "rx_axis_tvalid": In(1), "rx_axis_tready": Out(1),
            "tx_axis_tdata": Out(8 * w), "tx_axis_tkeep": Out(w), "tx_axis_tlast": Out(1),
            "tx_axis_tvalid": Out(1), "tx_axis_tready": In(1),
            "tick": In(config.tick_bits),
            "csr_addr": In(10), "csr_rdata": Out(32), "csr_wdata": In(32), "csr_we": In(1),
            "arp_req_valid": In(1), "arp_req_ready": Out(1), "arp_req_ip": In(32),
            "arp_resp_valid": Out(1), "arp_resp_ready": In(1), "arp_resp_ok": Out(1),
            "arp_resp_mac": Out(48),
            **self._host_ports(config),
            "trace_data": Out(trace_layout.size),
        })

    @staticmethod
    def _host_ports(config):
        ports = {}
        for name, (_, layout, direction) in HOST_STREAMS.items():
            into = direction == "in"
            ports[f"{name}_valid"] = In(1) if into else Out(1)
            ports[f"{name}_ready"] = Out(1) if into else In(1)
            width = layout(config).size
            ports[f"{name}_data"] = In(width) if into else Out(width)
        return ports

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = ToeCore(self.config)
        m.d.comb += [
            core.mac_rx.p.data.eq(self.rx_axis_tdata),
            core.mac_rx.p.keep.eq(self.rx_axis_tkeep),
            core.mac_rx.p.last.eq(self.rx_axis_tlast),
            core.mac_rx_error.eq(self.rx_axis_tuser),
            core.mac_rx.valid.eq(self.rx_axis_tvalid),
            self.rx_axis_tready.eq(core.mac_rx.ready),
            self.tx_axis_tdata.eq(core.mac_tx.p.data),
            self.tx_axis_tkeep.eq(core.mac_tx.p.keep),
            self.tx_axis_tlast.eq(core.mac_tx.p.last),
            self.tx_axis_tvalid.eq(core.mac_tx.valid),
            core.mac_tx.ready.eq(self.tx_axis_tready),
            core.tick.eq(self.tick),
            core.csr_addr.eq(self.csr_addr),
            core.csr_wdata.eq(self.csr_wdata),
            core.csr_we.eq(self.csr_we),
            self.csr_rdata.eq(core.csr_rdata),
            core.arp_lookup.valid.eq(self.arp_req_valid),
            self.arp_req_ready.eq(core.arp_lookup.ready),
            core.arp_lookup.p.ip.eq(self.arp_req_ip),
            self.arp_resp_valid.eq(core.arp_result.valid),
            core.arp_result.ready.eq(self.arp_resp_ready),
            self.arp_resp_ok.eq(core.arp_result.p.ok),
            self.arp_resp_mac.eq(core.arp_result.p.mac),
        ]
        m.d.comb += self.trace_data.eq(core.trace)
        for name, (port, _, direction) in HOST_STREAMS.items():
            inner = getattr(core, port)
            valid, ready, payload = (getattr(self, f"{name}_{part}")
                                     for part in ("valid", "ready", "data"))
            if direction == "in":
                m.d.comb += [inner.valid.eq(valid), ready.eq(inner.ready), inner.p.eq(payload)]
            else:
                m.d.comb += [valid.eq(inner.valid), inner.ready.eq(ready), payload.eq(inner.p)]
        return m
