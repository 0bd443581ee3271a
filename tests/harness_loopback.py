"""A tiny design with the engine's exact Verilog top ports, used only to test the harness.

It is not part of the engine: it exists so that ``sim/`` (build cache, cocotb runner, AXI4-Stream
models, testbench, pcap writer) can be tested before and independently of the real core.

Behaviour:

- ``rx_axis`` -> ``tx_axis``: a one-entry pipeline register that honours ready/valid at full
  throughput (``rx_axis_tready = ~tx_axis_tvalid | tx_axis_tready``), so every frame comes back
  unchanged, one cycle later, under any idle or backpressure pattern.
- Register file (registered read, ``csr_rdata`` valid one cycle after ``csr_addr``):

  ======== ======================================================
  address  register
  ======== ======================================================
  0x000    ``ID``: constant :data:`LOOPBACK_ID` (read only)
  0x001    ``SCRATCH0``: read/write
  0x002    ``SCRATCH1``: read/write
  0x003    ``TICKS``: number of ``tick`` pulses since reset (read only)
  0x004    ``RX_FRAMES``: frames accepted on ``rx_axis`` (read only)
  0x005    ``DATA_BYTES``: the configured bytes per beat (read only)
  ======== ======================================================

- ARP port: every request is answered on the next cycle with ``ok = (ip != 0)`` and
  ``mac = 0x02_00_00_00_00_00 | ip`` (zero when not ok).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from toe.hdl.config import ToeConfig

__all__ = [
    "LOOPBACK_ID",
    "REG_DATA_BYTES",
    "REG_ID",
    "REG_RX_FRAMES",
    "REG_SCRATCH0",
    "REG_SCRATCH1",
    "REG_TICKS",
    "HarnessLoopback",
    "arp_model",
]

LOOPBACK_ID = 0x100B_BAC4
REG_ID = 0x000
REG_SCRATCH0 = 0x001
REG_SCRATCH1 = 0x002
REG_TICKS = 0x003
REG_RX_FRAMES = 0x004
REG_DATA_BYTES = 0x005


def arp_model(ip_addr: int) -> tuple[bool, int]:
    """What the loopback's ARP port answers for ``ip_addr``: ``(ok, mac)``."""
    ok = ip_addr != 0
    return ok, (0x02_00_00_00_00_00 | ip_addr) if ok else 0


class HarnessLoopback(wiring.Component):
    """Loopback with the engine top's port list (see the module docstring).

    Ports (flat, so the Verilog names are exactly these):

    - ``rx_axis_{tdata,tkeep,tlast,tvalid}`` in, ``rx_axis_tready`` out: frames in.
    - ``tx_axis_{tdata,tkeep,tlast,tvalid}`` out, ``tx_axis_tready`` in: the same frames out.
    - ``tick`` in: time-base strobe, counted in ``TICKS``.
    - ``csr_addr`` [10], ``csr_wdata`` [32], ``csr_we`` in; ``csr_rdata`` [32] out.
    - ``arp_req_{valid,ip}`` in, ``arp_req_ready`` out; ``arp_resp_{valid,ok,mac}`` out,
      ``arp_resp_ready`` in.
    """

    def __init__(self, config: ToeConfig):
        self.config = config
        w = config.data_bytes
        super().__init__(
            {
                "rx_axis_tdata": In(8 * w),
                "rx_axis_tkeep": In(w),
                "rx_axis_tlast": In(1),
                "rx_axis_tvalid": In(1),
                "rx_axis_tready": Out(1),
                "tx_axis_tdata": Out(8 * w),
                "tx_axis_tkeep": Out(w),
                "tx_axis_tlast": Out(1),
                "tx_axis_tvalid": Out(1),
                "tx_axis_tready": In(1),
                "tick": In(1),
                "csr_addr": In(10),
                "csr_rdata": Out(32),
                "csr_wdata": In(32),
                "csr_we": In(1),
                "arp_req_valid": In(1),
                "arp_req_ready": Out(1),
                "arp_req_ip": In(32),
                "arp_resp_valid": Out(1),
                "arp_resp_ready": In(1),
                "arp_resp_ok": Out(1),
                "arp_resp_mac": Out(48),
            }
        )

    def elaborate(self, platform):
        m = Module()

        # Stream loopback: one pipeline register, full throughput.
        m.d.comb += self.rx_axis_tready.eq(~self.tx_axis_tvalid | self.tx_axis_tready)
        with m.If(self.rx_axis_tvalid & self.rx_axis_tready):
            m.d.sync += [
                self.tx_axis_tdata.eq(self.rx_axis_tdata),
                self.tx_axis_tkeep.eq(self.rx_axis_tkeep),
                self.tx_axis_tlast.eq(self.rx_axis_tlast),
                self.tx_axis_tvalid.eq(1),
            ]
        with m.Elif(self.tx_axis_tready):
            m.d.sync += self.tx_axis_tvalid.eq(0)

        # Register file.
        scratch0 = Signal(32)
        scratch1 = Signal(32)
        ticks = Signal(32)
        rx_frames = Signal(32)
        with m.If(self.tick):
            m.d.sync += ticks.eq(ticks + 1)
        with m.If(self.rx_axis_tvalid & self.rx_axis_tready & self.rx_axis_tlast):
            m.d.sync += rx_frames.eq(rx_frames + 1)
        with m.If(self.csr_we):
            with m.Switch(self.csr_addr):
                with m.Case(REG_SCRATCH0):
                    m.d.sync += scratch0.eq(self.csr_wdata)
                with m.Case(REG_SCRATCH1):
                    m.d.sync += scratch1.eq(self.csr_wdata)
        with m.Switch(self.csr_addr):
            with m.Case(REG_ID):
                m.d.sync += self.csr_rdata.eq(LOOPBACK_ID)
            with m.Case(REG_SCRATCH0):
                m.d.sync += self.csr_rdata.eq(scratch0)
            with m.Case(REG_SCRATCH1):
                m.d.sync += self.csr_rdata.eq(scratch1)
            with m.Case(REG_TICKS):
                m.d.sync += self.csr_rdata.eq(ticks)
            with m.Case(REG_RX_FRAMES):
                m.d.sync += self.csr_rdata.eq(rx_frames)
            with m.Case(REG_DATA_BYTES):
                m.d.sync += self.csr_rdata.eq(self.config.data_bytes)
            with m.Default():
                m.d.sync += self.csr_rdata.eq(0)

        # ARP port: one response per request, on the next cycle.
        m.d.comb += self.arp_req_ready.eq(~self.arp_resp_valid)
        with m.If(self.arp_req_valid & self.arp_req_ready):
            ok = self.arp_req_ip != 0
            m.d.sync += [
                self.arp_resp_valid.eq(1),
                self.arp_resp_ok.eq(ok),
                self.arp_resp_mac.eq(Mux(ok, 0x02_00_00_00_00_00 | self.arp_req_ip, 0)),
            ]
        with m.Elif(self.arp_resp_ready):
            m.d.sync += self.arp_resp_valid.eq(0)

        return m
