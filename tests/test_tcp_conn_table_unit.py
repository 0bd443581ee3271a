"""Unit tests of hdl/tcp/conn_table.py (ConnectionLookup) against a plain-Python model.

The requirement (docs/architecture.md, the TCP engine's lookup): the socket pair -> connection
id lookup is a hash table in block RAM, not one comparator per connection, and scales to
thousands of connections by parameters.  RFC 9293 s3.4.1: "A connection is defined by a
pair of sockets"; the engine has one IP address, so the key is (remote_ip, remote_port,
local_port).

The reference below is written from the component's docstring, not from its code:

- hash: the RSS Toeplitz hash (checked against Microsoft's published RSS verification
  vectors) of ``struct.pack("!IHH", remote_ip, remote_port, local_port)`` under the 12-byte
  key; bank 0 row = hash bits 0.., bank 1 row = hash bits 16..;
- a pair is looked for in both candidate rows; INSERT goes to the row with more free
  slots (bank 0 on a tie), lowest free way; with both rows full, one resident (bank-0 row
  in way order, then bank-1 row) moves to its other row if that row has a free way;
- DELETE invalidates the slot (no tombstones);
- cycle costs: 2 for every operation, 3 + k / ways + 4 + k for a relocation of way k of
  bank 0 / bank 1, 2 * ways + 3 for TABLE_FULL.

Each simulation ends by comparing every slot of both banks with the model, so placement
(and with it the hardware hash) is checked bit for bit, not only the responses.
"""

import random
import re
import struct
from collections import Counter

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from amaranth_helpers import run

from toe.hdl.tcp.conn_table import (
    BANKS,
    DEFAULT_KEY,
    KEY_BITS,
    ConnectionLookup,
    ConnTableError,
    ConnTableOp,
    toeplitz_hash,
)

SEED = 9293
LOOKUP, INSERT, DELETE = ConnTableOp.LOOKUP, ConnTableOp.INSERT, ConnTableOp.DELETE
NONE, DUPLICATE, TABLE_FULL = (ConnTableError.NONE, ConnTableError.DUPLICATE,
                               ConnTableError.TABLE_FULL)

# Microsoft, "Verifying the RSS Hash Calculation": the 40-byte verification key and the
# IPv4 / IPv4-with-TCP results for (destination, source) pairs.
RSS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
RSS_VECTORS = [
    # dst ip, dst port, src ip, src port, IPv4 hash, IPv4+TCP hash
    ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x323E8FC2, 0x51CCC178),
    ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xD718262A, 0xC626B0EA),
    ("12.22.207.184", 38024, "24.19.198.95", 12898, 0xD2D0A5DE, 0x5C2B394A),
    ("209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xAFC7327F),
    ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x5D1809C5, 0x10E828A2),
]


def ip(text: str) -> int:
    return int.from_bytes(bytes(int(part) for part in text.split(".")), "big")


def toeplitz(key: bytes, message: bytes) -> int:
    """RSS Toeplitz hash: for each set input bit (most significant first), XOR in the 32
    key bits starting at that bit position."""
    k, key_bits = int.from_bytes(key, "big"), 8 * len(key)
    result = 0
    for i in range(8 * len(message)):
        if message[i // 8] >> (7 - i % 8) & 1:
            result ^= (k >> (key_bits - 32 - i)) & 0xFFFFFFFF
    return result


def message(pair) -> bytes:
    """The hash input of a socket pair ``(remote_ip, remote_port, local_port)``."""
    return struct.pack("!IHH", *pair)


class ConnTableModel:
    """The table of hdl/tcp/conn_table.py in plain Python: slots, responses and cycles.

    A slot is None or ``(pair, conn_id, alt)``.  Operations return
    ``(found, ok, error, conn_id, cycles)``.
    """

    def __init__(self, n_connections: int, key: bytes = DEFAULT_KEY, ways: int = 4):
        self.ways = ways
        self.rows = 2 * n_connections // (BANKS * ways)
        self.key = key
        self.banks = [[[None] * ways for _ in range(self.rows)] for _ in range(BANKS)]

    def homes(self, pair):
        h = toeplitz(self.key, message(pair))
        return h % self.rows, (h >> 16) % self.rows

    def live(self) -> int:
        return sum(slot is not None for bank in self.banks for row in bank for slot in row)

    def _find(self, pair, homes):
        for b in range(BANKS):
            for w, slot in enumerate(self.banks[b][homes[b]]):
                if slot is not None and slot[0] == pair:
                    return b, w, slot[1]
        return None

    def apply(self, op, pair, conn_id=0):
        homes = self.homes(pair)
        hit = self._find(pair, homes)
        if op == LOOKUP:
            return (1, 1, NONE, hit[2], 2) if hit else (0, 0, NONE, 0, 2)
        if op == DELETE:
            if not hit:
                return (0, 0, NONE, 0, 2)
            b, w, found_id = hit
            self.banks[b][homes[b]][w] = None
            return (1, 1, NONE, found_id, 2)
        if hit:
            return (1, 0, DUPLICATE, hit[2], 2)
        rows = [self.banks[b][homes[b]] for b in range(BANKS)]
        used = [sum(slot is not None for slot in row) for row in rows]
        if min(used) < self.ways:
            b = 0 if used[0] <= used[1] else 1
            rows[b][rows[b].index(None)] = (pair, conn_id, homes[1 - b])
            return (0, 1, NONE, conn_id, 2)
        for b in range(BANKS):
            for w in range(self.ways):
                resident_pair, resident_id, alt = rows[b][w]
                target = self.banks[1 - b][alt]
                if None in target:
                    target[target.index(None)] = (resident_pair, resident_id, homes[b])
                    rows[b][w] = (pair, conn_id, homes[1 - b])
                    cycles = 3 + w if b == 0 else self.ways + 4 + w
                    return (0, 1, NONE, conn_id, cycles)
        return (0, 0, TABLE_FULL, 0, 2 * self.ways + 3)

    def snapshot(self):
        return [[list(row) for row in bank] for bank in self.banks]


def run_ops(dut, ops, *, key=None, seed=0, valid_prob=1.0, ready_prob=1.0,
            after=None):
    """Drive ``ops`` (``(op, pair, conn_id)``) through ``dut``; returns the log.

    ``key`` (bytes) is written through the key port first.  The log holds, per op,
    ``(response, accept_cycle, response_cycle)`` with ``response`` as the model returns
    it (without cycles), the final contents of both banks in model form, the ``live``
    output, the number of ``insert_full`` strobes, and whatever ``after(ctx)`` returns.
    """
    rng = random.Random(seed)
    log = {"ops": [], "full_strobes": 0}

    async def bench(ctx):
        if key is not None:
            ctx.set(dut.key, int.from_bytes(key, "big"))
            ctx.set(dut.key_we, 1)
            await ctx.tick()
            ctx.set(dut.key_we, 0)
        cycle = 0
        limit = dut.rows + 200 + (2 * dut.ways + 3) * len(ops) / min(valid_prob, ready_prob)
        accepted = []
        offered = None
        next_op = 0
        while len(log["ops"]) < len(ops):
            if offered is None and next_op < len(ops) and rng.random() < valid_prob:
                offered = next_op
                op, pair, conn_id = ops[offered]
                ctx.set(dut.request.p, {
                    "op": op, "conn_id": conn_id,
                    "tuple": {"remote_ip": pair[0], "remote_port": pair[1],
                              "local_port": pair[2]}})
            ctx.set(dut.request.valid, offered is not None)
            ctx.set(dut.response.ready, rng.random() < ready_prob)
            _, _, q_ready, r_valid, r_ready, r_p, full = await ctx.tick().sample(
                dut.request.ready, dut.response.valid, dut.response.ready,
                dut.response.p, dut.insert_full)
            cycle += 1
            assert cycle < limit, f"{len(log['ops'])} of {len(ops)} responses by cycle {cycle}"
            log["full_strobes"] += full
            if r_valid and r_ready:
                response = (r_p.found, r_p.ok, ConnTableError(r_p.error), r_p.conn_id)
                log["ops"].append((response, accepted[len(log["ops"])], cycle))
            if offered is not None and q_ready:
                accepted.append(cycle)
                offered = None
                next_op += 1
        ctx.set(dut.request.valid, 0)
        await ctx.tick()
        log["live"] = ctx.get(dut.live)
        log["banks"] = read_banks(ctx, dut)
        if after is not None:
            log["after"] = await after(ctx)

    run(dut, bench)
    return log


def read_banks(ctx, dut):
    banks = []
    for table in dut.tables:
        bank = []
        for r in range(dut.rows):
            row = ctx.get(table[r])
            bank.append([
                ((e.tuple.remote_ip, e.tuple.remote_port, e.tuple.local_port), e.conn_id,
                 e.alt) if e.valid else None
                for e in (row[w] for w in range(dut.ways))])
        banks.append(bank)
    return banks


def check_against_model(log, ops, model, *, timing=True):
    """Every response equal to the model's; with ``timing``, every cycle cost too, and
    back-to-back issue (the next request transfers on the edge of the response)."""
    outcomes = Counter()
    for i, ((op, pair, conn_id), (response, accepted, answered)) in enumerate(
            zip(ops, log["ops"], strict=True)):
        *expected, cycles = model.apply(op, pair, conn_id)
        assert response == tuple(expected), (i, op, pair, conn_id, response, expected)
        if timing:
            assert answered - accepted == cycles, (i, op, pair, answered - accepted, cycles)
            if i + 1 < len(ops):
                assert log["ops"][i + 1][1] == answered, i
        outcomes[(op.name, expected[2].name, bool(expected[0]), cycles)] += 1
    assert log["banks"] == model.snapshot()
    assert log["live"] == model.live()
    assert log["full_strobes"] == sum(
        count for (_, error, _, _), count in outcomes.items() if error == "TABLE_FULL")
    return outcomes


def pair_pool(rng, count, ips=6, ports=8):
    """``count`` distinct socket pairs drawn from few remote addresses and ports, so that
    many share their remote IP, remote port or both."""
    remote_ips = [rng.getrandbits(32) for _ in range(ips)]
    remote_ports = [rng.choice([rng.getrandbits(16), 1024 + rng.getrandbits(4)])
                    for _ in range(ports)]
    local_ports = [80, 443, 8080]
    pairs = {(a, p, lp) for a in remote_ips for p in remote_ports for lp in local_ports}
    return rng.sample(sorted(pairs), count)


def random_ops(rng, pool, count, n_connections, phase=400):
    """Mixed operations over ``pool``: phases that fill the table (to TABLE_FULL) alternate
    with phases that drain it; inserts of present pairs and deletes of absent ones occur
    throughout."""
    ops = []
    for i in range(count):
        filling = (i // phase) % 2 == 0
        weights = [3, 5, 2] if filling else [3, 2, 5]
        op = rng.choices([LOOKUP, INSERT, DELETE], weights)[0]
        ops.append((op, rng.choice(pool), rng.randrange(n_connections)))
    return ops


def test_reference_toeplitz_matches_rss_verification_vectors():
    """The reference hash is RSS's Toeplitz hash: Microsoft's verification vectors, IPv4
    (8-byte input) and IPv4 with TCP (12-byte input)."""
    for dst, dst_port, src, src_port, hash_ip, hash_tcp in RSS_VECTORS:
        addresses = struct.pack("!II", ip(src), ip(dst))
        assert toeplitz(RSS_KEY, addresses) == hash_ip
        assert toeplitz(RSS_KEY, addresses + struct.pack("!HH", src_port, dst_port)) == hash_tcp


def test_gateware_toeplitz_matches_rss_vectors_and_reference():
    """hdl toeplitz_hash: the RSS vectors (320-bit key, 96-bit input) and 300 random
    12-byte keys and socket-pair messages of the table's 96-bit key form."""
    rss_key, rss_msg = Signal(8 * len(RSS_KEY)), Signal(96)
    key, msg = Signal(KEY_BITS), Signal(64)
    m = Module()
    rss_hash, pair_hash = Signal(32), Signal(32)
    m.d.comb += [rss_hash.eq(toeplitz_hash(rss_key, rss_msg)),
                 pair_hash.eq(toeplitz_hash(key, msg))]
    rng = random.Random(SEED)

    async def bench(ctx):
        ctx.set(rss_key, int.from_bytes(RSS_KEY, "big"))
        for dst, dst_port, src, src_port, _, hash_tcp in RSS_VECTORS:
            ctx.set(rss_msg, int.from_bytes(
                struct.pack("!IIHH", ip(src), ip(dst), src_port, dst_port), "big"))
            assert ctx.get(rss_hash) == hash_tcp
        for _ in range(300):
            k, pair = rng.randbytes(12), (rng.getrandbits(32), rng.getrandbits(16),
                                          rng.getrandbits(16))
            ctx.set(key, int.from_bytes(k, "big"))
            ctx.set(msg, int.from_bytes(message(pair), "big"))
            assert ctx.get(pair_hash) == toeplitz(k, message(pair))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_random_operations_match_model_16_connections():
    """5000 random LOOKUP/INSERT/DELETE at n = 16 (32 slots) over 80 socket pairs that
    share remote addresses and ports: every response, every cycle cost and the final
    slots equal the model's.  RFC 9293 s3.4.1 (the socket pair identifies the connection):
    a lookup never returns another pair's id; INSERT of a present pair reports DUPLICATE;
    full candidate rows report TABLE_FULL; deleted pairs are no longer found.  Operations
    issue back to back: one every 2 cycles without relocation."""
    rng = random.Random(SEED)
    key = rng.randbytes(12)
    pool = pair_pool(rng, 80)
    ops = random_ops(rng, pool, 5000, 16)
    log = run_ops(ConnectionLookup(16), ops, key=key)
    outcomes = check_against_model(log, ops, ConnTableModel(16, key), timing=True)
    kinds = Counter()
    for (op, error, found, cycles), count in outcomes.items():
        kinds[(op, error, found)] += count
        kinds["relocation" if 2 < cycles < 11 else ""] += count * (op == "INSERT")
    assert kinds[("LOOKUP", "NONE", True)] > 200 and kinds[("LOOKUP", "NONE", False)] > 200
    assert kinds[("INSERT", "DUPLICATE", True)] > 200
    assert kinds[("INSERT", "TABLE_FULL", False)] > 50
    assert kinds[("DELETE", "NONE", True)] > 200 and kinds[("DELETE", "NONE", False)] > 200
    assert kinds["relocation"] > 50
    relocation_costs = {cycles for (op, _, _, cycles) in outcomes if 2 < cycles < 11}
    assert relocation_costs & {3, 4, 5, 6} and relocation_costs & {8, 9, 10}


def test_backpressure_and_gaps_do_not_change_results():
    """1500 random operations at n = 16 with gaps between requests and a consumer that is
    ready half of the time (an operation that finishes while the previous response waits
    holds its state): same responses, same slots as the model."""
    rng = random.Random(SEED + 1)
    key = rng.randbytes(12)
    pool = pair_pool(rng, 60)
    ops = random_ops(rng, pool, 1500, 16, phase=250)
    log = run_ops(ConnectionLookup(16), ops, key=key, seed=SEED, valid_prob=0.6,
                  ready_prob=0.5)
    check_against_model(log, ops, ConnTableModel(16, key), timing=False)


@pytest.mark.parametrize("ways", [2, 8])
def test_other_row_widths_match_model(ways):
    """The organisation is a parameter: 2 ways (8 rows per bank) and 8 ways (2 rows per
    bank) at n = 16, 1000 random operations each, responses, cycle costs (relocation up
    to 2 * ways + 3) and slots as in the model."""
    rng = random.Random(SEED + ways)
    key = rng.randbytes(12)
    ops = random_ops(rng, pair_pool(rng, 60), 1000, 16, phase=250)
    log = run_ops(ConnectionLookup(16, ways=ways), ops, key=key)
    outcomes = check_against_model(log, ops, ConnTableModel(16, key, ways=ways))
    assert {cycles for (*_, cycles) in outcomes} > {2, 3, 2 * ways + 3}


def pairs_with_homes(rng, model, count, wanted):
    """``count`` random socket pairs whose candidate rows ``(bank 0, bank 1)`` satisfy
    ``wanted(h0, h1)`` (found with the known key, as a remote host without it cannot)."""
    pairs = []
    while len(pairs) < count:
        pair = (rng.getrandbits(32), rng.getrandbits(16), rng.choice([80, 443]))
        if wanted(*model.homes(pair)):
            pairs.append(pair)
    return pairs


def test_full_candidate_rows_report_table_full():
    """Nine pairs with the same two rows: the first eight fill both rows (alternating
    banks, bank 0 on ties), the ninth is refused with TABLE_FULL after 2 * ways + 3 = 11
    cycles (no resident can move: its other row is the other full row), ``insert_full``
    pulses once, nothing is stored, and after one DELETE the ninth fits.  The caller
    refuses such a connection (RST as for a closed port, RFC 9293 s3.10.7.1, or drop)."""
    rng = random.Random(SEED + 2)
    key = rng.randbytes(12)
    model = ConnTableModel(16, key)
    pairs = pairs_with_homes(rng, model, 9, lambda h0, h1: (h0, h1) == (1, 2))
    ops = [(INSERT, pair, i) for i, pair in enumerate(pairs)]
    ops += [(LOOKUP, pair, 0) for pair in pairs]
    ops += [(DELETE, pairs[3], 0), (INSERT, pairs[8], 8), (LOOKUP, pairs[8], 0)]
    log = run_ops(ConnectionLookup(16), ops, key=key)
    check_against_model(log, ops, model)
    responses = [response for response, _, _ in log["ops"]]
    accepted, answered = log["ops"][8][1:]
    assert responses[8] == (0, 0, TABLE_FULL, 0) and answered - accepted == 11
    assert log["full_strobes"] == 1
    assert responses[9:17] == [(1, 1, NONE, i) for i in range(8)]
    assert responses[17] == (0, 0, NONE, 0)  # the refused pair was not stored
    assert responses[-3:] == [(1, 1, NONE, 3), (0, 1, NONE, 8), (1, 1, NONE, 8)]


@pytest.mark.parametrize("bank", [0, 1])
def test_insert_into_full_rows_relocates_a_resident(bank):
    """Both rows of a new pair X are full, but one resident's other row has room.
    Bank 0: P (rows 1, 3) lands in bank-0 row 1 way 0; seven pairs of rows (1, 2) fill
    the rest; X (1, 2) moves P to bank-1 row 3 and takes its slot: 3 + 0 cycles.
    Bank 1: R (0, 3) takes bank-0 row 0, so Q (0, 2) goes to bank-1 row 2 way 0; seven
    (1, 2) pairs fill the rest (their other row is full); X moves Q to bank-0 row 0:
    ways + 4 + 0 = 8 cycles.  Every pair is found with its own id afterwards."""
    rng = random.Random(SEED + 3 + bank)
    key = rng.randbytes(12)
    model = ConnTableModel(16, key)
    blockers = pairs_with_homes(rng, model, 8, lambda h0, h1: (h0, h1) == (1, 2))
    if bank == 0:
        first = pairs_with_homes(rng, model, 1, lambda h0, h1: (h0, h1) == (1, 3))
    else:
        first = (pairs_with_homes(rng, model, 1, lambda h0, h1: (h0, h1) == (0, 3))
                 + pairs_with_homes(rng, model, 1, lambda h0, h1: (h0, h1) == (0, 2)))
    pairs = first + blockers
    ops = [(INSERT, pair, i) for i, pair in enumerate(pairs)]
    ops += [(LOOKUP, pair, 0) for pair in pairs]
    log = run_ops(ConnectionLookup(16), ops, key=key)
    check_against_model(log, ops, model)
    responses = [response for response, _, _ in log["ops"]]
    x = len(pairs) - 1
    accepted, answered = log["ops"][x][1:]
    assert responses[x] == (0, 1, NONE, x)
    assert answered - accepted == (3 if bank == 0 else 4 + 4)
    assert responses[len(pairs):] == [(1, 1, NONE, i) for i in range(len(pairs))]
    moved = first[-1]
    assert any(slot and slot[0] == moved for slot in log["banks"][1 - bank][3 - 3 * bank])


def test_churn_at_full_load_keeps_capacity_and_leaves_no_residue():
    """No tombstone leak: 16 live pairs at n = 16, then 400 times "delete one, insert a new
    one" (every insert must succeed), then every pair deleted: all 32 slots are invalid
    again, as after reset, and 16 new pairs fit again."""
    rng = random.Random(SEED + 5)
    key = rng.randbytes(12)
    pool = iter(pair_pool(rng, 460, ips=20, ports=12))
    live = [next(pool) for _ in range(16)]
    ops = [(INSERT, pair, i) for i, pair in enumerate(live)]
    for _ in range(400):
        gone = live.pop(rng.randrange(len(live)))
        live.append(next(pool))
        ops += [(DELETE, gone, 0), (INSERT, live[-1], rng.randrange(16)),
                (LOOKUP, rng.choice(live), 0)]
    ops += [(DELETE, pair, 0) for pair in live]
    fresh = [next(pool) for _ in range(16)]
    ops += [(INSERT, pair, i) for i, pair in enumerate(fresh)]
    ops += [(DELETE, pair, 0) for pair in fresh]
    log = run_ops(ConnectionLookup(16), ops, key=key)
    check_against_model(log, ops, ConnTableModel(16, key))
    for (op, _, _), (response, _, _) in zip(ops, log["ops"], strict=True):
        assert response[1], (op, response)  # every insert, delete and lookup succeeded
    assert log["banks"] == [[[None] * 4 for _ in range(4)] for _ in range(BANKS)]
    assert log["live"] == 0


def test_random_operations_match_model_1024_connections():
    """n = 1024 (2048 slots, 256 rows per bank): 1024 pairs inserted (all accepted), then
    600 rounds of delete / insert / lookup of a live pair / lookup of an absent pair;
    responses, cycle costs and all slots equal the model's."""
    rng = random.Random(SEED + 6)
    key = rng.randbytes(12)
    pairs = set()
    while len(pairs) < 1024 + 600 + 600:
        pairs.add((rng.getrandbits(32), rng.choice([rng.getrandbits(16), 443]),
                   rng.choice([80, 443, 8080])))
    pool = iter(sorted(pairs))
    live = [next(pool) for _ in range(1024)]
    ops = [(INSERT, pair, i) for i, pair in enumerate(live)]
    for _ in range(600):
        gone = live.pop(rng.randrange(len(live)))
        live.append(next(pool))
        ops += [(DELETE, gone, 0), (INSERT, live[-1], rng.randrange(1024)),
                (LOOKUP, rng.choice(live), 0), (LOOKUP, next(pool), 0)]
    log = run_ops(ConnectionLookup(1024), ops, key=key)
    check_against_model(log, ops, ConnTableModel(1024, key))
    assert all(response[1] for (op, _, _), (response, _, _) in zip(ops, log["ops"], strict=True)
               if op == INSERT)
    assert log["live"] == 1024


@pytest.mark.parametrize("n_connections", [1024, 4096])
def test_model_capacity_under_churn(n_connections):
    """The policy (reference model, pure Python) holds n live pairs through churn: fill
    to n, then 4 * n replacements at full load, all accepted.  This is the capacity claim
    of the docstring (2 * n slots, two rows of 4, one relocation step)."""
    rng = random.Random(SEED + n_connections)
    model = ConnTableModel(n_connections, rng.randbytes(12))
    live = []
    refused = 0
    for i in range(5 * n_connections):
        if len(live) == n_connections:
            model.apply(DELETE, live.pop(rng.randrange(len(live))))
        pair = (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16))
        result = model.apply(INSERT, pair, i % n_connections)
        if result[1]:
            live.append(pair)
        else:
            refused += 1
    assert refused == 0 and model.live() == n_connections


def test_reset_and_key_write_empty_the_table():
    """After reset the table clears itself (rows cycles, ``clearing`` high, no request
    taken) even if the BRAM held entries; a key write empties it again (entries placed
    with the old key could not be found any more), sets ``keyed``, and the key is not an
    output: the only outputs are the response stream and status."""
    dut = ConnectionLookup(16)
    stale = {"valid": 1, "conn_id": 5, "alt": 0,
             "tuple": {"remote_ip": 1, "remote_port": 2, "local_port": 3}}
    for table in dut.tables:
        table.init = [[stale] * dut.ways] * dut.rows
    assert {name for name, member in dut.signature.members.items()
            if member.flow.name == "Out"} == {
        "response", "keyed", "clearing", "live", "insert_full"}
    pair_a = {"remote_ip": 0x0A000001, "remote_port": 40000, "local_port": 80}
    stale_pair = stale["tuple"]

    async def transact(ctx, op, pair, conn_id=0):
        ctx.set(dut.request.p, {"op": op, "tuple": pair, "conn_id": conn_id})
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.response.ready, 1)
        await ctx.tick().until(dut.request.ready)
        ctx.set(dut.request.valid, 0)
        (p,) = await ctx.tick().sample(dut.response.p).until(dut.response.valid)
        return p.found, p.ok, ConnTableError(p.error), p.conn_id

    async def bench(ctx):
        clearing = 0
        while ctx.get(dut.clearing):
            assert not ctx.get(dut.request.ready)
            clearing += 1
            await ctx.tick()
        assert clearing == dut.rows
        assert not ctx.get(dut.keyed)
        assert await transact(ctx, LOOKUP, stale_pair) == (0, 0, NONE, 0)
        assert await transact(ctx, INSERT, pair_a, 7) == (0, 1, NONE, 7)
        assert ctx.get(dut.live) == 1
        ctx.set(dut.key, int.from_bytes(random.Random(SEED).randbytes(12), "big"))
        ctx.set(dut.key_we, 1)
        await ctx.tick()
        ctx.set(dut.key_we, 0)
        assert ctx.get(dut.keyed)
        await ctx.tick()
        assert ctx.get(dut.clearing) and not ctx.get(dut.request.ready)
        assert await transact(ctx, LOOKUP, pair_a) == (0, 0, NONE, 0)
        assert ctx.get(dut.live) == 0
        assert await transact(ctx, INSERT, pair_a, 9) == (0, 1, NONE, 9)
        assert await transact(ctx, LOOKUP, pair_a) == (1, 1, NONE, 9)

    run(dut, bench)


@pytest.mark.parametrize("n_connections, rows, row_bits", [(1024, 256, 332), (4096, 1024, 348)])
def test_elaborates_to_verilog(n_connections, rows, row_bits):
    """Scales by parameters (docs/architecture.md): Verilog at 1024 and 4096 connections with
    two BRAM banks of ``rows`` x ``row_bits`` (4 ways of valid + id + alt row + 64-bit
    socket pair) and one 64-bit comparator per way of the two rows, not per connection."""
    dut = ConnectionLookup(n_connections)
    text = verilog.convert(dut, name="conn_table")
    banks = re.findall(r"reg \[(\d+):0\] (bank\d) \[(\d+):0\];", text)
    assert sorted(banks) == [(str(row_bits - 1), "bank0", str(rows - 1)),
                             (str(row_bits - 1), "bank1", str(rows - 1))]
    assert dut.memory_bits == BANKS * rows * row_bits
    for port in ("request__valid", "request__ready", "response__valid", "key_we", "live"):
        assert re.search(rf"\b(input|output) .*\b{port}\b", text), port
