"""A listening port of the async host API: :class:`Listener`.

:meth:`host.api.Engine.listen` opens one; :meth:`Listener.accept` (or ``async for``)
hands out the connections peers opened, as :class:`host.streams.Connection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .connection import closed_exception
from .streams import Connection

if TYPE_CHECKING:
    from .api import Engine

__all__ = ["Listener"]


class Listener:
    """A listening port.  ``async for conn in listener`` accepts forever."""

    def __init__(self, engine: Engine, port: int):
        self._engine = engine
        self.port = port
        self._closed = False

    def __repr__(self) -> str:
        return f"<Listener port={self.port}{' closed' if self._closed else ''}>"

    @property
    def pending(self) -> int:
        """Open connections waiting for accept()."""
        lst = self._engine.protocol.listener(self.port)
        return len(lst.queue) if lst is not None else 0

    async def accept(self) -> Connection:
        """The next connection opened by a peer (raises OSError once closed)."""
        engine = self._engine

        def check() -> Connection | None:
            if self._closed:
                raise closed_exception(f"listener on port {self.port}")
            conn = engine.protocol.accept(self.port)
            if conn is None:
                return None
            engine._kick()  # ACCEPT
            return engine._conns[conn]
        conn = await engine._wait_for(check)
        await engine._flush()  # the ACCEPT (a backlog place) goes out now
        return conn

    async def close(self) -> None:
        """Stop listening (connections waiting for accept() are reset)."""
        if self._closed:
            return
        self._closed = True
        engine = self._engine
        tag = engine._expect(engine.protocol.unlisten(self.port))
        engine._kick()  # wakes accept() waiters too
        try:
            await engine._answer(tag)
        finally:
            if engine._listeners.get(self.port) is self:
                del engine._listeners[self.port]

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Connection:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self.accept()
        except OSError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
