"""Length-prefixed messages over a byte stream.

TCP carries a stream of bytes, not messages: what one side writes in one call may be
read in pieces, or together with the next write (the "sticky packet" problem).  Here a
message is a 4-byte big-endian length followed by that many bytes; lengths above
``max_size`` are refused, so a corrupt or hostile prefix cannot make the reader buffer
gigabytes.

- :func:`send_message` / :func:`recv_message`: over any object with ``readexactly``,
  ``write`` and ``drain`` (a :class:`host.api.Connection`, an asyncio stream pair);
- :class:`MessageDecoder`: the same format, sans-I/O: feed bytes, take messages::

      decoder = MessageDecoder()
      for message in decoder.feed(chunk):
          handle(message)
      decoder.eof()  # raises IncompleteMessageError if a message was cut short

Example, with :mod:`host.api`::

    await send_message(conn, b"request")
    while (reply := await recv_message(conn)) is not None:  # None: clean end of stream
        ...
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

__all__ = [
    "HEADER_SIZE", "DEFAULT_MAX_SIZE", "FramingError", "MessageTooLargeError",
    "IncompleteMessageError", "encode_message", "send_message", "recv_message",
    "MessageDecoder", "StreamLike",
]

#: Bytes of the length prefix.
HEADER_SIZE = 4
#: Largest message accepted unless configured otherwise (16 MiB).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
_MAX_ENCODABLE = (1 << (8 * HEADER_SIZE)) - 1


class FramingError(ValueError):
    """The byte stream does not hold well-formed messages."""


class MessageTooLargeError(FramingError):
    """A message longer than the maximum size (sent or announced by a prefix)."""

    def __init__(self, size: int, max_size: int):
        super().__init__(f"message of {size} bytes exceeds the maximum of {max_size}")
        self.size = size
        self.max_size = max_size


class IncompleteMessageError(FramingError, EOFError):
    """The stream ended inside a message (``partial``: its bytes, prefix included)."""

    def __init__(self, partial: bytes, expected: int | None):
        what = "a length prefix" if expected is None else f"a {expected}-byte message"
        super().__init__(f"end of stream after {len(partial)} bytes of {what}")
        self.partial = partial
        self.expected = expected


class StreamLike(Protocol):
    """What :func:`send_message` and :func:`recv_message` need of a connection."""

    async def readexactly(self, n: int) -> bytes: ...
    def write(self, data: bytes) -> Any: ...
    def drain(self) -> Awaitable[Any]: ...


def _check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise MessageTooLargeError(size, max_size)


def encode_message(payload: bytes | bytearray | memoryview,
                   max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The prefix and the payload, as written on the stream."""
    size = len(payload)
    _check_size(size, min(max_size, _MAX_ENCODABLE))
    return size.to_bytes(HEADER_SIZE, "big") + bytes(payload)


async def send_message(conn: StreamLike, payload: bytes | bytearray | memoryview, *,
                       max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Write one message and wait for the connection's flow control (``drain``)."""
    conn.write(encode_message(payload, max_size))
    await conn.drain()


async def _readexactly(conn: StreamLike, n: int) -> tuple[bytes, bool]:
    """``n`` bytes, or (partial, False) at the end of the stream."""
    try:
        return await conn.readexactly(n), True
    except EOFError as e:  # host.api.IncompleteReadError, asyncio.IncompleteReadError
        return bytes(getattr(e, "partial", b"")), False


async def recv_message(conn: StreamLike, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
    """The next message; None if the stream ended cleanly between two messages.

    Raises :class:`IncompleteMessageError` if it ended inside one, and
    :class:`MessageTooLargeError` for a prefix above ``max_size`` (the stream is then
    out of step: close the connection).
    """
    header, ok = await _readexactly(conn, HEADER_SIZE)
    if not ok:
        if not header:
            return None
        raise IncompleteMessageError(header, None)
    size = int.from_bytes(header, "big")
    _check_size(size, max_size)
    if size == 0:
        return b""
    body, ok = await _readexactly(conn, size)
    if not ok:
        raise IncompleteMessageError(header + body, size)
    return body


class MessageDecoder:
    """Sans-I/O decoder: bytes in, complete messages out, whatever the split."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE):
        self.max_size = max_size
        self._buffer = bytearray()
        self._need: int | None = None  # the current message's size, once its prefix is in
        self._failed: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held (prefix included)."""
        return len(self._buffer)

    @property
    def at_boundary(self) -> bool:
        """No partial message is held (a clean place for the stream to end)."""
        return not self._buffer

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take ``data``; return the messages it completes, in order.

        Raises :class:`MessageTooLargeError` for an oversized prefix (and on every call
        after: the stream cannot be resynchronised).
        """
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        out = []
        while True:
            if self._need is None:
                if len(self._buffer) < HEADER_SIZE:
                    break
                size = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
                if size > self.max_size:
                    self._failed = MessageTooLargeError(size, self.max_size)
                    raise self._failed
                self._need = size
            end = HEADER_SIZE + self._need
            if len(self._buffer) < end:
                break
            out.append(bytes(self._buffer[HEADER_SIZE:end]))
            del self._buffer[:end]
            self._need = None
        return out

    def eof(self) -> None:
        """The stream ended: raises :class:`IncompleteMessageError` inside a message."""
        if self._buffer:
            raise IncompleteMessageError(bytes(self._buffer), self._need)
