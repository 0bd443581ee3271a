"""Congestion control: the per-connection congestion window of RFC 5681, with the
algorithm that grows and cuts it as a pluggable part.

The engine keeps ``cwnd``, ``ssthresh`` and the algorithm's own state in the TCB, and
sends at most min(cwnd, SND.WND) beyond SND.UNA (:mod:`hdl.tcp.output`).  It classifies
what each ACK or timeout means and sends one :class:`CcEvent` here with the TCB's
values; :class:`CongestionControl` returns the new ``cwnd``, ``ssthresh`` and state,
which the engine writes back.  No per-connection state lives in this component.

What every algorithm shares is done here (RFC 5681, RFC 6582, RFC 6928):

=================  ==================================================================
event              rule
=================  ==================================================================
``INIT``           the connection is established: cwnd = IW (RFC 6928:
                   min(N * SMSS, max(2 * SMSS, N * 1460)), N = ``initial_window``),
                   or 1 SMSS if a SYN was retransmitted (RFC 5681 s3.1); ssthresh
                   arbitrarily high
``ACK``            new data acknowledged outside loss recovery: the algorithm's
                   ``on_ack`` (slow start, congestion avoidance)
``LOSS``           the third duplicate ACK (fast retransmit, RFC 5681 s3.2 steps 2-3):
                   ssthresh = the algorithm's ``on_loss``; cwnd = ssthresh + 3 SMSS,
                   or with SACK (``sack``) cwnd = ssthresh (RFC 6675 s5 (4.2))
``DUPACK``         a further duplicate ACK in recovery: cwnd += SMSS (s3.2 step 4);
                   with SACK unchanged (RFC 6675's pipe counts what left the network)
``PARTIAL``        a partial ACK in recovery (RFC 6582 s3.2 step 5): cwnd -= the bytes
                   acknowledged, + SMSS if they were at least SMSS; with SACK
                   unchanged
``EXIT``           the full ACK (RFC 6582 s3.2 step 3, option 1): cwnd =
                   min(ssthresh, max(FlightSize, SMSS) + SMSS)
``RTO``            a retransmission timeout (RFC 5681 s3.1, eq. 4): ssthresh = the
                   algorithm's ``on_loss`` for the first timeout of a segment (held on
                   repeats, ``repeat``); cwnd = 1 SMSS (the loss window)
``ECE``            an ECN echo, once per window (RFC 3168 s6.1.2): ssthresh = cwnd =
                   the algorithm's ``on_loss``
=================  ==================================================================

Writing an algorithm: one module ``hdl/tcp/cc_<name>.py`` with a subclass of
:class:`CongestionAlgorithm` decorated with :func:`register`; it declares its state
layout and builds ``on_ack`` and ``on_loss`` from the registered request (it may take
several cycles: it raises ``done`` when its outputs hold).  ``ToeConfig.congestion``
names the algorithms a build holds, the first the one a connection starts with
(``"newreno"``, ``"cubic,newreno"``); the TCB's ``cc_algo`` picks one per connection
(SET_OPTION CONGESTION) and ``cc_state`` is as wide as the widest algorithm's state.
docs/congestion.md walks through one.
"""

import importlib
import pkgutil

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .seq import seq_min

__all__ = ["CcEvent", "CongestionAlgorithm", "CongestionControl", "algorithm", "register",
           "algorithm_names", "cc_state_bits", "cc_algo_bits", "cc_request_layout",
           "cc_result_layout", "initial_window", "SSTHRESH_MAX", "CWND_MAX"]

#: ssthresh "arbitrarily high" (RFC 5681 s3.1) and the largest cwnd (2 GiB - 1).
SSTHRESH_MAX = (1 << 31) - 1
CWND_MAX = (1 << 31) - 1


class CcEvent(enum.Enum, shape=3):
    """What happened to the connection (see the module's table)."""

    INIT = 0
    ACK = 1
    LOSS = 2
    DUPACK = 3
    PARTIAL = 4
    EXIT = 5
    RTO = 6
    ECE = 7


def cc_request_layout(state_bits: int, algo_bits: int = 1) -> data.StructLayout:
    return data.StructLayout({
        "event": CcEvent,
        "algo": algo_bits,  # which of the build's algorithms (the TCB's cc_algo)
        "acked": 32,  # bytes newly acknowledged (ACK, PARTIAL)
        "flight": 32,  # FlightSize: SND.MAX - SND.UNA (after the ACK, for EXIT)
        "smss": 16,
        "cwnd": 32,
        "ssthresh": 32,
        "state": state_bits,  # the algorithm's TCB bits
        "repeat": 1,  # RTO: the segment had timed out before (ssthresh held)
        "syn_lost": 1,  # INIT: a SYN or SYN-ACK was retransmitted
        "sack": 1,  # SACK agreed: recovery by RFC 6675's pipe, cwnd not inflated
        "now": 32,  # the microsecond time base
        "srtt_us": 32,  # the smoothed RTT (0 before the first sample)
    })


def cc_result_layout(state_bits: int) -> data.StructLayout:
    return data.StructLayout({"cwnd": 32, "ssthresh": 32, "state": state_bits})


def initial_window(smss, segments: int):
    """RFC 6928 (with N = ``segments`` for its 10): min(N * SMSS, max(2 * SMSS, N * 1460))."""
    n_smss = smss * segments
    floor = Mux(smss * 2 > segments * 1460, smss * 2, segments * 1460)
    return Mux(n_smss < floor, n_smss, floor)


_ALGORITHMS: dict[str, type] = {}


def register(cls):
    """Class decorator: make a :class:`CongestionAlgorithm` selectable by its ``name``."""
    _ALGORITHMS[cls.name] = cls
    return cls


def algorithm_names(config) -> tuple[str, ...]:
    """The algorithms a build holds, in SET_OPTION CONGESTION's numbering."""
    return tuple(name.strip() for name in config.congestion.split(","))


def cc_state_bits(config) -> int:
    """The TCB's ``cc_state``: as wide as the widest algorithm's state."""
    return max(algorithm(name).state_layout.size for name in algorithm_names(config))


def cc_algo_bits(config) -> int:
    return max(1, (len(algorithm_names(config)) - 1).bit_length())


def algorithm(name: str) -> type:
    """The algorithm class called ``name``, from the ``cc_*`` modules of this package."""
    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name.startswith("cc_"):
            importlib.import_module(f"{package}.{info.name}")
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown congestion control {name!r}; known: {sorted(_ALGORITHMS)}")
    return _ALGORITHMS[name]


class CongestionAlgorithm:
    """One congestion control algorithm: how cwnd grows on ACKs and what ssthresh a
    loss leaves.  Subclasses set ``name`` and ``state_layout`` and implement
    :meth:`elaborate`."""

    name = ""
    state_layout = data.StructLayout({"unused": 1})

    def __init__(self, config):
        self.cfg = config

    def state_of(self, r):
        """The request's algorithm state, as a view of :attr:`state_layout`."""
        return data.View(self.state_layout, r.state[:self.state_layout.size])

    def elaborate(self, m: Module, r, start) -> dict:
        """Build the algorithm from the registered request ``r``
        (:func:`cc_request_layout`); ``start`` is high in the first cycle ``r`` holds a
        new request for this algorithm.  Return a dict of values: ``on_ack`` (cwnd
        after the ACK of ``r.acked`` bytes), ``ack_state``, ``on_loss`` (ssthresh after
        a loss), ``loss_state``, ``init_state``, and ``done`` (the values hold now; a
        multi-cycle algorithm raises it when they do, from ``start`` on)."""
        raise NotImplementedError


class CongestionControl(wiring.Component):
    """The rules every algorithm shares, around the build's :class:`CongestionAlgorithm`
    (one or several: the request's ``algo`` picks one).

    Ports
    -----
    request : In(stream of :func:`cc_request_layout`)
    result : Out(stream of :func:`cc_result_layout`)

    Latency: a request taken on edge t is answered from edge t + 2 with a one-cycle
    algorithm (one cycle more per extra cycle of a multi-cycle one).  One request at
    a time.
    """

    def __init__(self, config):
        self.cfg = config
        self.algorithms = [algorithm(name)(config) for name in algorithm_names(config)]
        self.state_bits = cc_state_bits(config)
        self.algo_bits = cc_algo_bits(config)
        super().__init__({
            "request": In(stream.Signature(cc_request_layout(self.state_bits,
                                                             self.algo_bits))),
            "result": Out(stream.Signature(cc_result_layout(self.state_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        r = Signal(cc_request_layout(self.state_bits, self.algo_bits))
        busy, start = Signal(), Signal()
        m.d.comb += self.request.ready.eq(~busy & ~self.result.valid)
        m.d.sync += start.eq(self.request.valid & self.request.ready)
        with m.If(self.request.valid & self.request.ready):
            m.d.sync += [r.eq(self.request.payload), busy.eq(1)]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += self.result.valid.eq(0)

        # Every algorithm of the build sees the request; the chosen one answers.
        keys = ("on_ack", "ack_state", "on_loss", "loss_state", "init_state", "done")
        widths = {"on_ack": 32, "on_loss": 32, "done": 1}
        a = {key: Signal(widths.get(key, self.state_bits), name=f"cc_{key}") for key in keys}
        for index, algo in enumerate(self.algorithms):
            values = algo.elaborate(m, r, start & (r.algo == index))
            with m.If(r.algo == index):
                m.d.comb += [a[key].eq(values[key]) for key in keys]
        smss = r.smss
        cwnd, ssthresh, state = Signal(32), Signal(32), Signal(self.state_bits)
        m.d.comb += [cwnd.eq(r.cwnd), ssthresh.eq(r.ssthresh), state.eq(r.state)]
        with m.Switch(r.event):
            with m.Case(CcEvent.INIT):
                iw = initial_window(smss, self.cfg.initial_window)
                m.d.comb += [cwnd.eq(Mux(r.syn_lost, smss, iw)), ssthresh.eq(SSTHRESH_MAX),
                             state.eq(a["init_state"])]
            with m.Case(CcEvent.ACK):
                m.d.comb += [cwnd.eq(seq_min(a["on_ack"], CWND_MAX)),
                             state.eq(a["ack_state"])]
            with m.Case(CcEvent.LOSS):
                m.d.comb += [ssthresh.eq(a["on_loss"]),
                             cwnd.eq(a["on_loss"] + Mux(r.sack, 0, 3 * smss)),
                             state.eq(a["loss_state"])]
            with m.Case(CcEvent.DUPACK):
                with m.If(~r.sack):
                    m.d.comb += cwnd.eq(seq_min(r.cwnd + smss, CWND_MAX))
            with m.Case(CcEvent.PARTIAL):
                left = Mux(r.acked < r.cwnd, r.cwnd - r.acked, 0)
                with m.If(~r.sack):
                    m.d.comb += cwnd.eq(Mux(r.acked >= smss, left + smss,
                                            Mux(left, left, smss)))
            with m.Case(CcEvent.EXIT):
                grown = Mux(r.flight > smss, r.flight, smss) + smss
                m.d.comb += cwnd.eq(Mux(grown < r.ssthresh, grown, r.ssthresh))
            with m.Case(CcEvent.ECE):
                m.d.comb += [ssthresh.eq(a["on_loss"]), cwnd.eq(a["on_loss"]),
                             state.eq(a["loss_state"])]
            with m.Case(CcEvent.RTO):
                with m.If(~r.repeat):
                    m.d.comb += [ssthresh.eq(a["on_loss"]), state.eq(a["loss_state"])]
                m.d.comb += cwnd.eq(smss)
        with m.If(busy & a["done"]):
            m.d.sync += [busy.eq(0), self.result.valid.eq(1),
                         self.result.payload.cwnd.eq(cwnd),
                         self.result.payload.ssthresh.eq(ssthresh),
                         self.result.payload.state.eq(state)]
        return m
