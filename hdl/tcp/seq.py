"""Sequence-number arithmetic (RFC 9293 s3.4), for the gateware: one definition.

Sequence numbers live modulo 2**32; ``a < b`` means that the 32-bit difference ``a - b``
is negative, which orders any two numbers less than 2**31 apart.
"""

from amaranth.hdl import Mux

__all__ = ["seq_diff", "seq_lt", "seq_le", "seq_min", "NEAR_BITS", "near_diff", "near_le"]

#: Sequence numbers inside one window (RX rings are at most 1 MiB) are less than 2**21
#: apart: their difference fits NEAR_BITS bits with its sign, a short carry chain.
NEAR_BITS = 22


def seq_diff(a, b):
    """``a - b`` modulo 2**32."""
    return (a - b)[:32]


def seq_lt(a, b):
    """``a < b`` in sequence space."""
    return seq_diff(a, b)[31]


def seq_le(a, b):
    """``a =< b`` in sequence space."""
    return ~seq_lt(b, a)


def near_diff(a, b):
    """``a - b`` for two sequence numbers less than 2**21 apart: NEAR_BITS bits, the top
    bit set when ``a`` is before ``b``."""
    return (a[:NEAR_BITS] - b[:NEAR_BITS])[:NEAR_BITS]


def near_le(a, b):
    """``a =< b`` for two sequence numbers less than 2**21 apart."""
    return ~near_diff(b, a)[NEAR_BITS - 1]


def seq_min(a, b):
    """The smaller of two plain (unsigned) quantities such as lengths and windows."""
    return Mux(a < b, a, b)
