"""Unit tests of hdl/checksum.py: the RFC 1071 Internet checksum in gateware and in Python.

Every gateware function (``fold``, ``ones_sum_words``, ``ones_sum``) is elaborated into a
small combinational module and compared, on random and corner-case data, with a plain
Python model written here from RFC 1071 alone, with the module's own ``reference_sum`` /
``internet_checksum``, and with scapy's independent ``scapy.utils.checksum``.
"""

import random

import pytest
from amaranth.hdl import Const, Module, Signal
from amaranth_helpers import run
from scapy.utils import checksum as scapy_checksum

from toe.hdl.checksum import fold, internet_checksum, ones_sum, ones_sum_words, reference_sum

SEED = 1071


# -- plain-Python model, straight from RFC 1071 ------------------------------------------


def rfc1071_sum(data: bytes) -> int:
    """RFC 1071 s1/s4.1: adjacent octets paired into 16-bit big-endian integers, an odd
    trailing octet padded with a zero octet, summed with end-around carry."""
    if len(data) % 2:
        data = data + b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += int.from_bytes(data[i : i + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)  # end-around carry after every add
    return total


def rfc1071_fold(value: int) -> int:
    """RFC 1071 s4.1 ("Fold 32-bit sum to 16 bits"): add the carries back until none."""
    while value >> 16:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def corner_payloads(rng: random.Random, length: int) -> list[bytes]:
    return [
        bytes(length),  # zero: sum 0, checksum 0xFFFF
        b"\xff" * length,  # all ones: -0 in one's complement
        bytes([0xFF, 0xFE] * length)[:length],
        bytes([0x80] * length),  # many carries out of bit 15
        bytes(rng.getrandbits(8) for _ in range(length)),
        bytes(rng.getrandbits(8) for _ in range(length)),
        bytes(rng.choice((0x00, 0xFF)) for _ in range(length)),
    ]


# -- the Python references themselves ------------------------------------------------------


def test_reference_against_rfc1071_and_scapy():
    """RFC 1071 s1 (1)-(3): checksum = ~(one's complement sum of 16-bit words); odd
    lengths padded with a zero octet.  ``reference_sum``/``internet_checksum`` agree with
    the RFC model here and with scapy's independent implementation."""
    rng = random.Random(SEED)
    for length in list(range(0, 80)) + [1499, 1500, 1501, 9000]:
        for data in corner_payloads(rng, length):
            assert reference_sum(data) == rfc1071_sum(data), (length, data.hex())
            assert internet_checksum(data) == scapy_checksum(data), (length, data.hex())
            assert internet_checksum(data) == ~rfc1071_sum(data) & 0xFFFF


def test_reference_verification_property():
    """RFC 1071 s1 (3): a buffer with its checksum inserted sums to 0xFFFF (all ones)."""
    rng = random.Random(SEED + 1)
    for _ in range(300):
        length = rng.randrange(2, 200) & ~1
        data = bytearray(rng.getrandbits(8) for _ in range(length))
        at = rng.randrange(0, length, 2)
        data[at : at + 2] = b"\0\0"
        data[at : at + 2] = internet_checksum(bytes(data)).to_bytes(2, "big")
        assert reference_sum(bytes(data)) == 0xFFFF


def test_reference_byte_order_and_start():
    """RFC 1071 s2 (B): the sum is byte-order independent (swapping the octets of every
    word swaps the octets of the sum); and a running ``start`` continues the sum as for a
    pseudo-header prefix (RFC 1071 s2 (C), parallel/incremental summation)."""
    rng = random.Random(SEED + 2)
    for _ in range(300):
        length = rng.randrange(0, 100) & ~1
        data = bytes(rng.getrandbits(8) for _ in range(length))
        swapped = b"".join(data[i : i + 2][::-1] for i in range(0, length, 2))
        s = reference_sum(data)
        assert reference_sum(swapped) == ((s & 0xFF) << 8 | s >> 8)
        split = rng.randrange(0, length + 1) & ~1
        assert reference_sum(data[split:], start=reference_sum(data[:split])) == s


def test_reference_incremental_update():
    """RFC 1624 eqn. 3 (quoted in hdl/checksum.py): HC' = ~(~HC + ~m + m') gives the same
    checksum as recomputing, after one 16-bit word m changes to m'."""
    rng = random.Random(SEED + 3)
    for _ in range(500):
        length = rng.randrange(2, 60) & ~1
        data = bytearray(rng.getrandbits(8) for _ in range(length))
        hc = internet_checksum(bytes(data))
        at = rng.randrange(0, length, 2)
        m = int.from_bytes(data[at : at + 2], "big")
        m2 = rng.getrandbits(16)
        data[at : at + 2] = m2.to_bytes(2, "big")
        updated = ~rfc1071_fold((~hc & 0xFFFF) + (~m & 0xFFFF) + m2) & 0xFFFF
        assert updated == internet_checksum(bytes(data)), (data.hex(), hex(m), hex(m2))


# -- gateware --------------------------------------------------------------------------------


FOLD_WIDTHS = [16, 17, 20, 24, 31, 32, 33, 40, 48, 64]


def test_fold_gateware():
    """RFC 1071 s4.1: ``fold`` adds the carries back with enough passes to be exact for
    every input of its width (end-around carry), so it equals the iterate-to-fixpoint fold."""
    rng = random.Random(SEED + 4)
    m = Module()
    ins = {w: Signal(w, name=f"x{w}") for w in FOLD_WIDTHS}
    outs = {}
    for w, x in ins.items():
        outs[w] = Signal(16, name=f"f{w}")
        m.d.comb += outs[w].eq(fold(x))
    # A bounded fold: bounds that are not all-ones, which take fewer passes.
    bounds = [0xFFFF * 2, 0xFFFF * 3, 0xFFFF * 40, 0x1_0000, 0x1_FFFE, 0xFFFF * 750, 0xFFFF_FFFF]
    bounded_in = [Signal(32, name=f"b{i}") for i in range(len(bounds))]
    bounded_out = [Signal(16, name=f"bf{i}") for i in range(len(bounds))]
    for x, y, b in zip(bounded_in, bounded_out, bounds, strict=True):
        m.d.comb += y.eq(fold(x, bound=b))

    def values(limit):
        special = [0, 1, 0xFFFF, 0x10000, 0x1FFFF, 0x1FFFE, 0xFFFF0000, 0xFFFEFFFF, limit]
        return [v for v in special if v <= limit] + [rng.randint(0, limit) for _ in range(200)]

    async def bench(ctx):
        for w, x in ins.items():
            for v in values((1 << w) - 1):
                ctx.set(x, v)
                assert ctx.get(outs[w]) == rfc1071_fold(v), (w, hex(v))
                assert ctx.get(outs[w]) == reference_sum(b"", start=v)
        for x, y, b in zip(bounded_in, bounded_out, bounds, strict=True):
            for v in values(b):
                ctx.set(x, v)
                assert ctx.get(y) == rfc1071_fold(v), (hex(b), hex(v))

    run(m, bench, clock=False)


WORD_COUNTS = [1, 2, 3, 4, 5, 7, 8, 16, 20, 33]


def test_ones_sum_words_gateware():
    """RFC 1071 s2 (A)/(C): the adder tree over 16-bit words, folded once at the end with a
    bound from the word count, equals the sequential one's complement sum; words given as
    Python ints become constants."""
    rng = random.Random(SEED + 5)
    m = Module()
    cases = []
    for count in WORD_COUNTS:
        words = [Signal(16, name=f"w{count}_{i}") for i in range(count)]
        out = Signal(16, name=f"s{count}")
        m.d.comb += out.eq(ones_sum_words(words))
        cases.append((words, out))
    # Mixed signals and constants (the module takes ints for fixed header fields).
    mixed_sigs = [Signal(16, name=f"mx{i}") for i in range(3)]
    mixed_consts = [0x4500, 0xFFFF, 0x0001]
    mixed_out = Signal(16)
    m.d.comb += mixed_out.eq(ones_sum_words([mixed_sigs[0], mixed_consts[0], mixed_sigs[1],
                                             mixed_consts[1], Const(0x0001, 16), mixed_sigs[2],
                                             mixed_consts[2]]))

    def word_sets(count):
        yield [0] * count
        yield [0xFFFF] * count
        yield [0x8000] * count
        yield [0xFFFF] + [0x0001] * (count - 1)
        for _ in range(150):
            yield [rng.getrandbits(16) for _ in range(count)]
        for _ in range(20):
            yield [rng.choice((0, 0xFFFF, 0xFFFE, 1)) for _ in range(count)]

    def as_bytes(words):
        return b"".join(w.to_bytes(2, "big") for w in words)

    async def bench(ctx):
        for words, out in cases:
            for values in word_sets(len(words)):
                for s, v in zip(words, values, strict=True):
                    ctx.set(s, v)
                assert ctx.get(out) == rfc1071_sum(as_bytes(values)), [hex(v) for v in values]
        for values in word_sets(3):
            for s, v in zip(mixed_sigs, values, strict=True):
                ctx.set(s, v)
            full = [values[0], mixed_consts[0], values[1], mixed_consts[1], 1, values[2],
                    mixed_consts[2]]
            assert ctx.get(mixed_out) == reference_sum(as_bytes(full))

    run(m, bench, clock=False)


BYTE_COUNTS = list(range(1, 42)) + [60, 64]


def test_ones_sum_gateware():
    """RFC 1071 s1 (1): bytes paired big-endian into words, an odd trailing byte padded with
    zero; the gateware sum equals ``reference_sum``, and its complement equals scapy's
    checksum, for every length 1..41, 60 and 64, on random, zero and all-0xFF data."""
    rng = random.Random(SEED + 6)
    top = max(BYTE_COUNTS)
    m = Module()
    data_in = Signal(8 * top)
    byte_sigs = [data_in[8 * i : 8 * i + 8] for i in range(top)]
    outs = {}
    for count in BYTE_COUNTS:
        outs[count] = Signal(16, name=f"sum{count}")
        m.d.comb += outs[count].eq(ones_sum(byte_sigs[:count]))

    async def bench(ctx):
        payloads = corner_payloads(rng, top)
        payloads += [bytes(rng.getrandbits(8) for _ in range(top)) for _ in range(150)]
        for data in payloads:
            ctx.set(data_in, int.from_bytes(data, "little"))
            for count, out in outs.items():
                got, prefix = ctx.get(out), data[:count]
                assert got == reference_sum(prefix), (count, prefix.hex())
                assert got == rfc1071_sum(prefix), (count, prefix.hex())
                assert ~got & 0xFFFF == scapy_checksum(prefix), (count, prefix.hex())

    run(m, bench, clock=False)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_ones_sum_constant_bytes(count):
    """RFC 1071 s1: ``ones_sum`` on constant bytes (fixed header fields) is the same sum."""
    rng = random.Random(SEED + 7 + count)
    data = bytes(rng.getrandbits(8) for _ in range(count))
    m = Module()
    out = Signal(16)
    m.d.comb += out.eq(ones_sum([Const(b, 8) for b in data]))

    async def bench(ctx):
        assert ctx.get(out) == reference_sum(data)

    run(m, bench, clock=False)
