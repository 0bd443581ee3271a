"""Sequence-number arithmetic (RFC 9293 s3.4), for the gateware: one definition.

Sequence numbers live modulo 2**32; ``a < b`` means that the 32-bit difference ``a - b``
is negative, which orders any two numbers less than 2**31 apart.
"""

from amaranth.hdl import Mux

__all__ = ["seq_diff", "seq_lt", "seq_le", "seq_min"]


def seq_diff(a, b):
    """``a - b`` modulo 2**32."""
    return (a - b)[:32]


def seq_lt(a, b):
    """``a < b`` in sequence space."""
    return seq_diff(a, b)[31]


def seq_le(a, b):
    """``a =< b`` in sequence space."""
    return ~seq_lt(b, a)


def seq_min(a, b):
    """The smaller of two plain (unsigned) quantities such as lengths and windows."""
    return Mux(a < b, a, b)
