"""SYN cookies (RFC 4987 s3.6): a SYN-ACK that keeps no state, and the ACK that returns it.

When a listener cannot take a SYN (its half-open places or its backlog are full, or no
connection id is free; or always, with ``ToeConfig.syn_cookies = "always"``) the engine
answers with a SYN-ACK whose ISN is a cookie and forgets the SYN.  The ACK of that
SYN-ACK finds no connection; if it goes to a listener and ``SEG.ACK - 1`` is a valid
cookie, the engine rebuilds the SYN-RECEIVED connection the SYN would have made and
hands the ACK to the ordinary steps of s3.10.7.4, which take it to ESTABLISHED.

The cookie, bit by bit (the one definition: :func:`encode` in Python, for the models,
and :func:`encode_value` / :func:`fields` in hardware)::

    31..27  period   (now_us >> cookie_period_log2) mod 32
    26..24  mss      index into MSS_TABLE: the largest entry =< the SYN's MSS
    23..0   hash     SipHash-2-4 (the ISN key) of the 4-tuple and salt = period | mss << 5

This is D. J. Bernstein's layout, which RFC 4987 s3.6 describes.  A cookie is valid
during its own period and the next (``(period_now - period) mod 32 =< 1``: 67 to 134 s
with the default 2**26 us period); a forged ACK passes with probability 2**-24 per try.
The hash is keyed with the same write-only key as the ISNs (:mod:`hdl.tcp.isn`): the
14-byte message differs in length from the ISN's 12 bytes, so the two are independent.

Options survive only in the timestamps, as Linux does (``cookie_init_timestamp``): when
the SYN offered timestamps, the SYN-ACK's TSval carries in its low 6 bits the peer's
window shift (bits 0..3, 15: none), SACK-permitted (bit 4) and ECN (bit 5), and the
ACK echoes them in TSecr.  Without timestamps the SYN-ACK offers only the MSS.
"""

from amaranth.hdl import Cat, Const, Mux, Signal

__all__ = ["MSS_TABLE", "PERIOD_BITS", "MSS_BITS", "HASH_BITS", "TS_OPTION_BITS",
           "NO_WSCALE", "encode", "salt", "fresh", "ts_decode",
           "mss_index", "cookie_mss", "ts_value", "ts_option_bits", "encode_value",
           "fields"]

PERIOD_BITS = 5
MSS_BITS = 3
HASH_BITS = 24
#: MSS values a cookie can carry; the SYN's MSS is rounded down to one of them.  The
#: first is below every MSS a peer sends in practice (RFC 9293 s3.7.1 MUST-15 allows
#: any); the others are the common ones (IPv4 minimum 536, tunnels, 1460).
MSS_TABLE = (88, 536, 1024, 1220, 1360, 1400, 1440, 1460)
TS_OPTION_BITS = 6
NO_WSCALE = 15

assert len(MSS_TABLE) == 1 << MSS_BITS and PERIOD_BITS + MSS_BITS + HASH_BITS == 32


def salt(period, mss):
    """The 16-bit salt hashed with the 4-tuple (Python ints or hardware values)."""
    return (period & 31) | (mss & 7) << PERIOD_BITS


def fresh(period_now, period):
    """A cookie (or the last one sent) of ``period`` is of this period or the last."""
    return (period_now - period)[:PERIOD_BITS] <= 1


def encode(period: int, mss: int, digest: int) -> int:
    """The cookie of ``period``, MSS index ``mss`` and the salted hash ``digest``."""
    return ((period & 31) << 27) | ((mss & 7) << 24) | (digest & ((1 << HASH_BITS) - 1))


def ts_decode(bits: int) -> tuple[int | None, bool, bool]:
    ws = bits & 15
    return (None if ws == NO_WSCALE else ws), bool(bits >> 4 & 1), bool(bits >> 5 & 1)


def encode_value(period, mss, digest):
    """:func:`encode` in hardware."""
    return Cat(digest[:HASH_BITS], mss[:MSS_BITS], period[:PERIOD_BITS])


def fields(cookie):
    """:func:`decode` in hardware: ``(period, mss index, hash)``."""
    return (cookie[HASH_BITS + MSS_BITS :], cookie[HASH_BITS : HASH_BITS + MSS_BITS],
            cookie[:HASH_BITS])


def mss_index(m, peer_mss):
    """The index of the largest MSS_TABLE entry =< ``peer_mss`` (0 if none is)."""
    index = Signal(MSS_BITS, name="cookie_mss_index")
    for i, value in enumerate(MSS_TABLE):
        if i:
            with m.If(peer_mss >= value):
                m.d.comb += index.eq(i)
    return index


def cookie_mss(index):
    """MSS_TABLE[index], as a hardware value."""
    value = Const(MSS_TABLE[0], 16)
    for i, v in enumerate(MSS_TABLE[1:], start=1):
        value = Mux(index == i, v, value)
    return value


def ts_value(ts_now, bits):
    """A cookie SYN-ACK's TSval: the clock with its low 6 bits replaced by ``bits``,
    64 ticks earlier if that would put it ahead of the clock (as Linux does)."""
    tsv = Cat(bits[:TS_OPTION_BITS], ts_now[TS_OPTION_BITS:])
    return Mux(tsv > ts_now, tsv - (1 << TS_OPTION_BITS), tsv)[:32]


def ts_option_bits(ws_ok, wscale, sack_ok, ecn_ok):
    """The 6 option bits (hardware values)."""
    return Cat(Mux(ws_ok, Mux(wscale > 14, 14, wscale), NO_WSCALE)[:4], sack_ok, ecn_ok)
