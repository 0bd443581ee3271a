"""TCP option parser: RFC 9293 s3.2 and MUST-4..7, MUST-64, MUST-68; RFC 7323; RFC 2018."""

from amaranth.hdl import Array, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..proto import tcp
from ..stream import be
from .meta import TcpOptions

__all__ = ["TcpOptionParser"]

WINDOW = 10  # bytes visible at the cursor: the longest fixed option (timestamps)


class TcpOptionParser(wiring.Component):
    """Walks the option list one option per cycle (one SACK block per cycle).

    Options may start at any byte (MUST-64) and come in any order (MUST-5).  Unknown
    kinds, and known kinds with an unexpected length, are skipped by their length byte
    (MUST-6).  A length below 2, a length byte missing at the end of the list, or a
    length running past the data offset is illegal (MUST-7): ``error`` is set and the
    segment is to be dropped.  EOL ends the list.  A window scale above 14 is used as 14
    (RFC 7323 s2.3).  When an option appears twice, the last one counts.

    Ports
    -----
    options : In
        The 40 option bytes following the fixed header (bytes past ``length`` ignored).
    length : In
        Option bytes in the segment: data offset * 4 - 20.
    start : In
        Begin parsing (one cycle pulse while ``idle``).
    idle : Out
        Not parsing; ``result`` and ``error`` describe the last list parsed.
    result : Out, error : Out
    """

    options: In(data.ArrayLayout(8, tcp.MAX_OPTION_BYTES))
    length: In(range(tcp.MAX_OPTION_BYTES + 1))
    start: In(1)
    idle: Out(1)
    result: Out(TcpOptions)
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        n = tcp.MAX_OPTION_BYTES

        # Each window byte is a mux indexed by the cursor itself (no adder in front), and
        # ``left`` (option bytes from the cursor to the end) is kept beside the cursor so
        # the length checks compare against a register: both keep the loop short.
        padded = [self.options[i] for i in range(n)] + [Const(0, 8)] * (WINDOW + 34)
        cursor = Signal(range(n + 35))
        left = Signal(range(n + 1))
        window = [Signal(8, name=f"window{k}") for k in range(WINDOW)]
        for k in range(WINDOW):
            m.d.comb += window[k].eq(Array(padded[k : k + n + 1])[cursor])

        kind, size = window[0], window[1]
        block = Signal(2)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    m.d.sync += [
                        cursor.eq(0), left.eq(self.length), self.result.eq(0), self.error.eq(0),
                    ]
                    m.next = "OPTION"
            with m.State("OPTION"):
                with m.If((left == 0) | (kind == tcp.OPT_EOL)):
                    m.next = "IDLE"
                with m.Elif(kind == tcp.OPT_NOP):
                    m.d.sync += [cursor.eq(cursor + 1), left.eq(left - 1)]
                with m.Elif((left == 1) | (size < 2) | (size > left)):
                    m.d.sync += self.error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [cursor.eq(cursor + size), left.eq(left - size)]
                    with m.If((kind == tcp.OPT_MSS) & (size == 4)):
                        m.d.sync += [
                            self.result.mss_valid.eq(1),
                            self.result.mss.eq(be(window[2:4])),
                        ]
                    with m.If((kind == tcp.OPT_WSCALE) & (size == 3)):
                        m.d.sync += self.result.wscale_valid.eq(1)
                        with m.If(window[2] > tcp.MAX_WSCALE):
                            m.d.sync += self.result.wscale.eq(tcp.MAX_WSCALE)
                        with m.Else():
                            m.d.sync += self.result.wscale.eq(window[2])
                    with m.If((kind == tcp.OPT_SACK_PERMITTED) & (size == 2)):
                        m.d.sync += self.result.sack_permitted.eq(1)
                    with m.If((kind == tcp.OPT_TIMESTAMPS) & (size == 10)):
                        m.d.sync += [
                            self.result.ts_valid.eq(1),
                            self.result.ts_val.eq(be(window[2:6])),
                            self.result.ts_ecr.eq(be(window[6:10])),
                        ]
                    sack_sizes = [2 + 8 * k for k in range(1, tcp.MAX_SACK_BLOCKS + 1)]
                    is_sack = (kind == tcp.OPT_SACK) & (
                        (size == sack_sizes[0]) | (size == sack_sizes[1])
                        | (size == sack_sizes[2]) | (size == sack_sizes[3]))
                    with m.If(is_sack):
                        count = (size - 2) >> 3
                        m.d.sync += [
                            cursor.eq(cursor + 2),
                            left.eq(left - 2),
                            self.result.sack_count.eq(count),
                            block.eq(0),
                        ]
                        m.next = "SACK_BLOCK"
            with m.State("SACK_BLOCK"):
                m.d.sync += [
                    self.result.sack[block].left.eq(be(window[0:4])),
                    self.result.sack[block].right.eq(be(window[4:8])),
                    cursor.eq(cursor + 8),
                    left.eq(left - 8),
                    block.eq(block + 1),
                ]
                with m.If(block + 1 == self.result.sack_count):
                    m.next = "OPTION"
        return m
