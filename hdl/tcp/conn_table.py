"""The connection lookup: socket pair -> connection id (RFC 9293 s3.4.1, s3.3.2).

RFC 9293 s3.4.1: "A connection is defined by a pair of sockets."  The engine has one IP
address, so of the socket pair only ``remote_ip``, ``remote_port`` and ``local_port`` vary;
they are the key of this table.  The value is the connection id that indexes the TCB
memory.  As docs/architecture.md says of all engine state, it lives in memories: the
lookup is a hash table in block RAM, not one comparator per connection, and scales to
thousands of connections by changing parameters.

The hash is the Toeplitz hash of receive-side scaling (Microsoft RSS, as computed by NICs
for exactly this job), keyed with a 96-bit secret, of the 8-byte message::

    remote_ip (4 bytes) | remote_port (2 bytes) | local_port (2 bytes)

each field big-endian: ``struct.pack("!IHH", remote_ip, remote_port, local_port)``.  This
is the RSS IPv4/TCP input (source address, destination address, source port, destination
port of a received segment) with the constant destination address left out.
"""

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "ConnectionLookup", "ConnTableOp", "ConnTableError", "conn_tuple_layout",
    "conn_request_layout", "conn_response_layout", "toeplitz_hash", "tuple_message",
    "KEY_BITS", "DEFAULT_KEY", "BANKS",
]

#: Width of the secret hash key: a 64-bit message and a 32-bit Toeplitz result need
#: 64 + 32 - 1 key bits; the spare last bit makes it a whole number of bytes.
KEY_BITS = 96
#: The key after reset: the first 12 bytes of the Microsoft RSS verification key.  It is
#: public, so the host must write a random key (``keyed`` tells whether it has).
DEFAULT_KEY = bytes.fromhex("6d5a56da255b0ec24167253d")
#: Number of banks, i.e. of candidate rows per key (two-choice hashing).
BANKS = 2
#: Bank ``b`` takes its row index from hash bits ``16 * b`` upwards.
_BANK_HASH_OFFSET = 16

conn_tuple_layout = data.StructLayout({
    "remote_ip": 32,
    "remote_port": 16,
    "local_port": 16,
})


class ConnTableOp(enum.Enum, shape=2):
    """The operation of a request."""

    LOOKUP = 0
    INSERT = 1
    DELETE = 2


class ConnTableError(enum.Enum, shape=2):
    """Why an INSERT failed (NONE for every other outcome)."""

    NONE = 0
    DUPLICATE = 1  # the socket pair is already in the table (``conn_id`` is its id)
    TABLE_FULL = 2  # no free slot in either candidate row, and no entry could move


def conn_request_layout(n_connections: int) -> data.StructLayout:
    """``op``, the socket pair ``tuple`` and (for INSERT) the ``conn_id`` to store."""
    return data.StructLayout({
        "op": ConnTableOp,
        "tuple": conn_tuple_layout,
        "conn_id": (n_connections - 1).bit_length(),
    })


def conn_response_layout(n_connections: int) -> data.StructLayout:
    """The outcome of a request; see :class:`ConnectionLookup` for the fields."""
    return data.StructLayout({
        "found": 1,
        "ok": 1,
        "error": ConnTableError,
        "conn_id": (n_connections - 1).bit_length(),
    })


def tuple_message(conn_tuple) -> Value:
    """The 64-bit hash message of a ``conn_tuple_layout`` view; its top bit goes first."""
    return Cat(conn_tuple.local_port, conn_tuple.remote_port, conn_tuple.remote_ip)


def _toeplitz_bit(key: Value, message: Value, i: int) -> Value:
    """Bit ``i`` (bit 0 = least significant) of the 32-bit Toeplitz hash."""
    offset = len(key) - 32 - len(message) + 1
    return (message & key[offset + i : offset + i + len(message)]).xor()


def toeplitz_hash(key: Value, message: Value, bits=range(32)) -> Value:
    """The Toeplitz hash (Microsoft RSS) of ``message`` under ``key``, as in RSS.

    ``key`` is the key bytes as a big-endian integer (key byte 0 in the top bits),
    ``message`` the input bytes likewise; ``len(key) >= len(message) + 31``.  For every
    set message bit, taken from the most significant, the result is XORed with the 32
    key bits that start at the same position.  Each result bit is the XOR of
    ``len(message)`` AND terms: no adders, no multipliers, a tree of depth
    ``log2(2 * len(message))`` LUT inputs.  Returns the result bits ``bits`` (default all
    32, bit 0 the least significant); unused bits cost nothing.
    """
    assert len(key) >= len(message) + 31
    return Cat(*[_toeplitz_bit(key, message, i) for i in bits])


class ConnectionLookup(wiring.Component):
    """Maps a socket pair to a connection id with a keyed two-choice hash table in BRAM.

    Organisation
    ------------
    The ``buckets`` slots (default ``2 * n_connections``, so the table is at most half
    full while every id is in use) form ``BANKS = 2`` memories of ``rows = buckets / (2 *
    ways)`` rows; a row holds ``ways`` slots (default 4) and is read in one cycle.  Every
    slot stores a ``valid`` bit, the full socket pair (so a match is exact, never a hash
    match), the ``conn_id``, and ``alt``: the row of the same key in the other bank.  A key
    may live in exactly two rows: ``h0 = H[0:r]`` in bank 0 and ``h1 = H[16:16+r]`` in bank
    1, where ``H`` is the 32-bit Toeplitz hash (module docstring) and ``r = log2(rows)``.
    Both rows are read in the same cycle, so every lookup compares 2 * ``ways`` slots (8 by
    default: one comparator per slot of the two rows, not per connection).

    Why not linear probing: with ``buckets = 2 * n`` and a probe limit of 8, a Python model
    of bounded linear probing refused inserts before the table held ``n`` entries in 98% of
    fills at n = 1024 (4.8 refusals per fill) and in every fill at n = 4096; every op also
    cost up to 8 reads.  Two-choice hashing ("d-left", Voecking 2003) keeps the fullest
    row near its mean, and one relocation step (bucketized cuckoo hashing) absorbs the
    rest: a Python model of this policy, holding ``n`` live entries replaced one by one
    20 * n times, refused no insert at n = 1024 (30 runs) or n = 4096 (8 runs); without the
    relocation step it refused about one insert in a thousand.  The test file repeats
    this check on its reference model.  The probe bound of linear probing becomes: 2 *
    ``ways`` slots compared in one cycle, then at most 2 * ``ways`` further rows read (one
    per cycle) by a relocation.

    Memory: 2 banks of ``rows`` x (``ways`` * (1 + log2(n) + log2(rows) + 64)) bits: at
    n = 1024, 2 x 256 x 332 bits (170 kbit); at n = 4096, 2 x 1024 x 348 bits (713 kbit).

    Operations
    ----------
    LOOKUP: ``found`` = the socket pair is present, ``conn_id`` its id.

    INSERT: stores (socket pair, ``conn_id``).  If the pair is present: ``found`` = 1,
    ``ok`` = 0, ``error`` = DUPLICATE, ``conn_id`` = the id already stored (a retransmitted
    SYN).  Otherwise the pair goes to the candidate row with more free slots, bank 0 on a
    tie (d-left "go left"), into its lowest free way: ``ok`` = 1, ``conn_id`` = the new id.
    If both rows are full, one resident is moved to its other row: the residents of the
    bank-0 row in way order, then those of the bank-1 row; the first whose other row has a
    free way moves there (lowest free way), and the new pair takes its slot.  If none can
    move: ``ok`` = 0, ``error`` = TABLE_FULL, the table is unchanged, and ``insert_full``
    pulses for one cycle (wire it to a drop counter).  The caller must then refuse the
    connection: answer the SYN with a RST, as for a closed port (RFC 9293 s3.10.7.1), or
    drop it, and give the connection id back.  The table does not check ``conn_id``; the
    caller allocates ids (``n_connections`` of them).

    DELETE: removes the pair (RFC 9293 s3.3.2: a connection in CLOSED has no TCB); ``found``
    = ``ok`` = it was present, ``conn_id`` = its id.  The slot simply becomes invalid.  No
    tombstones are needed and none exist: a key's place is one of two rows that are always
    searched in full, so no probe sequence runs through a deleted slot and nothing else
    must be kept to find other keys.  A table whose entries have all been deleted is
    identical to a freshly cleared one, and the capacity after any history depends only on
    the live entries.

    ``found``, ``ok`` and ``conn_id`` are 0 where not stated, ``error`` is NONE.

    Cycle cost
    ----------
    One operation at a time.  A request transfers on edge t; with ``response.ready`` high
    the response transfers on edge t + c, and the next request can transfer on that same
    edge, so back-to-back operations take c cycles each:

    - LOOKUP, DELETE, INSERT (stored or duplicate without relocation): c = 2 (edge t
      reads both rows, edge t + 1 compares all slots, writes, and registers the response).
    - INSERT that moves the bank-0 resident of way k: c = 3 + k.
    - INSERT that moves the bank-1 resident of way k: c = ``ways`` + 4 + k.
    - INSERT refused with TABLE_FULL: c = 2 * ``ways`` + 3 (11 at 4 ways).

    A relocation reads one other row per cycle (one probe per cycle, BRAM read latency 1);
    it only happens when both rows of the new pair are full.  While the response is not
    taken, the operation that follows waits in its last cycle.  Reads and writes never
    share a cycle, so the read ports need no transparency.

    The key
    -------
    ``key`` is loaded when ``key_we`` is high and cannot be read back: it reaches nothing
    but the two row addresses.  Without it a remote host cannot compute which socket pairs
    share rows.  Toeplitz is linear in the message for a fixed key (H(a ^ b) = H(a) ^
    H(b)), so a host that learned some colliding pairs (e.g. from refused connections)
    could derive more: the key must be fresh random bytes from the host (RFC 4086), and a
    collision costs at most refused connections for the pairs of one full row pair, each
    counted by ``insert_full``.  A key write empties the table (the entries were placed
    with the old key and could no longer be found): write the key at configuration time,
    before connections exist.  The 12 key bytes ``k`` (RSS byte order) are written as
    ``int.from_bytes(k, "big")``.  After reset the key is the public :data:`DEFAULT_KEY`
    and ``keyed`` is low.

    Clearing: after reset, and after every key write, the table empties itself, one row
    of both banks per cycle (``rows`` cycles, ``clearing`` high, ``request.ready`` low).

    Ports
    -----
    request : In(stream)
        ``op`` (:class:`ConnTableOp`), ``tuple`` (``remote_ip``, ``remote_port``,
        ``local_port``), ``conn_id`` (INSERT only).
    response : Out(stream)
        ``found``, ``ok``, ``error`` (:class:`ConnTableError`), ``conn_id``: one per request,
        in order.
    key : In, key_we : In
        Write ``key`` into the secret hash key register (write-only); empties the table.
    keyed : Out
        A key has been written since reset.
    clearing : Out
        The table is being emptied (after reset or a key write).
    live : Out
        Number of valid entries.
    insert_full : Out
        Strobe: an INSERT was refused with TABLE_FULL.
    """

    def __init__(self, n_connections: int, *, buckets: int | None = None, ways: int = 4):
        if n_connections < 2 or n_connections & (n_connections - 1):
            raise ValueError(f"n_connections must be a power of two >= 2, not {n_connections}")
        if buckets is None:
            buckets = 2 * n_connections
        if ways < 1 or ways & (ways - 1):
            raise ValueError(f"ways must be a power of two, not {ways}")
        rows = buckets // (BANKS * ways)
        if rows < 2 or rows & (rows - 1) or rows * BANKS * ways != buckets:
            raise ValueError(
                f"buckets / ({BANKS} * ways) must be a power of two >= 2 (buckets={buckets})")
        if rows > 2**_BANK_HASH_OFFSET:
            raise ValueError(f"at most {2**_BANK_HASH_OFFSET} rows per bank")
        self.n_connections = n_connections
        self.buckets = buckets
        self.ways = ways
        self.rows = rows
        self.row_bits = rows.bit_length() - 1
        self.id_bits = (n_connections - 1).bit_length()
        self.entry_layout = data.StructLayout({
            "valid": 1,
            "conn_id": self.id_bits,
            "alt": self.row_bits,
            "tuple": conn_tuple_layout,
        })
        self.row_layout = data.ArrayLayout(self.entry_layout, ways)
        #: The contents of the two banks (for inspection in simulation).
        self.tables = [memory.MemoryData(shape=self.row_layout, depth=rows, init=[])
                       for _ in range(BANKS)]
        super().__init__({
            "request": In(stream.Signature(conn_request_layout(n_connections))),
            "response": Out(stream.Signature(conn_response_layout(n_connections))),
            "key": In(KEY_BITS),
            "key_we": In(1),
            "keyed": Out(1),
            "clearing": Out(1),
            "live": Out(range(buckets + 1)),
            "insert_full": Out(1),
        })

    @property
    def memory_bits(self) -> int:
        """Total bits of table storage (both banks)."""
        return BANKS * self.rows * self.row_layout.size

    def elaborate(self, platform):
        m = Module()
        ways, rows, row_bits = self.ways, self.rows, self.row_bits

        rd, wr = [], []
        for b, table in enumerate(self.tables):
            m.submodules[f"bank{b}"] = bank = memory.Memory(data=table)
            rd.append(bank.read_port())
            wr.append(bank.write_port(granularity=1))  # one enable per way
            m.d.comb += rd[b].en.eq(0)  # (its reset value is 1) reads only where asked

        # Secret key and the two candidate rows of the offered socket pair.
        key = Signal(KEY_BITS, init=int.from_bytes(DEFAULT_KEY, "big"))
        with m.If(self.key_we):
            m.d.sync += [key.eq(self.key), self.keyed.eq(1)]
        message = tuple_message(self.request.p.tuple)
        offered_rows = [
            toeplitz_hash(key, message, range(_BANK_HASH_OFFSET * b,
                                              _BANK_HASH_OFFSET * b + row_bits))
            for b in range(BANKS)
        ]

        # The operation in progress.
        op = Signal(ConnTableOp)
        pair = Signal(conn_tuple_layout)
        new_id = Signal(self.id_bits)
        home = [Signal(row_bits, name=f"home{b}") for b in range(BANKS)]
        way = Signal(range(ways))  # relocation: the resident being tried
        next_way = Signal(range(ways))
        way_onehot = Signal(ways)
        m.d.comb += [next_way.eq(way + 1), way_onehot.eq(Cat(way == w for w in range(ways)))]
        clear_row = Signal(range(rows))
        clear_pending = Signal()

        # What the two read ports show (in DECIDE: the two candidate rows).
        row = [rd[b].data for b in range(BANKS)]
        match = [Signal(ways, name=f"match{b}") for b in range(BANKS)]
        free = [Signal(ways, name=f"free{b}") for b in range(BANKS)]
        first_free = [Signal(ways, name=f"first_free{b}") for b in range(BANKS)]
        used = [Signal(range(ways + 1), name=f"used{b}") for b in range(BANKS)]
        for b in range(BANKS):
            for w in range(ways):
                m.d.comb += [
                    match[b][w].eq(row[b][w].valid
                                   & (row[b][w].tuple.as_value() == pair.as_value())),
                    free[b][w].eq(~row[b][w].valid),
                ]
            m.d.comb += [
                first_free[b].eq(free[b] & (~free[b] + 1)),  # lowest set bit
                used[b].eq(sum(row[b][w].valid for w in range(ways))),
            ]
        hit = Signal()
        hit_id = Signal(self.id_bits)
        m.d.comb += hit.eq(match[0].any() | match[1].any())
        # A pair is stored at most once (INSERT checks), so at most one slot matches.
        m.d.comb += hit_id.eq(
            _or_all(row[b][w].conn_id & match[b][w].replicate(self.id_bits)
                    for b in range(BANKS) for w in range(ways)))

        def new_entry(b):
            """The offered pair as an entry of bank ``b``."""
            return {"valid": 1, "conn_id": new_id, "alt": home[1 - b], "tuple": pair}

        def write(b, addr, enable, entry=None):
            """Write ``entry`` (a dict of fields; None: an invalid slot) to the ways of row
            ``addr`` of bank ``b`` whose bits are set in ``enable``."""
            m.d.comb += [wr[b].addr.eq(addr), wr[b].en.eq(enable)]
            for w in range(ways):
                for name, value in (entry or {}).items():
                    m.d.comb += wr[b].data[w][name].eq(value)

        # The response register; a finishing step waits until it is free.
        out_free = Signal()
        m.d.comb += out_free.eq(~self.response.valid | self.response.ready)
        with m.If(self.response.valid & self.response.ready):
            m.d.sync += self.response.valid.eq(0)
        m.d.sync += self.insert_full.eq(0)

        def respond(*, found=0, ok=0, error=ConnTableError.NONE, conn_id=0):
            m.d.sync += [
                self.response.valid.eq(1),
                self.response.p.found.eq(found),
                self.response.p.ok.eq(ok),
                self.response.p.error.eq(error),
                self.response.p.conn_id.eq(conn_id),
            ]
            m.next = "IDLE"

        with m.If(self.key_we):
            m.d.sync += clear_pending.eq(1)

        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):
                m.d.comb += self.clearing.eq(1)
                for b in range(BANKS):
                    write(b, clear_row, (1 << ways) - 1)
                m.d.sync += [clear_row.eq(clear_row + 1), self.live.eq(0)]
                with m.If(clear_row == rows - 1):
                    m.next = "IDLE"

            with m.State("IDLE"):
                m.d.comb += self.request.ready.eq(~clear_pending)
                for b in range(BANKS):
                    m.d.comb += [rd[b].addr.eq(offered_rows[b]), rd[b].en.eq(1)]
                with m.If(clear_pending):
                    m.d.sync += [clear_pending.eq(self.key_we), clear_row.eq(0)]
                    m.next = "CLEAR"
                with m.Elif(self.request.valid):
                    m.d.sync += [
                        op.eq(self.request.p.op),
                        pair.eq(self.request.p.tuple),
                        new_id.eq(self.request.p.conn_id),
                        home[0].eq(offered_rows[0]),
                        home[1].eq(offered_rows[1]),
                    ]
                    m.next = "DECIDE"

            with m.State("DECIDE"):
                # Both candidate rows are on the read ports (held while waiting).
                with m.If((op == ConnTableOp.INSERT) & ~hit
                          & (used[0] == ways) & (used[1] == ways)):
                    # Both rows full: try to move a bank-0 resident to its bank-1 row.
                    # Port 0 keeps showing the bank-0 row.
                    m.d.comb += [rd[1].addr.eq(row[0][0].alt), rd[1].en.eq(1)]
                    m.d.sync += way.eq(0)
                    m.next = "MOVE0"
                with m.Elif(out_free):
                    with m.Switch(op):
                        with m.Case(ConnTableOp.LOOKUP):
                            respond(found=hit, ok=hit, conn_id=hit_id)
                        with m.Case(ConnTableOp.DELETE):
                            for b in range(BANKS):
                                write(b, home[b], match[b])
                            with m.If(hit):
                                m.d.sync += self.live.eq(self.live - 1)
                            respond(found=hit, ok=hit, conn_id=hit_id)
                        with m.Case(ConnTableOp.INSERT):
                            with m.If(hit):
                                respond(found=1, error=ConnTableError.DUPLICATE,
                                        conn_id=hit_id)
                            with m.Else():
                                with m.If(used[0] <= used[1]):
                                    write(0, home[0], first_free[0], new_entry(0))
                                with m.Else():
                                    write(1, home[1], first_free[1], new_entry(1))
                                m.d.sync += self.live.eq(self.live + 1)
                                respond(ok=1, conn_id=new_id)

            # Relocation: port ``b`` holds the full row of bank ``b`` (the residents),
            # port ``other`` shows the other row of resident ``way``.
            for b in range(BANKS):
                other = 1 - b
                with m.State(f"MOVE{b}"):
                    resident = row[b][way]
                    with m.If(free[other].any()):
                        with m.If(out_free):
                            moved = {"valid": 1, "conn_id": resident.conn_id,
                                     "alt": home[b], "tuple": resident.tuple}
                            write(other, resident.alt, first_free[other], moved)
                            write(b, home[b], way_onehot, new_entry(b))
                            m.d.sync += self.live.eq(self.live + 1)
                            respond(ok=1, conn_id=new_id)
                    with m.Elif(way != ways - 1):
                        m.d.comb += [rd[other].addr.eq(row[b][next_way].alt),
                                     rd[other].en.eq(1)]
                        m.d.sync += way.eq(next_way)
                    if b == 0:
                        with m.Else():
                            # Next the bank-1 residents: read the bank-1 row back first.
                            m.d.comb += [rd[1].addr.eq(home[1]), rd[1].en.eq(1)]
                            m.next = "RELOAD1"
                    else:
                        with m.Elif(out_free):
                            m.d.sync += self.insert_full.eq(1)
                            respond(error=ConnTableError.TABLE_FULL)

            with m.State("RELOAD1"):
                # Port 1 shows the bank-1 row again and holds it from now on.
                m.d.comb += [rd[0].addr.eq(row[1][0].alt), rd[0].en.eq(1)]
                m.d.sync += way.eq(0)
                m.next = "MOVE1"

        return m


def _or_all(values):
    result = 0
    for value in values:
        result = value | result
    return result
