"""The host driver of the engine (the ``toe`` command is :mod:`sim.cli`).

- :mod:`host.protocol`: the sans-I/O protocol core (:class:`EngineProtocol`), built on
  :mod:`host.events` (the engine's events applied) and :mod:`host.commands` (the
  command and TX streams); :mod:`host.happenings`: what the core reports;
- :mod:`host.connection`: a connection's state machine and the exceptions of its endings;
- :mod:`host.api`: the async API (:class:`Engine`; :class:`Listener` in
  :mod:`host.listener`, :class:`Connection` in :mod:`host.streams`) over a
  :class:`Transport` (:mod:`host.transport`), for asyncio and cocotb alike;
- :mod:`host.framing`: length-prefixed messages over a connection.

The names below are imported on first use, so ``import host`` stays cheap.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Engine": "api", "Listener": "listener", "Connection": "streams",
    "Transport": "transport", "IncompleteReadError": "streams",
    "EngineProtocol": "protocol", "ConnState": "connection", "ConnStats": "connection",
    "EngineError": "connection", "Ending": "connection", "IcmpReport": "icmp",
    "MessageDecoder": "framing", "send_message": "framing", "recv_message": "framing",
    "encode_message": "framing", "FramingError": "framing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'host' has no attribute {name!r}")
    return getattr(import_module(f"toe.host.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
