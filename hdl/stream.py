"""The packet stream beat: data, per-byte keep and last (AXI4-Stream semantics).

Byte 0 of a frame, the first byte on the wire, travels in lane 0 (``data[0:8]``) of the
first beat.  ``keep`` is contiguous from lane 0 and only the last beat of a frame may be
partial; a beat is never empty.
"""

from amaranth.hdl import Cat, Const, Value
from amaranth.lib import data, stream

__all__ = ["beat_layout", "beat_signature", "be", "be_bytes", "keep_for"]


def beat_layout(data_bytes: int) -> data.StructLayout:
    return data.StructLayout({"data": 8 * data_bytes, "keep": data_bytes, "last": 1})


def beat_signature(data_bytes: int) -> stream.Signature:
    return stream.Signature(beat_layout(data_bytes))


def be(byte_list) -> Value:
    """Big-endian (network order) value of a list of bytes, first byte most significant."""
    return Cat(*reversed(list(byte_list)))


def be_bytes(value, n: int) -> list:
    """The ``n`` bytes of ``value`` in network order (first byte = most significant)."""
    value = Value.cast(value) if not isinstance(value, int) else Const(value, 8 * n)
    return [value[8 * (n - 1 - i) : 8 * (n - i)] for i in range(n)]


def keep_for(count, data_bytes: int) -> Value:
    """Keep mask with the low ``count`` lanes set (``count`` in 1..data_bytes; 0 -> all)."""
    lanes = [(count > i) | (count == 0) for i in range(data_bytes)]
    return Cat(*lanes)
