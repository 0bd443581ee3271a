"""The host link: the virtual NIC's socket messages carried in raw Ethernet frames.

The host driver reaches a board over Ethernet with the message format of the virtual
NIC's socket (``host/socket_transport.py``, "Wire format": type u8, length u16 little
endian, payload), several messages to a frame, in frames of EtherType
:data:`~toe.host.packet_transport.ETHERTYPE` (0x88B5, IEEE 802 "local experimental").
:class:`HostLinkBridge` turns such frames into the engine's ``cmd`` and ``host_tx``
streams and register accesses, and the engine's ``evt`` and ``host_rx`` streams and
the register answers into frames to the host.  ``host/packet_transport.py`` is the
other end.

Host to board (:class:`HostLinkRx`): a frame addressed to the board (or broadcast) with
the EtherType is read message by message: CMD (0x02), TX beat (0x04), TXD (0x0D: u16
connection and bytes, packed into beats; none: the end of the stream), CSRW (0x06),
CSRR (0x07, answered by CSRV), HELLO (0x01, answered by HELLO with the configuration as
JSON) and STATS (0x0B, answered by the link's counters,
:data:`~toe.host.packet_transport.LINK_STATS_FIELDS`).  Other types are skipped, as
the virtual NIC does.  A message is carried out only if it lies wholly inside the
frame: at the first message whose length runs past the frame's end the rest of the
frame is dropped and counted (``malformed``); fewer than 3 bytes left (Ethernet padding)
end a frame.  A frame's messages are taken in order, and every CSRR is answered in
order, so a CSRV tells the host that everything it sent before the CSRR was taken (the
transport's flow control rests on this).  The frame's source address becomes the
destination of the board's frames.

Board to host (:class:`HostLinkTx`): EVT (0x03), RXD (0x0E: u16 connection, u8
``last``, the bytes of consecutive RX beats of one connection), CSRV, HELLO and STATS
messages are gathered into frames of at most 1514 bytes (no FCS) in one of two 2 KiB
buffers while the other is sent: a frame goes out as soon as nothing more is waiting.

Throughput: host to board, a TXD message's data moves up to a beat a cycle (as many
bytes as the input beat holds, the message has left and the output beat has room);
board to host, RX data goes into the frame buffer a buffer word at a time
(:class:`HostLinkTx`); headers, commands, events and answers move a byte a cycle
(docs/boards.md works out the goodput).  ``data_bytes`` must be a power of two.
"""

import json
from dataclasses import asdict

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from toe.hdl.config import ToeConfig
from toe.hdl.host_if import command_layout, data_layout, event_layout
from toe.hdl.stream import beat_signature
from toe.host.packet_transport import ETHERTYPE, LINK_STATS_FIELDS
from toe.host.socket_transport import Message

from .frame_fifo import FrameFilter, flagged_signature
from .host_link_tx import HostLinkTx, ReplyKind, least, place_bytes, reply_layout

__all__ = ["HostLinkBridge", "HostLinkRx", "HostLinkTx", "hello_bytes", "reply_layout"]

def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


def hello_bytes(config: ToeConfig, board: str) -> bytes:
    """The HELLO the board sends: the virtual NIC's JSON (``config``) and the board."""
    return json.dumps({"config": asdict(config), "board": board},
                      separators=(",", ":")).encode()


def _popcount(m, keep, w):
    count = Signal(range(w + 1))
    for n in range(1, w + 1):
        with m.If(keep == (1 << n) - 1):
            m.d.comb += count.eq(n)
    return count


class HostLinkRx(wiring.Component):
    """Host-link frames in, engine commands, TX data and register accesses out.

    Ports
    -----
    i : In(beat stream), i_length : In(16)
        Good frames and their lengths (from a :class:`FrameFilter`).
    mac_addr : In(48)
        The board's address (frames to it or to broadcast are taken).
    cmd, host_tx : Out(stream)
        To the engine's ``cmd`` and ``host_tx``.
    csr_addr, csr_wdata, csr_we : Out; csr_rdata : In
        The engine's register bus (``rdata`` one cycle after ``addr``).
    reply : Out(stream of :data:`reply_layout`)
        CSRV answers and HELLO/STATS requests, in order, to :class:`HostLinkTx`.
    host_mac : Out(48)
        The source address of the last host-link frame taken.
    frame_ok, frame_ignored, frame_malformed : Out(1)
        Strobes: a host-link frame taken (its header was ours); a frame for someone
        else or of another EtherType; a frame shorter than its header, or a taken frame
        cut at a message that runs past its end (the messages before it were carried
        out).
    """

    def __init__(self, config: ToeConfig):
        self.config = config
        w = config.data_bytes
        self._cmd_bytes = _nbytes(command_layout(config).size)
        self._beat_bytes = _nbytes(data_layout(config).size)
        super().__init__({
            "i": In(beat_signature(w)),
            "i_length": In(16),
            "mac_addr": In(48),
            "cmd": Out(stream.Signature(command_layout(config))),
            "host_tx": Out(stream.Signature(data_layout(config))),
            "csr_addr": Out(10), "csr_wdata": Out(32), "csr_we": Out(1), "csr_rdata": In(32),
            "reply": Out(stream.Signature(reply_layout)),
            "host_mac": Out(48),
            "frame_ok": Out(1), "frame_ignored": Out(1), "frame_malformed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        w = cfg.data_bytes

        # The frame, one byte a cycle.
        beat = Signal.like(self.i.p)
        have = Signal()
        lane = Signal(range(w))
        pos = Signal(16)  # bytes of the frame consumed before this one
        frame_len = Signal(16)
        count = _popcount(m, beat.keep, w)
        byte = beat.data.word_select(lane, 8)
        consume = Signal()
        step = Signal(range(w + 1), init=1)  # bytes consumed with ``consume``
        end_of_beat = Signal()
        m.d.comb += end_of_beat.eq(lane + step == count)
        last_byte = beat.last & end_of_beat
        m.d.comb += self.i.ready.eq(~have | (consume & end_of_beat))
        with m.If(consume):
            m.d.sync += [pos.eq(Mux(last_byte, 0, pos + step)), lane.eq(lane + step)]
            with m.If(end_of_beat):
                m.d.sync += [have.eq(0), lane.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(self.i.p), have.eq(1), frame_len.eq(self.i_length)]
        take = have & consume  # shorthand: a byte is consumed this cycle

        # Ethernet header.
        to_us = Signal(init=1)
        to_all = Signal(init=1)
        src = Signal(48)
        kind_ok = Signal(init=1)
        # Message header and body.
        msg_type = Signal(8)
        msg_len = Signal(16)
        idx = Signal(16)
        acc_bytes = max(self._cmd_bytes, self._beat_bytes, 6)
        acc = Signal(8 * acc_bytes)
        done = Signal()  # the frame's last byte has been consumed
        wait = Signal(2)
        # TXD beat being packed.
        txd_conn = Signal(16)
        txd_data = Signal(8 * w)
        txd_count = Signal(range(w + 1))
        txd_last = Signal()

        m.d.comb += [self.csr_addr.eq(acc[0:10]), self.csr_wdata.eq(acc[16:48])]
        m.d.comb += [
            self.cmd.p.eq(acc[: command_layout(cfg).size]),
            self.reply.p.addr.eq(acc[0:16]),
            self.reply.p.value.eq(self.csr_rdata),
        ]
        with m.If(msg_type == Message.TX_DATA):
            m.d.comb += [self.host_tx.p.conn.eq(txd_conn), self.host_tx.p.data.eq(txd_data),
                         self.host_tx.p.count.eq(txd_count), self.host_tx.p.last.eq(txd_last)]
        with m.Else():
            m.d.comb += self.host_tx.p.eq(acc[: data_layout(cfg).size])

        mac_byte = Signal(8)
        with m.Switch(pos):
            for k in range(6):
                with m.Case(k):
                    m.d.comb += mac_byte.eq(self.mac_addr[8 * (5 - k) : 8 * (6 - k)])

        def next_message():
            with m.If(done | (take & last_byte)):
                m.next = "ETH"
            with m.Else():
                m.next = "TYPE"

        with m.FSM():
            with m.State("ETH"):
                m.d.comb += consume.eq(have)
                with m.If(take):
                    m.d.sync += done.eq(last_byte)
                    with m.If(pos == 0):
                        m.d.sync += [to_us.eq(byte == mac_byte),
                                     to_all.eq(byte == 0xFF), kind_ok.eq(1)]
                    with m.Elif(pos < 6):
                        m.d.sync += [to_us.eq(to_us & (byte == mac_byte)),
                                     to_all.eq(to_all & (byte == 0xFF))]
                    with m.Elif(pos < 12):
                        m.d.sync += src.eq(Cat(byte, src[:40]))
                    with m.Elif(pos == 12):
                        m.d.sync += kind_ok.eq(byte == ETHERTYPE >> 8)
                    with m.If(last_byte & (pos < 13)):
                        m.d.comb += self.frame_malformed.eq(1)  # a runt: no header
                    with m.Elif(pos == 13):
                        ours = (to_us | to_all) & kind_ok & (byte == (ETHERTYPE & 0xFF))
                        with m.If(~ours):
                            m.d.comb += self.frame_ignored.eq(1)
                            with m.If(~last_byte):
                                m.next = "SKIP"
                        with m.Else():
                            m.d.comb += self.frame_ok.eq(1)
                            m.d.sync += self.host_mac.eq(src)
                            with m.If(~last_byte):
                                m.next = "TYPE"
            with m.State("SKIP"):
                m.d.comb += consume.eq(have)
                with m.If(take & last_byte):
                    m.next = "ETH"
            with m.State("TYPE"):
                with m.If(frame_len - pos < 3):  # Ethernet padding
                    m.next = "SKIP"
                with m.Else():
                    m.d.comb += consume.eq(have)
                    with m.If(take):
                        m.d.sync += [msg_type.eq(byte), idx.eq(0)]
                        m.next = "LEN0"
            with m.State("LEN0"):
                m.d.comb += consume.eq(have)
                with m.If(take):
                    m.d.sync += msg_len[0:8].eq(byte)
                    m.next = "LEN1"
            with m.State("LEN1"):
                m.d.comb += consume.eq(have)
                length = Cat(msg_len[0:8], byte)
                with m.If(take):
                    m.d.sync += [msg_len.eq(length), done.eq(last_byte), acc.eq(0),
                                 txd_count.eq(0), txd_data.eq(0), wait.eq(0)]
                    with m.If(pos + 1 + length > frame_len):
                        m.d.comb += self.frame_malformed.eq(1)
                        with m.If(last_byte):
                            m.next = "ETH"
                        with m.Else():
                            m.next = "SKIP"
                    with m.Elif(length == 0):
                        m.next = "ACT"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                txd = msg_type == Message.TX_DATA
                beat_full = txd & (idx >= 2) & (txd_count == w)
                # A full beat goes (more is to come) in the cycle that starts the next.
                with m.If(~beat_full | self.host_tx.ready):
                    m.d.comb += consume.eq(have)
                with m.If(beat_full):
                    m.d.comb += self.host_tx.valid.eq(1)
                    with m.If(self.host_tx.ready):
                        m.d.sync += [txd_count.eq(0), txd_data.eq(0)]
                out_count = Mux(beat_full, 0, txd_count)
                out_data = Mux(beat_full, 0, txd_data)
                # A TXD message's data moves as many bytes a cycle as the input beat
                # holds, the message has left and the output beat has room: the bytes
                # from ``lane`` on, shifted to ``txd_count`` (the output lane of the
                # data byte ``idx - 2``, as each beat holds w bytes of the message).
                fast = txd & (idx >= 2)
                n = Signal(range(w + 1))
                m.d.comb += n.eq(least(count - lane, msg_len - idx, w - out_count))
                with m.If(fast):
                    m.d.comb += step.eq(n)
                with m.If(take):
                    m.d.sync += [idx.eq(idx + step), done.eq(last_byte)]
                    with m.If(~fast):
                        for k in range(acc_bytes):
                            with m.If(idx == k):
                                m.d.sync += acc[8 * k : 8 * k + 8].eq(byte)
                    with m.If(idx == 0):
                        m.d.sync += txd_conn[0:8].eq(byte)
                    with m.If(idx == 1):
                        m.d.sync += txd_conn[8:16].eq(byte)
                    with m.If(fast):
                        placed, lanes = place_bytes(beat.data, lane, out_count, n, w)
                        mask = Cat(*(lanes[k].replicate(8) for k in range(w)))
                        m.d.sync += [txd_data.eq(out_data | (placed & mask)),
                                     txd_count.eq(out_count + n)]
                    with m.If(idx + step == msg_len):
                        m.next = "ACT"
            with m.State("ACT"):
                with m.Switch(msg_type):
                    with m.Case(Message.COMMAND):
                        m.d.comb += self.cmd.valid.eq(1)
                        with m.If(self.cmd.ready):
                            next_message()
                    with m.Case(Message.TX_BEAT):
                        m.d.comb += self.host_tx.valid.eq(1)
                        with m.If(self.host_tx.ready):
                            next_message()
                    with m.Case(Message.TX_DATA):
                        m.d.comb += [self.host_tx.valid.eq(msg_len >= 2), txd_last.eq(1)]
                        with m.If(self.host_tx.ready | (msg_len < 2)):
                            next_message()
                    with m.Case(Message.CSR_WRITE):
                        m.d.comb += self.csr_we.eq(1)
                        next_message()
                    with m.Case(Message.CSR_READ):
                        with m.If(wait < 2):
                            m.d.sync += wait.eq(wait + 1)
                        with m.Else():
                            m.d.comb += [self.reply.valid.eq(1),
                                         self.reply.p.kind.eq(ReplyKind.CSR_VALUE)]
                            with m.If(self.reply.ready):
                                next_message()
                    with m.Case(Message.HELLO, Message.STATS):
                        m.d.comb += [self.reply.valid.eq(1), self.reply.p.kind.eq(
                            Mux(msg_type == Message.HELLO, ReplyKind.HELLO, ReplyKind.STATS))]
                        with m.If(self.reply.ready):
                            next_message()
                    with m.Default():
                        next_message()
        return m


class HostLinkBridge(wiring.Component):
    """The host link at the engine's ports: frames in and out, the engine's host
    interface and register bus on the other side.

    ``i`` takes a MAC's received frames with its error flag (the whole port on a board
    with a second port, or what :class:`~toe.boards.frame_fifo.EtherTypeSplitter` takes
    off the network port); they pass a :class:`FrameFilter` of ``buffer_bytes``, so bad
    frames are dropped whole.  ``o`` gives frames for the MAC (or for a merge with the
    engine's frames).  ``cmd``, ``host_tx``, ``evt``, ``host_rx`` and the ``csr_*`` bus
    connect to :class:`toe.hdl.core.ToeCore`.  ``stats``: the counters of
    :data:`~toe.host.packet_transport.LINK_STATS_FIELDS`, 32 bits each, also sent in
    STATS answers.
    """

    def __init__(self, config: ToeConfig, board: str = "sim", buffer_bytes: int = 8192):
        self.config = config
        self._hello = hello_bytes(config, board)
        self._buffer_bytes = buffer_bytes
        w = config.data_bytes
        super().__init__({
            "i": In(flagged_signature(w)),
            "o": Out(beat_signature(w)),
            "mac_addr": In(48),
            "cmd": Out(stream.Signature(command_layout(config))),
            "host_tx": Out(stream.Signature(data_layout(config))),
            "evt": In(stream.Signature(event_layout(config))),
            "host_rx": In(stream.Signature(data_layout(config))),
            "csr_addr": Out(10), "csr_wdata": Out(32), "csr_we": Out(1), "csr_rdata": In(32),
            "stats": Out(32 * len(LINK_STATS_FIELDS)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.filter = filt = FrameFilter(cfg.data_bytes, self._buffer_bytes)
        m.submodules.rx = rx = HostLinkRx(cfg)
        m.submodules.tx = tx = HostLinkTx(cfg, self._hello)
        m.submodules.replies = replies = SyncFIFOBuffered(width=reply_layout.size, depth=4)
        wiring.connect(m, wiring.flipped(self.i), filt.i)
        wiring.connect(m, filt.o, rx.i)
        m.d.comb += [rx.i_length.eq(filt.o_length), rx.mac_addr.eq(self.mac_addr)]
        wiring.connect(m, rx.cmd, wiring.flipped(self.cmd))
        wiring.connect(m, rx.host_tx, wiring.flipped(self.host_tx))
        m.d.comb += [
            self.csr_addr.eq(rx.csr_addr), self.csr_wdata.eq(rx.csr_wdata),
            self.csr_we.eq(rx.csr_we), rx.csr_rdata.eq(self.csr_rdata),
            replies.w_data.eq(rx.reply.p), replies.w_en.eq(rx.reply.valid),
            rx.reply.ready.eq(replies.w_rdy),
            tx.reply.p.eq(replies.r_data), tx.reply.valid.eq(replies.r_rdy),
            replies.r_en.eq(tx.reply.ready),
        ]
        wiring.connect(m, wiring.flipped(self.evt), tx.evt)
        wiring.connect(m, wiring.flipped(self.host_rx), tx.host_rx)
        wiring.connect(m, tx.o, wiring.flipped(self.o))
        m.d.comb += [tx.mac_addr.eq(self.mac_addr), tx.host_mac.eq(rx.host_mac),
                     tx.stats.eq(self.stats)]
        strobes = {
            "frames_in": rx.frame_ok, "frames_ignored": rx.frame_ignored,
            "frames_malformed": rx.frame_malformed, "frames_bad": filt.dropped_bad,
            "frames_overflow": filt.dropped_full, "frames_out": tx.frame_sent,
        }
        for k, name in enumerate(LINK_STATS_FIELDS):
            counter = self.stats[32 * k : 32 * k + 32]
            with m.If(strobes[name]):
                m.d.sync += counter.eq(counter + 1)
        return m
