"""The listener table: ports in the LISTEN state and their backlogs (RFC 9293 s3.10.1
passive OPEN, s3.10.7.2).

LISTEN is no TCB state here: a listener is a few registers (port, backlog, connections
that completed the handshake and are not yet accepted, connections half-open), and a
SYN to its port opens a fresh connection id in SYN-RECEIVED.  As in Linux, two limits:
the backlog bounds connections that reached ESTABLISHED and wait for the host's ACCEPT
(the accept queue), and ``syn_backlog`` the half-open ones (the SYN queue); beyond the
second a SYN gets a SYN cookie (:mod:`hdl.tcp.syn_cookie`), so that a flood of SYNs
never takes the places of real connections.
"""

from amaranth.hdl import Array, Cat, Mux, Signal

__all__ = ["ListenerTable"]


class ListenerTable:
    """``count`` listeners as registers in the engine's module ``m``.

    ``match(port)`` gives the bit vector of listeners on ``port`` and the index of the
    first; ``free_index()`` the first free slot.  The other methods add synchronous
    statements for the step that calls them.
    """

    def __init__(self, m, count: int, syn_backlog: int = 8):
        self.m = m
        self.count = count
        self.syn_backlog = syn_backlog
        self.valid = Array(Signal(name=f"listen{i}_valid") for i in range(count))
        self.port = Array(Signal(16, name=f"listen{i}_port") for i in range(count))
        self.backlog = Array(Signal(16, name=f"listen{i}_backlog") for i in range(count))
        self.pending = Array(Signal(16, name=f"listen{i}_pending") for i in range(count))
        self.half_open = Array(Signal(16, name=f"listen{i}_half_open") for i in range(count))

    def _first(self, bits, name):
        index = Signal(range(self.count), name=name)
        for i in reversed(range(self.count)):
            with self.m.If(bits[i]):
                self.m.d.comb += index.eq(i)
        return index

    def match(self, port, name="listener_match"):
        """``(hits, index)``: which listeners listen on ``port``, and the first."""
        hits = Signal(self.count, name=f"{name}_hits")
        self.m.d.comb += hits.eq(Cat(self.valid[i] & (self.port[i] == port)
                                     for i in range(self.count)))
        return hits, self._first(hits, f"{name}_index")

    def free(self):
        """``(free, index)``: the free slots, and the first."""
        slots = Signal(self.count, name="listener_free")
        self.m.d.comb += slots.eq(Cat(~self.valid[i] for i in range(self.count)))
        return slots, self._first(slots, "listener_free_index")

    def add(self, index, port, backlog):
        self.m.d.sync += [self.valid[index].eq(1), self.port[index].eq(port),
                          self.backlog[index].eq(backlog), self.pending[index].eq(0),
                          self.half_open[index].eq(0)]

    def remove(self, index):
        self.m.d.sync += self.valid[index].eq(0)

    def has_room(self, index):
        """The backlog of listener ``index`` has a free place."""
        return self.pending[index] < self.backlog[index]

    def has_half_open_room(self, index):
        """Listener ``index`` holds fewer than ``syn_backlog`` half-open connections."""
        return self.half_open[index] < self.syn_backlog

    def half_open_take(self, index):
        """A connection of listener ``index`` entered SYN-RECEIVED."""
        self.m.d.sync += self.half_open[index].eq(self.half_open[index] + 1)

    def half_open_done(self, index):
        """A connection of listener ``index`` left SYN-RECEIVED."""
        count = self.half_open[index]
        self.m.d.sync += count.eq(Mux(count != 0, count - 1, 0))

    def established(self, index):
        """A half-open connection of listener ``index`` completed its handshake: it
        leaves the SYN queue for the accept queue (may exceed the backlog by the
        connections that were half-open when it filled)."""
        self.half_open_done(index)
        self.take_place(index)

    def take_place(self, index):
        """A connection opened from listener ``index`` waits for ACCEPT."""
        self.m.d.sync += self.pending[index].eq(self.pending[index] + 1)

    def free_place(self, index):
        """A connection of listener ``index`` was accepted or went away."""
        pending = self.pending[index]
        self.m.d.sync += pending.eq(Mux(pending != 0, pending - 1, 0))
