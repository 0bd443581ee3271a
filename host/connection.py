"""One connection as the driver sees it: an explicit state machine.

:class:`ConnectionMachine` holds a connection's state in five enums, each with its own
legal transitions (:data:`TRANSITIONS`), changed only through the machine's methods:

- :class:`Opening`: how far the open got (``CONNECTING`` -> ``CONNECTED`` for an active
  open; ``QUEUED`` in the listener's accept queue -> ``ACCEPTED`` or ``UNCLAIMED`` for a
  passive one);
- :class:`SendSide`: our stream (``OPEN`` -> ``SHUTDOWN_REQUESTED`` -> ``FIN_SENT``; the
  ``ABORT`` command ends it as ``ABORT_SENT`` from any of them);
- :class:`ReceiveSide`: the peer's stream (``OPEN`` -> ``PEER_FIN`` -> ``EOF``);
- :class:`Release`: the host's hold on the connection id (``HELD`` -> ``REQUESTED`` by
  ``close()``, ``abort()`` or the core -> ``SENT`` with ``CLOSE`` or ``ABORT`` ->
  ``RELEASED`` by the engine);
- :class:`Ending`: how the connection ended (``NOT_ENDED`` -> one of ``CLOSED``,
  ``RESET``, ``REFUSED``, ``TIMED_OUT``, ``ABORTED``, ``FAILED``; set once).

A move the tables do not allow raises :class:`IllegalTransition`.

:func:`ending_exception` is the one mapping from an ending to the exception the driver
raises for it (``ConnectionResetError``, ``ConnectionRefusedError``, ``TimeoutError``,
``OSError(EBADF)``, :class:`EngineError`).  :class:`ConnectionRecord` is the core's record
of a connection: its addresses, its machine, its counters and its buffers.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
from dataclasses import dataclass, field

from toe.hdl.host_if import ErrorCode

from .icmp import IcmpReport

__all__ = [
    "Opening", "SendSide", "ReceiveSide", "Release", "Ending", "TRANSITIONS",
    "IllegalTransition", "ConnectionMachine", "ConnState", "ConnStats", "ConnectionRecord",
    "EngineError", "engine_error", "ending_exception", "closed_exception", "format_addr",
]


def format_addr(addr: int) -> str:
    """The 32-bit address -> ``"10.0.0.1"``."""
    return str(ipaddress.IPv4Address(addr))


# ------------------------------------------------------------------ errors

_ERRNO = {
    ErrorCode.BAD_COMMAND: errno.EINVAL,
    ErrorCode.UNKNOWN_CONN: errno.EBADF,
    ErrorCode.BAD_STATE: errno.EINVAL,
    ErrorCode.NO_FREE_CONN: errno.EAGAIN,
    ErrorCode.PORT_IN_USE: errno.EADDRINUSE,
    ErrorCode.NO_LISTENER_SLOT: errno.ENOBUFS,
    ErrorCode.NOT_LISTENING: errno.EINVAL,
    ErrorCode.TX_OVERFLOW: errno.ENOBUFS,
    ErrorCode.TX_AFTER_SHUTDOWN: errno.EPIPE,
    ErrorCode.TABLE_FULL: errno.ENOBUFS,
    ErrorCode.REFUSED: errno.ECONNREFUSED,
    ErrorCode.RESET: errno.ECONNRESET,
    ErrorCode.NO_ROUTE: errno.EHOSTUNREACH,
    ErrorCode.BAD_ADDRESS: errno.EADDRNOTAVAIL,
    ErrorCode.BAD_PORT: errno.EINVAL,
    ErrorCode.UNREAD_DATA: errno.ECONNABORTED,
    ErrorCode.BAD_OPTION: errno.ENOPROTOOPT,
}


class EngineError(OSError):
    """An ``ERROR`` event of the engine, as an :class:`OSError` with ``code`` (ErrorCode)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(_ERRNO.get(code, errno.EIO), message)
        self.code = code


def engine_error(code: ErrorCode, what: str = "") -> EngineError:
    """The exception for an engine error ``code`` (``what``: the failed request)."""
    text = f"engine error {code.name}"
    return EngineError(code, f"{what}: {text}" if what else text)


def closed_exception(what: str) -> OSError:
    """``OSError(EBADF)``: ``what`` (a connection, a listener) was closed by the host."""
    return OSError(errno.EBADF, f"{what} is closed")


# ------------------------------------------------------------------ the machine


class Opening(enum.Enum):
    """How far the connection's open got."""

    CONNECTING = "connecting"  # active open: the SYN is out, no ESTABLISHED yet
    CONNECTED = "connected"  # active open: ESTABLISHED
    QUEUED = "queued"  # passive open: waits in the listener's accept queue
    ACCEPTED = "accepted"  # passive open: ACCEPT sent (accept(), or the core gave it back)
    UNCLAIMED = "unclaimed"  # passive open nobody took: released without ACCEPT


class SendSide(enum.Enum):
    """Our stream."""

    OPEN = "open"  # write() is accepted
    SHUTDOWN_REQUESTED = "shutdown requested"  # shutdown()/close(): the end waits for the data
    FIN_SENT = "FIN sent"  # the end of the stream went out (the marker, or CLOSE before open)
    ABORT_SENT = "ABORT sent"  # ABORT went out: the stream ends with RST, unsent data dropped


class ReceiveSide(enum.Enum):
    """The peer's stream."""

    OPEN = "open"
    PEER_FIN = "peer FIN"  # PEER_FIN gave the stream's length; bytes may still be on the way
    EOF = "EOF"  # every byte received; EndOfStream reported


class Release(enum.Enum):
    """The host's hold on the connection id."""

    HELD = "held"  # the host's: the application's, a connect() waiter's or an accept queue's
    REQUESTED = "requested"  # close(), abort() or the core let go; no CLOSE or ABORT sent yet
    SENT = "sent"  # CLOSE or ABORT sent: the engine releases the id when it is done
    RELEASED = "released"  # RELEASED: the id is the engine's again


class Ending(enum.Enum):
    """How the connection ended."""

    NOT_ENDED = "not ended"
    CLOSED = "closed"  # the close handshake finished (CLOSED)
    RESET = "reset"  # the peer reset it
    REFUSED = "refused"  # the peer refused the SYN
    TIMED_OUT = "timed out"  # retransmissions gave up (R2)
    ABORTED = "aborted"  # abort() by the application
    FAILED = "failed"  # the engine failed it with an error code (``ConnectionMachine.code``)


_ENDED = frozenset(Ending) - {Ending.NOT_ENDED}

#: The legal moves of each enum: state -> the states it may go to.
TRANSITIONS: dict[type[enum.Enum], dict[enum.Enum, frozenset[enum.Enum]]] = {
    Opening: {
        Opening.CONNECTING: frozenset({Opening.CONNECTED}),
        Opening.QUEUED: frozenset({Opening.ACCEPTED, Opening.UNCLAIMED}),
        Opening.CONNECTED: frozenset(),
        Opening.ACCEPTED: frozenset(),
        Opening.UNCLAIMED: frozenset(),
    },
    SendSide: {
        SendSide.OPEN: frozenset({SendSide.SHUTDOWN_REQUESTED, SendSide.ABORT_SENT}),
        SendSide.SHUTDOWN_REQUESTED: frozenset({SendSide.FIN_SENT, SendSide.ABORT_SENT}),
        SendSide.FIN_SENT: frozenset({SendSide.ABORT_SENT}),
        SendSide.ABORT_SENT: frozenset(),
    },
    ReceiveSide: {
        ReceiveSide.OPEN: frozenset({ReceiveSide.PEER_FIN}),
        ReceiveSide.PEER_FIN: frozenset({ReceiveSide.EOF}),
        ReceiveSide.EOF: frozenset(),
    },
    Release: {
        # RELEASED is the engine's word: it ends the hold whatever the host did.
        Release.HELD: frozenset({Release.REQUESTED, Release.RELEASED}),
        Release.REQUESTED: frozenset({Release.SENT, Release.RELEASED}),
        Release.SENT: frozenset({Release.RELEASED}),
        Release.RELEASED: frozenset(),
    },
    Ending: {
        Ending.NOT_ENDED: _ENDED,
        **{ending: frozenset() for ending in _ENDED},
    },
}

_FIELD = {Opening: "opening", SendSide: "send", ReceiveSide: "receive", Release: "release",
          Ending: "ending"}


class IllegalTransition(RuntimeError):
    """A move the connection machine does not allow (a bug of the caller)."""


@dataclass(eq=False)
class ConnectionMachine:
    """The state of one connection (see the module documentation).

    The fields are read freely; only the methods below change them, each checking the
    move against :data:`TRANSITIONS`.
    """

    opening: Opening
    send: SendSide = SendSide.OPEN
    receive: ReceiveSide = ReceiveSide.OPEN
    release: Release = Release.HELD
    ending: Ending = Ending.NOT_ENDED
    peer_fin_len: int | None = None  # PEER_FIN: the peer's stream length (mod 2**32)
    code: ErrorCode | None = None  # FAILED: the engine's error code

    def __post_init__(self) -> None:
        if self.opening not in (Opening.CONNECTING, Opening.QUEUED):
            raise IllegalTransition(f"a connection starts CONNECTING or QUEUED, "
                                    f"not {self.opening.name}")

    def _move(self, to: enum.Enum) -> None:
        name = _FIELD[type(to)]
        now = getattr(self, name)
        if to not in TRANSITIONS[type(to)][now]:
            raise IllegalTransition(f"{name}: {now.name} -> {to.name}")
        setattr(self, name, to)

    # ------------------------------------------------------------ queries

    @property
    def established(self) -> bool:
        """The open completed (a passive connection is open when it is reported)."""
        return self.opening is not Opening.CONNECTING

    @property
    def ended(self) -> bool:
        return self.ending is not Ending.NOT_ENDED

    @property
    def dead(self) -> bool:
        """Ended other than by the close handshake: no more data either way."""
        return self.ended and self.ending is not Ending.CLOSED

    @property
    def held(self) -> bool:
        """Nobody let go of the id yet (no close(), abort() or release by the core)."""
        return self.release is Release.HELD

    @property
    def release_sent(self) -> bool:
        """``CLOSE`` or ``ABORT`` went out (or the engine released the id anyway)."""
        return self.release in (Release.SENT, Release.RELEASED)

    @property
    def released(self) -> bool:
        return self.release is Release.RELEASED

    @property
    def stream_end_sent(self) -> bool:
        """Our stream's end went out: the marker, ``CLOSE`` before the open, or ABORT."""
        return self.send in (SendSide.FIN_SENT, SendSide.ABORT_SENT)

    # ------------------------------------------------------------ transitions

    def establish(self) -> None:
        """``ESTABLISHED``: the active open completed."""
        self._move(Opening.CONNECTED)

    def accept(self) -> None:
        """``ACCEPT`` sent for a queued passive open."""
        self._move(Opening.ACCEPTED)

    def unclaim(self) -> None:
        """A queued passive open leaves the queue without ``ACCEPT``."""
        self._move(Opening.UNCLAIMED)

    def request_shutdown(self) -> None:
        """``shutdown()`` or ``close()``: the end of the stream follows the buffered data.
        Idempotent once requested or sent; not after ``ABORT``."""
        if self.send in (SendSide.SHUTDOWN_REQUESTED, SendSide.FIN_SENT):
            return
        self._move(SendSide.SHUTDOWN_REQUESTED)

    def send_fin(self) -> None:
        """The end of the stream went out (the marker, or ``CLOSE`` with value 0)."""
        self._move(SendSide.FIN_SENT)

    def request_release(self) -> None:
        """``close()``, ``abort()``, or the core gives back an id nobody holds.
        Idempotent until the engine released the id."""
        if self.release in (Release.REQUESTED, Release.SENT):
            return
        self._move(Release.REQUESTED)

    def send_close(self) -> None:
        """``CLOSE`` went out."""
        self._move(Release.SENT)

    def send_abort(self) -> None:
        """``ABORT`` went out (after a release request; also after ``CLOSE``)."""
        if self.release not in (Release.REQUESTED, Release.SENT):
            raise IllegalTransition(f"release: ABORT while {self.release.name}")
        self._move(SendSide.ABORT_SENT)
        self.release = Release.SENT

    def engine_released(self) -> None:
        """``RELEASED``: the id is the engine's again."""
        self._move(Release.RELEASED)

    def see_peer_fin(self, length: int) -> None:
        """``PEER_FIN``: the peer's stream has ``length`` bytes (mod 2**32)."""
        self._move(ReceiveSide.PEER_FIN)
        self.peer_fin_len = length

    def deliver_eof(self) -> None:
        """Every byte of the peer's stream was received; ``EndOfStream`` reported."""
        self._move(ReceiveSide.EOF)

    def end(self, ending: Ending, code: ErrorCode | None = None) -> None:
        """The connection ended (once).  ``FAILED`` needs the engine's error ``code``."""
        if (ending is Ending.FAILED) != (code is not None):
            raise IllegalTransition("FAILED, and only FAILED, comes with an error code")
        self._move(ending)
        self.code = code

    def exception(self, conn: int, icmp: IcmpReport | None = None) -> BaseException | None:
        """The exception for the ending (:func:`ending_exception`), None while open."""
        return ending_exception(self.ending, conn, self.code, icmp)


def ending_exception(ending: Ending, conn: int, code: ErrorCode | None = None,
                     icmp: IcmpReport | None = None) -> BaseException | None:
    """The exception the driver raises for a connection that ended so; None for
    ``NOT_ENDED`` and ``CLOSED`` (a clean close is no error).  With the ICMP error that
    refused the connection, or the last one before a timeout (``icmp``), the exception
    is Linux's for that message (``ECONNREFUSED`` for port unreachable,
    ``EHOSTUNREACH`` for host unreachable, ...)."""
    if icmp is not None and ending in (Ending.REFUSED, Ending.TIMED_OUT):
        what = "was refused" if ending is Ending.REFUSED else "timed out"
        message = f"connection {conn} {what}: {icmp.description}"
        if icmp.errno == errno.ECONNREFUSED:
            return ConnectionRefusedError(icmp.errno, message)
        return OSError(icmp.errno, message)
    match ending:
        case Ending.NOT_ENDED | Ending.CLOSED:
            return None
        case Ending.RESET:
            return ConnectionResetError(errno.ECONNRESET,
                                        f"connection {conn} was reset by the peer")
        case Ending.REFUSED:
            return ConnectionRefusedError(errno.ECONNREFUSED,
                                          f"connection {conn} was refused by the peer")
        case Ending.TIMED_OUT:
            return TimeoutError(errno.ETIMEDOUT, f"connection {conn} timed out")
        case Ending.ABORTED:
            return OSError(errno.EBADF, f"connection {conn} was aborted")
        case Ending.FAILED:
            return engine_error(code if code is not None else ErrorCode.NONE,
                                f"connection {conn}")
    raise ValueError(f"not an ending: {ending!r}")


# ------------------------------------------------------------------ records


class ConnState(str, enum.Enum):
    """A connection's state from the driver's point of view (a summary of the machine)."""

    SYN_SENT = "SYN-SENT"  # connect() issued, not yet established
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN-WAIT"  # we shut down (or closed); the peer's stream goes on
    CLOSE_WAIT = "CLOSE-WAIT"  # the peer sent FIN; we may still send
    CLOSING = "CLOSING"  # both directions finished; waiting for the handshake's end
    CLOSED = "CLOSED"  # closed, reset, timed out or aborted; the id is still held
    RELEASED = "RELEASED"  # the engine released the id

    def __str__(self) -> str:
        return self.value


@dataclass
class ConnStats:
    """Byte counters of one connection (the engine's segments are not visible here)."""

    bytes_written: int = 0  # taken from the application by send()
    bytes_sent: int = 0  # handed to the engine (TX beats)
    bytes_discarded: int = 0  # written, never handed over (abort, reset, timeout)
    bytes_acked: int = 0  # acknowledged by the peer (ACKED)
    bytes_received: int = 0  # delivered by the engine (RX beats)
    bytes_consumed: int = 0  # taken by the application (consume())
    credit_granted: int = 0  # receive credit granted with CREDIT
    tx_writes: int = 0  # writes (beat runs ending with last)
    tx_beats: int = 0
    rx_beats: int = 0
    rx_deliveries: int = 0
    rx_overrun: int = 0  # bytes the engine delivered beyond the credit (never expected)
    errors: int = 0  # ERROR events for this connection
    icmp_errors: int = 0  # ICMP errors the engine reported (ICMP_ERROR, RESET UNREACHABLE)

    @property
    def tx_buffered(self) -> int:
        """Bytes written and not yet handed to the engine."""
        return self.bytes_written - self.bytes_sent - self.bytes_discarded

    @property
    def tx_unacked(self) -> int:
        """Bytes handed to the engine and not yet acknowledged."""
        return self.bytes_sent - self.bytes_acked

    @property
    def rx_buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return self.bytes_received - self.bytes_consumed


@dataclass(eq=False)
class ConnectionRecord:
    """The core's record of a connection.  Read it; only the core changes it."""

    conn: int
    passive: bool
    local_port: int
    remote_addr_int: int
    remote_port: int
    tag: int | None = None  # the connect() request
    listener_port: int | None = None  # passive: the listening port
    machine: ConnectionMachine = None  # type: ignore[assignment]  # set in __post_init__
    last_error: ErrorCode | None = None  # the last ERROR event's code (the connection goes on)
    icmp_error: IcmpReport | None = None  # the last ICMP error reported (host/icmp.py)
    stats: ConnStats = field(default_factory=ConnStats)
    # internal
    tx_buffer: bytearray = field(default_factory=bytearray, repr=False)
    rx_pending: bytearray = field(default_factory=bytearray, repr=False)
    consumed_at_grant: int = 0

    def __post_init__(self) -> None:
        if self.machine is None:
            self.machine = ConnectionMachine(Opening.QUEUED if self.passive
                                             else Opening.CONNECTING)

    @property
    def remote_addr(self) -> str:
        return format_addr(self.remote_addr_int)

    @property
    def state(self) -> ConnState:
        m = self.machine
        if m.released:
            return ConnState.RELEASED
        if m.ended:
            return ConnState.CLOSED
        if not m.established:
            return ConnState.SYN_SENT
        fin_out = m.send is not SendSide.OPEN
        fin_in = m.receive is not ReceiveSide.OPEN
        if fin_out and fin_in:
            return ConnState.CLOSING
        if fin_out:
            return ConnState.FIN_WAIT
        if fin_in:
            return ConnState.CLOSE_WAIT
        return ConnState.ESTABLISHED
