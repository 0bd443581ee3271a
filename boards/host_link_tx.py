"""The host link's board-to-host side: events, RX data and answers gathered into frames.

See :mod:`toe.boards.host_link` for the format.  Messages are written into one of two
2 KiB frame buffers (a memory ``data_bytes`` wide with a write enable per byte) while
the other buffer is read out a whole beat a cycle: headers and answers byte by byte,
RX data as many bytes a cycle as the buffer word at the write position holds (a beat in
one or two cycles).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import data_layout, event_layout
from toe.hdl.stream import beat_signature, keep_for
from toe.host.packet_transport import ETHERTYPE, LINK_STATS_FIELDS
from toe.host.socket_transport import Message

__all__ = ["HostLinkTx", "ReplyKind", "reply_layout", "FRAME_BYTES", "least", "place_bytes"]

FRAME_BYTES = 1514  # the Ethernet header and 1500 bytes of messages, without FCS
_HEADER = 14
_BUFFER = 2048


class ReplyKind:
    """What :class:`toe.boards.host_link.HostLinkRx` asks the TX side to send."""

    CSR_VALUE = 0
    HELLO = 1
    STATS = 2


reply_layout = data.StructLayout({"kind": 2, "addr": 16, "value": 32})


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


def least(*values):
    """The smallest of ``values`` (unsigned)."""
    best = values[0]
    for value in values[1:]:
        best = Mux(value < best, value, best)
    return best


def place_bytes(data, from_lane, to_lane, n, w: int):
    """The ``n`` bytes of the ``w``-byte word ``data`` from lane ``from_lane`` on, moved
    to lanes ``to_lane`` on: (the word, its per-lane enables)."""
    placed = ((data >> (from_lane * 8)) << (to_lane * 8))[: 8 * w]
    lanes = Cat(*(((k >= to_lane) & (k < to_lane + n)) for k in range(w)))
    return placed, lanes


class HostLinkTx(wiring.Component):
    """Engine events, RX data and answers out as host-link frames.

    Ports
    -----
    evt, host_rx : In(stream)
        The engine's ``evt`` and ``host_rx``.
    reply : In(stream of :data:`reply_layout`)
        CSRV values and HELLO/STATS requests, from :class:`HostLinkRx`.
    mac_addr, host_mac : In(48)
        The frames' source and destination addresses.
    stats : In(32 * len(LINK_STATS_FIELDS))
        The counters a STATS answer carries (each as a u64).
    o : Out(beat stream)
        Frames to the MAC (no FCS, at most :data:`FRAME_BYTES`).
    frame_sent : Out(1)
        Strobe: a frame's last beat was taken.
    """

    def __init__(self, config: ToeConfig, hello: bytes):
        w = config.data_bytes
        if w & (w - 1):
            raise ValueError("the host link needs a power-of-two data_bytes")
        if len(hello) + 3 > FRAME_BYTES - _HEADER:
            raise ValueError("the HELLO does not fit a frame")
        self.config = config
        self._hello = hello
        self._event_bytes = _nbytes(event_layout(config).size)
        super().__init__({
            "evt": In(stream.Signature(event_layout(config))),
            "host_rx": In(stream.Signature(data_layout(config))),
            "reply": In(stream.Signature(reply_layout)),
            "mac_addr": In(48),
            "host_mac": In(48),
            "stats": In(32 * len(LINK_STATS_FIELDS)),
            "o": Out(beat_signature(w)),
            "frame_sent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        w = cfg.data_bytes
        shift = (w - 1).bit_length()
        words = 2 * _BUFFER // w
        m.submodules.buf = buf = Memory(shape=8 * w, depth=words, init=[])
        wp = buf.write_port(granularity=8)
        rp = buf.read_port(transparent_for=())
        m.submodules.hello = rom = Memory(shape=8, depth=len(self._hello),
                                          init=list(self._hello))
        hello_port = rom.read_port()

        full = [Signal(name=f"full{k}") for k in range(2)]
        length = [Signal(11, name=f"length{k}") for k in range(2)]
        wsel = Signal()
        rsel = Signal()
        pos = Signal(11)  # next byte of the frame being written
        set_full = Signal()
        clear_full = Signal()

        def write(at, value):
            """Write byte ``value`` at byte ``at`` of the buffer being filled."""
            at11 = Signal(11)
            byte = Signal(8)
            m.d.comb += [at11.eq(at), byte.eq(value)]
            address = Cat(at11, wsel)
            m.d.comb += [wp.addr.eq(address[shift:]), wp.data.eq(Cat([byte] * w))]
            if shift:
                m.d.comb += wp.en.eq(1 << address[:shift])
            else:
                m.d.comb += wp.en.eq(1)

        # ---- writer
        n_stats = len(LINK_STATS_FIELDS)
        body_bytes = max(self._event_bytes, 6, 8 * n_stats)
        body = Signal(8 * body_bytes)
        body_len = Signal(16)
        msg_type = Signal(8)
        hidx = Signal(4)
        bidx = Signal(11)
        from_rom = Signal()
        hdr_at = Signal(11)  # the RXD message's type byte
        # RX beat being copied.
        rxb = Signal.like(self.host_rx.p)
        have = Signal()
        lane = Signal(range(w + 1))
        run_conn = Signal.like(self.host_rx.p.conn)
        run_last = Signal()
        patch = Signal(2)

        stats64 = Cat(*(Cat(self.stats[32 * k : 32 * k + 32], Const(0, 32))
                        for k in range(n_stats)))
        pending = self.evt.valid | self.host_rx.valid | self.reply.valid | have
        room = FRAME_BYTES - pos
        advance = Signal()
        m.d.comb += [hello_port.addr.eq(Mux(advance, bidx + 1, bidx)), hello_port.en.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += hidx.eq(0)
                with m.If(pending & ~Mux(wsel, full[1], full[0])):
                    m.next = "ETH"
            with m.State("ETH"):
                header = Cat(
                    Cat(self.host_mac.word_select(5 - k, 8) for k in range(6)),
                    Cat(self.mac_addr.word_select(5 - k, 8) for k in range(6)),
                    Const(ETHERTYPE >> 8, 8), Const(ETHERTYPE & 0xFF, 8))
                hdr_byte = header.word_select(hidx, 8)
                write(hidx, hdr_byte)
                m.d.sync += hidx.eq(hidx + 1)
                with m.If(hidx == _HEADER - 1):
                    m.d.sync += pos.eq(_HEADER)
                    m.next = "PICK"
            with m.State("PICK"):
                m.d.sync += [hidx.eq(0), bidx.eq(0), from_rom.eq(0)]
                with m.If(self.reply.valid):
                    kind = self.reply.p.kind
                    need = Mux(kind == ReplyKind.CSR_VALUE, 9,
                               Mux(kind == ReplyKind.HELLO, 3 + len(self._hello),
                                   3 + 8 * n_stats))
                    with m.If(need > room):
                        m.next = "CLOSE"
                    with m.Else():
                        m.d.comb += self.reply.ready.eq(1)
                        m.d.sync += body_len.eq(need - 3)
                        with m.Switch(kind):
                            with m.Case(ReplyKind.CSR_VALUE):
                                m.d.sync += [msg_type.eq(Message.CSR_VALUE),
                                             body.eq(Cat(self.reply.p.addr, self.reply.p.value))]
                            with m.Case(ReplyKind.HELLO):
                                m.d.sync += [msg_type.eq(Message.HELLO), from_rom.eq(1)]
                            with m.Default():
                                m.d.sync += [msg_type.eq(Message.STATS), body.eq(stats64)]
                        m.next = "MSG"
                with m.Elif(self.evt.valid):
                    with m.If(3 + self._event_bytes > room):
                        m.next = "CLOSE"
                    with m.Else():
                        m.d.comb += self.evt.ready.eq(1)
                        m.d.sync += [msg_type.eq(Message.EVENT), body.eq(self.evt.p),
                                     body_len.eq(self._event_bytes)]
                        m.next = "MSG"
                with m.Elif(have | self.host_rx.valid):
                    with m.If(room < 7):
                        m.next = "CLOSE"
                    with m.Else():
                        m.d.sync += [hdr_at.eq(pos), msg_type.eq(Message.RX_DATA)]
                        with m.If(~have):
                            m.d.comb += self.host_rx.ready.eq(1)
                            m.d.sync += [rxb.eq(self.host_rx.p), have.eq(1), lane.eq(0),
                                         run_conn.eq(self.host_rx.p.conn)]
                        with m.Else():
                            m.d.sync += run_conn.eq(rxb.conn)
                        m.next = "RXD_HEAD"
                with m.Else():
                    m.next = "CLOSE"
            with m.State("MSG"):  # type and length
                value = Cat(msg_type, body_len[:8], body_len[8:]).word_select(hidx[:2], 8)
                write(pos, value)
                m.d.sync += [pos.eq(pos + 1), hidx.eq(hidx + 1)]
                with m.If(hidx == 2):
                    m.d.sync += bidx.eq(0)
                    m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += advance.eq(1)
                write(pos, Mux(from_rom, hello_port.data, body.word_select(bidx, 8)))
                m.d.sync += [pos.eq(pos + 1), bidx.eq(bidx + 1)]
                with m.If(bidx == body_len - 1):
                    m.next = "PICK"
            with m.State("RXD_HEAD"):  # type, length (patched), connection, last (patched)
                conn16 = Signal(16)
                m.d.comb += conn16.eq(run_conn)
                value = Cat(msg_type, Const(0, 16), conn16, Const(0, 8)).word_select(hidx[:3], 8)
                write(pos, value)
                m.d.sync += [pos.eq(pos + 1), hidx.eq(hidx + 1)]
                with m.If(hidx == 5):
                    m.next = "RXD_DATA"
            with m.State("RXD_DATA"):
                with m.If(have & (lane < rxb.count)):
                    with m.If(pos == FRAME_BYTES):
                        m.d.sync += [run_last.eq(0), patch.eq(0)]
                        m.next = "PATCH"  # the rest of the beat goes in the next frame
                    with m.Else():
                        # As many of the beat's bytes as fit the buffer word at ``pos``
                        # (and the frame): a beat in one or two cycles.
                        off = pos[:shift]
                        n = Signal(range(w + 1))
                        m.d.comb += n.eq(least(w - off, rxb.count - lane, FRAME_BYTES - pos))
                        placed, lanes = place_bytes(rxb.data, lane, off, n, w)
                        address = Cat(pos, wsel)
                        m.d.comb += [wp.addr.eq(address[shift:]), wp.data.eq(placed),
                                     wp.en.eq(lanes)]
                        m.d.sync += [pos.eq(pos + n), lane.eq(lane + n)]
                        # The beat's last bytes: the next beat of the run comes in now.
                        with m.If((lane + n == rxb.count) & ~rxb.last & self.host_rx.valid
                                  & (self.host_rx.p.conn == run_conn)):
                            m.d.comb += self.host_rx.ready.eq(1)
                            m.d.sync += [rxb.eq(self.host_rx.p), lane.eq(0)]
                with m.Elif(have):  # the beat is written
                    with m.If(rxb.last):
                        m.d.sync += [have.eq(0), run_last.eq(1), patch.eq(0)]
                        m.next = "PATCH"
                    with m.Elif(self.host_rx.valid & (self.host_rx.p.conn == run_conn)):
                        m.d.comb += self.host_rx.ready.eq(1)
                        m.d.sync += [rxb.eq(self.host_rx.p), lane.eq(0)]
                    with m.Else():
                        m.d.sync += [have.eq(0), run_last.eq(0), patch.eq(0)]
                        m.next = "PATCH"
            with m.State("PATCH"):
                run_len = pos - hdr_at - 3
                with m.Switch(patch):
                    with m.Case(0):
                        write(hdr_at + 1, run_len[:8])
                    with m.Case(1):
                        write(hdr_at + 2, run_len[8:])
                    with m.Default():
                        write(hdr_at + 5, run_last)
                m.d.sync += patch.eq(patch + 1)
                with m.If(patch == 2):
                    with m.If(have & (pos == FRAME_BYTES)):
                        m.next = "CLOSE"
                    with m.Else():
                        m.next = "PICK"
            with m.State("CLOSE"):
                m.d.comb += set_full.eq(1)
                for k in range(2):
                    with m.If(wsel == k):
                        m.d.sync += length[k].eq(pos)
                m.d.sync += [wsel.eq(~wsel), pos.eq(0)]
                m.next = "IDLE"

        # ---- reader: a beat a cycle from the full buffer
        out_valid = Signal()
        sent = Signal(11)  # bytes issued of the frame being read
        issued_all = Signal()
        rlen = Mux(rsel, length[1], length[0])
        rfull = Mux(rsel, full[1], full[0])
        out_last = Signal()
        out_keep = Signal(w)
        m.d.comb += [rp.en.eq(0), rp.addr.eq(Cat(sent[shift:], rsel)), self.o.p.data.eq(rp.data),
                     self.o.p.last.eq(out_last), self.o.p.keep.eq(out_keep),
                     self.o.valid.eq(out_valid)]
        with m.If(~out_valid | self.o.ready):
            with m.If(rfull & ~issued_all):
                is_last = sent + w >= rlen
                m.d.comb += rp.en.eq(1)
                m.d.sync += [out_valid.eq(1), out_last.eq(is_last), sent.eq(sent + w),
                             out_keep.eq(Mux(is_last, keep_for(rlen - sent, w), (1 << w) - 1)),
                             issued_all.eq(is_last)]
            with m.Else():
                m.d.sync += out_valid.eq(0)
        with m.If(self.o.valid & self.o.ready & self.o.p.last):
            m.d.comb += [clear_full.eq(1), self.frame_sent.eq(1)]
            m.d.sync += [rsel.eq(~rsel), sent.eq(0), issued_all.eq(0)]
        for k in range(2):
            with m.If(set_full & (wsel == k)):
                m.d.sync += full[k].eq(1)
            with m.Elif(clear_full & (rsel == k)):
                m.d.sync += full[k].eq(0)
        return m
