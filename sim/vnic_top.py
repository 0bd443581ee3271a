"""The top of the virtual NIC's engine: :class:`~hdl.top.ToeTop` behind input registers.

A Verilated model evaluates, at every call, all the logic that depends combinationally
on its inputs.  Behind :class:`~hdl.top.ToeTop`'s ports that is most of the receive
path, the command decoder and the register mux; evaluated twice per cycle (the clock's
two edges) it cost the native loop 40 % of its time.  Here every input is registered
first, so no logic depends on an input combinationally:

- ``rx_axis``, ``cmd`` and ``htx`` pass through two-entry FIFOs: ``*_ready`` is the FIFO
  not being full (a register), and a beat a cycle still flows;
- the engine's output streams (``tx_axis``, ``evt``, ``hrx``) are always taken: the
  virtual NIC buffers them; their ``*_ready`` ports exist and are ignored;
- ``csr_*`` and ``tick`` are registered (a register read answers two cycles after its
  address); the ARP lookup port is unused;
- the reset, too: Amaranth folds a synchronous reset into every register's next-state
  logic, so a reset *input* makes all of it input-dependent.  The clock domain has no
  reset port (``clk`` is a port of its own); ``soft_rst`` is registered and resets
  everything through a :class:`~amaranth.hdl.ResetInserter`.

The other ports and their names are those of :class:`~hdl.top.ToeTop`, except
``rx_axis_tuser``: a frame from the TAP device is never marked bad, so it is tied to 0.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop

__all__ = ["VnicTop"]


class VnicTop(wiring.Component):
    """:class:`~hdl.top.ToeTop` with registered inputs, for the native simulation."""

    def __init__(self, config: ToeConfig = ToeConfig()):
        self.config = config
        self._inner = ToeTop(config)
        members = {name: member for name, member in self._inner.signature.members.items()
                   if name != "rx_axis_tuser"}
        super().__init__({**members, "clk": In(1), "soft_rst": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.d.comb += ClockSignal("sync").eq(self.clk)
        reset = Signal()
        m.d.sync += reset.eq(self.soft_rst)
        top = self._inner
        m.submodules.top = ResetInserter(reset)(top)

        def registered_stream(name: str, fields: list[str], valid: str, ready: str) -> None:
            outer = [getattr(self, f) for f in fields]
            inner = [getattr(top, f) for f in fields]
            fifo = SyncFIFO(width=sum(len(s) for s in outer), depth=2)
            m.submodules[f"{name}_fifo"] = ResetInserter(reset)(fifo)
            m.d.comb += [
                fifo.w_data.eq(Cat(*outer)),
                fifo.w_en.eq(getattr(self, valid)),
                getattr(self, ready).eq(fifo.w_rdy),
                Cat(*inner).eq(fifo.r_data),
                getattr(top, valid).eq(fifo.r_rdy),
                fifo.r_en.eq(getattr(top, ready)),
            ]

        registered_stream("rx", ["rx_axis_tdata", "rx_axis_tkeep", "rx_axis_tlast"],
                          "rx_axis_tvalid", "rx_axis_tready")
        registered_stream("cmd", ["cmd_data"], "cmd_valid", "cmd_ready")
        registered_stream("htx", ["htx_data"], "htx_valid", "htx_ready")

        m.d.comb += [
            self.tx_axis_tdata.eq(top.tx_axis_tdata),
            self.tx_axis_tkeep.eq(top.tx_axis_tkeep),
            self.tx_axis_tlast.eq(top.tx_axis_tlast),
            self.tx_axis_tvalid.eq(top.tx_axis_tvalid),
            top.tx_axis_tready.eq(1),
            self.evt_valid.eq(top.evt_valid),
            self.evt_data.eq(top.evt_data),
            top.evt_ready.eq(1),
            self.hrx_valid.eq(top.hrx_valid),
            self.hrx_data.eq(top.hrx_data),
            top.hrx_ready.eq(1),
            self.trace_data.eq(top.trace_data),
            self.csr_rdata.eq(top.csr_rdata),
            top.rx_axis_tuser.eq(0),
            top.arp_req_valid.eq(0),
            top.arp_resp_ready.eq(1),
        ]
        csr_addr, csr_wdata = Signal.like(self.csr_addr), Signal.like(self.csr_wdata)
        csr_we, tick = Signal(), Signal.like(self.tick)
        m.d.sync += [csr_addr.eq(self.csr_addr), csr_wdata.eq(self.csr_wdata),
                     csr_we.eq(self.csr_we), tick.eq(self.tick)]
        m.d.comb += [top.csr_addr.eq(csr_addr), top.csr_wdata.eq(csr_wdata),
                     top.csr_we.eq(csr_we), top.tick.eq(tick)]
        return m
