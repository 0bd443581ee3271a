"""Host TX bytes into the connections' TX rings.

RFC 9293 s3.10.2 (SEND): the data the user sends is queued in the send buffer until it
can be transmitted; a SEND after CLOSE is an error ("connection closing").  The TX ring of
each connection is that buffer: sequence number ``s`` of connection ``c`` lives at byte
``c * tx_ring_bytes + s % tx_ring_bytes``.  The host may have at most ``tx_ring_bytes``
unacknowledged bytes written (:mod:`hdl.host_if`, send credit): bytes at or beyond the
limit SND.UNA + ring size would overwrite data not yet acknowledged, and are discarded.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import ToeConfig
from ..host_if import data_layout
from .tcb import tx_limit_layout, written_layout

__all__ = ["TxWriter", "position_layout"]

position_layout = data.StructLayout({"pos": 32, "gen": 1, "broken": 1})


class TxWriter(wiring.Component):
    """Stores host TX beats in the TX ring within each connection's send limit.

    Two memories of one entry per connection: ``limits`` (:func:`tx_limit_layout`,
    written only by the engine through ``limit_*``) and ``positions``
    (:data:`position_layout`: the sequence number after the last byte stored, the
    ``gen`` of the connection it belongs to, and ``broken``: a byte was discarded for
    lack of room; written only here).

    For a beat of connection ``c`` with ``count`` bytes, with ``L = limits[c]``:

    - ``L.open`` low: discarded, flag ``unknown`` (the id is not the host's).
    - else ``L.shut``: discarded, flag ``shut`` (SEND after CLOSE/SHUTDOWN, s3.10.2).
    - else ``start = positions[c].pos`` if ``positions[c].gen == L.gen``, else
      ``L.limit - tx_ring_bytes`` (the id has a new connection: its first byte);
      ``allowed = min(count, L.limit - start)``, or 0 if the position is ``broken`` (of
      the same ``gen``); the first ``allowed`` bytes go to the ring at ``start``;
      ``positions[c] = {start + allowed, L.gen, broken}``; flag ``overflow`` and set
      ``broken`` if ``allowed < count``.  So once a byte of a stream is discarded, no
      later byte of it is stored: the stream is never stored with a hole (the engine
      resets the connection on ``overflow``, :mod:`hdl.host_if`).

    The flags of the beats of one write (up to the beat with ``last``) are ORed, and the
    ``last`` beat produces one ``written`` message ``{conn, end, flags}``, ``end`` being
    the position after that beat (``start`` for a discarded beat).  An empty ``last``
    beat (``count`` 0) marks the end of the connection's stream: its message has
    ``fin`` set, so the FIN follows exactly the bytes written before it (RFC 9293
    s3.10.4: "queue this until all preceding SENDs have been segmentized").

    Pipeline: the memories are read in the cycle a beat is transferred on ``i`` (cycle
    ``t``) and the beat is written to the ring at ``t + 1``.  Both reads are transparent:
    the beat sees a ``limits`` write made at ``t`` and the ``positions`` entry its
    predecessor writes at ``t``.  So beats flow at one per cycle, within a write, from
    one write to the next and from one connection to another (while ``written`` messages
    are taken as they come).

    Limit writes: a beat uses ``limits[c]`` as it is after the limit writes up to and
    including cycle ``t`` (a write to ``c`` in the very cycle the beat is transferred is
    seen by it); beats transferred before ``t`` keep what they read.  So a limit write
    wins from the cycle of the write on.

    New connections: a one-bit ``gen`` alone could match a stale entry (a connection
    that stores nothing, then the next one of the id, back at the first ``gen``, would
    go on at the old position).  So when a limit write at ``t`` opens ``c`` (it was not
    open) or changes its ``gen``, the writer sets ``positions[c] = {limit -
    tx_ring_bytes, gen}`` at ``t + 1``.  That cycle the beat stage waits, and reads its
    ``positions`` entry again: a beat transferred at ``t`` sees the renewal.  (At reset
    the positions are ``{0, gen 0}`` and the limits not open.)  The rule above is exact
    while such limit writes are at least two cycles apart (the engine writes limits once
    per event); a beat held up by renewals in consecutive cycles sees the positions
    after all of them.

    Backpressure: ``written`` leaves from a queue of two messages.  A beat is taken only
    if a place will be free for its message, so the beat stage never waits for
    ``written``; ``i.ready`` is low while two messages wait.

    Ports
    -----
    i : In(stream)
        :func:`data_layout` beats from the host; all beats of one write carry one
        ``conn``.
    limit_we, limit_addr, limit_data : In
        Write port of ``limits`` (the engine's view of each connection).
    wr_addr, wr_data, wr_en : Out
        TX ring write port (:class:`LaneRing` of ``connections * tx_ring_bytes`` bytes,
        parts of ``tx_ring_bytes``): byte ``i`` of ``wr_data`` goes to ``wr_addr + i``
        where bit ``i`` of ``wr_en`` is set.
    written : Out(stream)
        :func:`written_layout`, one per write.
    """

    def __init__(self, config: ToeConfig):
        w = config.data_bytes
        if w & (w - 1):
            raise ValueError(f"data_bytes must be a power of two, not {w}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(data_layout(config))),
            "limit_we": In(1),
            "limit_addr": In(config.conn_bits),
            "limit_data": In(tx_limit_layout()),
            "wr_addr": Out((config.connections * config.tx_ring_bytes - 1).bit_length()),
            "wr_data": Out(8 * w),
            "wr_en": Out(w),
            "written": Out(stream.Signature(written_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        w = cfg.data_bytes
        ring = cfg.tx_ring_bytes
        ring_bits = (ring - 1).bit_length()

        m.submodules.limits = limits = memory.Memory(
            shape=tx_limit_layout(), depth=cfg.connections, init=[])
        lim_wr = limits.write_port()
        lim_rd = limits.read_port(transparent_for=(lim_wr,))
        lim_old = limits.read_port()  # the entry a limit write replaces
        m.submodules.positions = positions = memory.Memory(
            shape=position_layout, depth=cfg.connections, init=[])
        pos_wr = positions.write_port()
        pos_rd = positions.read_port(transparent_for=(pos_wr,))

        m.d.comb += [
            lim_wr.en.eq(self.limit_we),
            lim_wr.addr.eq(self.limit_addr),
            lim_wr.data.eq(self.limit_data),
            lim_old.en.eq(self.limit_we),
            lim_old.addr.eq(self.limit_addr),
        ]

        # New connection: renew the position the cycle after the limit write.
        renew_pending = Signal()
        renew_conn = Signal(cfg.conn_bits)
        renew = Signal(tx_limit_layout())
        renew_now = Signal()
        m.d.sync += [
            renew_pending.eq(self.limit_we),
            renew_conn.eq(self.limit_addr),
            renew.eq(self.limit_data),
        ]
        old = lim_old.data
        m.d.comb += renew_now.eq(renew_pending & renew.open
                                 & (~old.open | (old.gen != renew.gen)))

        # The beat stage.  It waits only for a renewal; ``written`` has two places, and
        # a beat is taken only if one will be free for it.
        beat_valid = Signal()
        beat = Signal(data_layout(cfg))
        beat_done = Signal()
        hold = Signal()  # the beat waits for a renewal
        queued = Signal(range(3))  # ``written`` messages waiting
        queued_next = Signal(range(4))
        push = Signal()
        pop = Signal()
        m.d.comb += [
            hold.eq(beat_valid & renew_now),
            beat_done.eq(beat_valid & ~renew_now),
            push.eq(beat_done & beat.last),
            pop.eq(self.written.valid & self.written.ready),
            queued_next.eq(queued + push - pop),
            self.i.ready.eq(~hold & (queued_next < 2)),
            # Reads for the beat on ``i`` (useless but harmless if it is not taken).  A
            # beat that waits keeps its ``limits`` entry and reads its ``positions``
            # entry again, to see the renewal.
            lim_rd.en.eq(~hold),
            lim_rd.addr.eq(self.i.p.conn),
            pos_rd.en.eq(1),
            pos_rd.addr.eq(Mux(hold, beat.conn, self.i.p.conn)),
        ]
        m.d.sync += queued.eq(queued_next)
        with m.If(self.i.ready):
            m.d.sync += [beat_valid.eq(self.i.valid), beat.eq(self.i.p)]
        with m.Elif(beat_done):
            m.d.sync += beat_valid.eq(0)

        lim = lim_rd.data
        here = pos_rd.data
        was_broken = (here.gen == lim.gen) & here.broken  # a byte was discarded before
        start = Signal(32)
        room = Signal(32)
        allowed = Signal(range(w + 1))
        accept = Signal()
        stored = Signal(range(w + 1))
        end = Signal(32)
        m.d.comb += [
            start.eq(Mux(here.gen == lim.gen, here.pos, lim.limit - ring)),
            room.eq(lim.limit - start),
            allowed.eq(Mux(room < beat.count, room, beat.count)),
            accept.eq(lim.open & ~lim.shut),
            # A broken stream stores nothing (a select line, off the carry chains).
            stored.eq(Mux(accept & ~was_broken, allowed, 0)),
            end.eq(start + stored),
        ]
        overflow = accept & ((allowed < beat.count) | (was_broken & (beat.count != 0)))
        shut = lim.open & lim.shut
        unknown = ~lim.open

        m.d.comb += [
            self.wr_addr.eq(Cat(start[:ring_bits], beat.conn)),
            self.wr_data.eq(beat.data),
        ]
        with m.If(beat_done):
            m.d.comb += self.wr_en.eq(Cat(lane < stored for lane in range(w)))

        with m.If(renew_now):
            m.d.comb += [
                pos_wr.en.eq(1),
                pos_wr.addr.eq(renew_conn),
                pos_wr.data.pos.eq(renew.limit - ring),
                pos_wr.data.gen.eq(renew.gen),
            ]
        with m.Elif(beat_done & accept):
            m.d.comb += [
                pos_wr.en.eq(1),
                pos_wr.addr.eq(beat.conn),
                pos_wr.data.pos.eq(end),
                pos_wr.data.gen.eq(lim.gen),
                pos_wr.data.broken.eq(overflow | was_broken),
            ]

        # Flags of the write so far, and the message at its last beat.
        acc_overflow = Signal()
        acc_shut = Signal()
        acc_unknown = Signal()
        message = Signal(written_layout(cfg))
        m.d.comb += [
            message.conn.eq(beat.conn),
            message.end.eq(end),
            message.overflow.eq(acc_overflow | overflow),
            message.shut.eq(acc_shut | shut),
            message.unknown.eq(acc_unknown | unknown),
            message.fin.eq(beat.last & (beat.count == 0) & accept & ~was_broken),
        ]
        with m.If(beat_done):
            with m.If(beat.last):
                m.d.sync += [acc_overflow.eq(0), acc_shut.eq(0), acc_unknown.eq(0)]
            with m.Else():
                m.d.sync += [
                    acc_overflow.eq(message.overflow),
                    acc_shut.eq(message.shut),
                    acc_unknown.eq(message.unknown),
                ]

        # Two-place queue of ``written`` messages: ``head`` is on the port.
        head = Signal(written_layout(cfg))
        tail = Signal(written_layout(cfg))
        m.d.comb += [self.written.valid.eq(queued != 0), self.written.p.eq(head)]
        with m.If(pop):
            m.d.sync += head.eq(Mux(queued == 2, tail, message))
        with m.Elif(push & (queued == 0)):
            m.d.sync += head.eq(message)
        with m.If(push & (queued_next == 2)):
            m.d.sync += tail.eq(message)
        return m
