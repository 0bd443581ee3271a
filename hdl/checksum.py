"""The Internet checksum (RFC 1071) in gateware, and its plain-Python reference.

The checksum is the 16-bit one's complement of the one's complement sum of the data taken
as big-endian 16-bit words.  A received header or segment is valid when the sum over it,
checksum field included, is 0xFFFF.  Incremental updates follow RFC 1624 eqn. 3:
``HC' = ~(~HC + ~m + m')``.
"""

from amaranth.hdl import Const, Value

from .stream import be

__all__ = ["fold", "ones_sum", "ones_sum_words", "internet_checksum", "reference_sum"]


def fold(value, bound: int | None = None) -> Value:
    """Fold an unsigned sum into 16 bits with end-around carry.

    ``bound`` is the largest value ``value`` can take (default: all ones); the number of
    folding passes follows from it, so the result is exact for any input width.
    """
    value = Value.cast(value)
    if bound is None:
        bound = (1 << len(value)) - 1
    while bound > 0xFFFF:
        high, low = bound >> 16, bound & 0xFFFF
        value = value[:16] + value[16:]
        bound = max(high + low, high - 1 + 0xFFFF)
    return value[:16]


def ones_sum_words(words, *, folded: bool = True) -> Value:
    """One's complement sum of a list of 16-bit values: an adder tree.

    With ``folded=False`` the plain (wide) sum is returned, to be registered and folded
    in a later pipeline stage.
    """
    words = [Value.cast(w) if not isinstance(w, int) else Const(w, 16) for w in words]
    count = len(words)
    while len(words) > 1:
        pairs = []
        for i in range(0, len(words) - 1, 2):
            pairs.append(words[i] + words[i + 1])
        if len(words) % 2:
            pairs.append(words[-1])
        words = pairs
    if not folded:
        return words[0]
    return fold(words[0], bound=0xFFFF * count)


def ones_sum(byte_list) -> Value:
    """One's complement sum of bytes taken as big-endian 16-bit words (odd length padded)."""
    byte_list = list(byte_list)
    if len(byte_list) % 2:
        byte_list.append(Const(0, 8))
    return ones_sum_words([be(byte_list[i : i + 2]) for i in range(0, len(byte_list), 2)])


def reference_sum(payload: bytes, start: int = 0) -> int:
    """Plain-Python one's complement sum of ``payload``, folded to 16 bits."""
    if len(payload) % 2:
        payload += b"\0"
    total = start
    for i in range(0, len(payload), 2):
        total += (payload[i] << 8) | payload[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(payload: bytes) -> int:
    """RFC 1071 checksum of ``payload``: the value that goes in the header field."""
    return ~reference_sum(payload) & 0xFFFF
