"""host/framing.py: length-prefixed messages over a byte stream.

The decoder must return the same messages however the stream is cut into pieces (TCP
keeps no write boundaries), refuse oversized prefixes, and tell a clean end of stream
(between messages) from one inside a message.  The async helpers are run under asyncio
over asyncio's own StreamReader and over a Connection-like object that raises
host.api.IncompleteReadError.
"""

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toe.host.api import IncompleteReadError
from toe.host.framing import (
    HEADER_SIZE,
    FramingError,
    IncompleteMessageError,
    MessageDecoder,
    MessageTooLargeError,
    encode_message,
    recv_message,
    send_message,
)


def split_randomly(data: bytes, rng: random.Random) -> list[bytes]:
    pieces, i = [], 0
    while i < len(data):
        n = rng.choice([1, 1, 2, 3, 4, 5, 7, 64, rng.randrange(1, 2000)])
        pieces.append(data[i:i + n])
        i += n
    return pieces


def test_encode_prefix_is_big_endian_length():
    assert encode_message(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_message(b"") == b"\x00\x00\x00\x00"
    assert encode_message(bytes(300))[:HEADER_SIZE] == b"\x00\x00\x01\x2c"
    with pytest.raises(MessageTooLargeError):
        encode_message(bytes(11), max_size=10)


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_give_the_same_messages(seed):
    rng = random.Random(seed)
    messages = [rng.randbytes(rng.choice([0, 1, 3, 4, 5, rng.randrange(0, 3000)]))
                for _ in range(rng.randrange(1, 40))]
    stream = b"".join(encode_message(m) for m in messages)
    decoder = MessageDecoder()
    got = []
    for piece in split_randomly(stream, rng):
        got += decoder.feed(piece)
    assert got == messages
    assert decoder.at_boundary and decoder.buffered == 0
    decoder.eof()  # a clean end


def test_byte_by_byte_and_all_at_once():
    messages = [b"", b"x", b"hello", bytes(range(256))]
    stream = b"".join(encode_message(m) for m in messages)
    decoder = MessageDecoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i:i + 1])
    assert got == messages
    assert MessageDecoder().feed(stream) == messages
    assert MessageDecoder().feed(memoryview(stream)) == messages


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20),
       st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_any_split_property(messages, cuts):
    stream = b"".join(encode_message(m) for m in messages)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = MessageDecoder(max_size=200)
    got = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += decoder.feed(stream[a:b])
    assert got == messages


def test_eof_inside_a_message():
    stream = encode_message(b"complete") + encode_message(b"cut short")
    for cut in range(len(encode_message(b"complete")) + 1, len(stream)):
        decoder = MessageDecoder()
        assert decoder.feed(stream[:cut]) == [b"complete"]
        assert not decoder.at_boundary
        with pytest.raises(IncompleteMessageError) as info:
            decoder.eof()
        assert info.value.partial == stream[len(encode_message(b"complete")):cut]
        inside_prefix = cut - len(encode_message(b"complete")) < HEADER_SIZE
        assert info.value.expected == (None if inside_prefix else 9)
        assert isinstance(info.value, EOFError) and isinstance(info.value, FramingError)


def test_oversized_prefix_refused_for_good():
    decoder = MessageDecoder(max_size=100)
    assert decoder.feed(encode_message(bytes(100))) == [bytes(100)]
    with pytest.raises(MessageTooLargeError) as info:
        decoder.feed((101).to_bytes(4, "big"))
    assert (info.value.size, info.value.max_size) == (101, 100)
    with pytest.raises(MessageTooLargeError):
        decoder.feed(b"anything")
    # A huge prefix is refused before any of the body is buffered.
    with pytest.raises(MessageTooLargeError):
        MessageDecoder().feed(b"\xff\xff\xff\xff")


# ---------------------------------------------------------------- async helpers


class PipeStream:
    """Connection-like: read/readexactly/write/drain over an in-memory buffer.

    Reads return what is buffered in random small pieces (as a TCP stream may), and
    readexactly raises host.api.IncompleteReadError at the end, as Connection does.
    """

    def __init__(self, data: bytes = b"", eof: bool = True, seed: int = 0):
        self.buffer = bytearray(data)
        self.eof = eof
        self.written = bytearray()
        self.drains = 0
        self.rng = random.Random(seed)

    async def read(self, n: int = -1) -> bytes:
        await asyncio.sleep(0)
        n = len(self.buffer) if n < 0 else min(n, self.rng.randrange(1, 8))
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise IncompleteReadError(bytes(out), n)
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        self.drains += 1
        await asyncio.sleep(0)


def test_send_and_recv_message_over_a_connection_like_object():
    async def main():
        messages = [b"", b"one", bytes(1000), b"last"]
        out = PipeStream()
        for m in messages:
            await send_message(out, m)
        assert out.drains == len(messages)
        assert bytes(out.written) == b"".join(encode_message(m) for m in messages)
        pipe = PipeStream(bytes(out.written))
        got = []
        while (m := await recv_message(pipe)) is not None:
            got.append(m)
        assert got == messages
        assert await recv_message(pipe) is None  # still at a clean end
    asyncio.run(main())


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 12])
def test_recv_message_eof_inside_a_message(cut):
    async def main():
        stream = encode_message(b"twelve bytes")[:cut]
        with pytest.raises(IncompleteMessageError) as info:
            await recv_message(PipeStream(stream))
        assert info.value.partial == stream
    asyncio.run(main())


def test_recv_message_refuses_an_oversized_prefix():
    async def main():
        with pytest.raises(MessageTooLargeError):
            await recv_message(PipeStream(encode_message(bytes(50))), max_size=49)
        with pytest.raises(MessageTooLargeError):
            await send_message(PipeStream(), bytes(50), max_size=49)
    asyncio.run(main())


def test_recv_message_over_an_asyncio_stream_reader():
    async def main():
        reader = asyncio.StreamReader()
        stream = b"".join(encode_message(m) for m in (b"a", b"bc", b""))
        for piece in split_randomly(stream + encode_message(b"xyz")[:5], random.Random(1)):
            reader.feed_data(piece)
        reader.feed_eof()
        assert [await recv_message(reader) for _ in range(3)] == [b"a", b"bc", b""]
        with pytest.raises(IncompleteMessageError):
            await recv_message(reader)
    asyncio.run(main())
