"""What the driver's protocol core (:mod:`host.protocol`) reports to the layer above:
one immutable record per happening, in the order the engine's events and data arrive."""

from dataclasses import dataclass

from toe.hdl.host_if import CommandOp, ErrorCode, InfoField

from .connection import EngineError, engine_error
from .icmp import IcmpReport

__all__ = [
    "Happening",
    "Listening",
    "Unlistened",
    "Connecting",
    "Connected",
    "Accepted",
    "DataReceived",
    "EndOfStream",
    "Acked",
    "Closed",
    "Reset",
    "Refused",
    "TimedOut",
    "IcmpError",
    "Error",
    "Released",
    "Info",
    "TcpInfo",
]


@dataclass(frozen=True)
class Happening:
    """Base class of what the core reports to the layer above."""


@dataclass(frozen=True)
class Listening(Happening):
    """``listen(port)`` succeeded."""

    tag: int
    port: int


@dataclass(frozen=True)
class Unlistened(Happening):
    """``unlisten(port)`` succeeded; the listener is gone."""

    tag: int
    port: int


@dataclass(frozen=True)
class Connecting(Happening):
    """``connect()`` got its connection id; the SYN is on its way."""

    tag: int
    conn: int


@dataclass(frozen=True)
class Connected(Happening):
    """An active open completed (``ESTABLISHED``)."""

    tag: int
    conn: int


@dataclass(frozen=True)
class Accepted(Happening):
    """A passive open completed; the connection waits in the listener's accept queue."""

    conn: int
    port: int
    remote_addr: int
    remote_port: int


@dataclass(frozen=True)
class DataReceived(Happening):
    """Bytes of the peer's stream, in order (one engine delivery)."""

    conn: int
    data: bytes


@dataclass(frozen=True)
class EndOfStream(Happening):
    """Every byte of the peer's stream has been received (after its FIN)."""

    conn: int


@dataclass(frozen=True)
class Acked(Happening):
    """The peer acknowledged ``n`` more bytes (send credit returned)."""

    conn: int
    n: int


@dataclass(frozen=True)
class Closed(Happening):
    """The close handshake finished (the engine's connection reached CLOSED)."""

    conn: int


@dataclass(frozen=True)
class Reset(Happening):
    """The peer reset an established connection."""

    conn: int


@dataclass(frozen=True)
class Refused(Happening):
    """The peer refused ``connect()`` (RST to the SYN), or an ICMP protocol or port
    unreachable ended it (``icmp``).  The id is released by the core."""

    conn: int
    tag: int | None
    icmp: IcmpReport | None = None


@dataclass(frozen=True)
class TimedOut(Happening):
    """Retransmissions gave up (R2); the connection was aborted by the engine.

    ``tag`` is the ``connect()`` request when the connection never opened.
    """

    conn: int
    tag: int | None
    icmp: IcmpReport | None = None  # the last ICMP error the connection had


@dataclass(frozen=True)
class IcmpError(Happening):
    """An ICMP error about the connection's segments (RFC 9293 SHLD-25); the connection
    goes on.  The engine reports one until the peer next acknowledges data."""

    conn: int
    icmp: IcmpReport


@dataclass(frozen=True)
class Error(Happening):
    """An ``ERROR`` event.

    For a failed request (``LISTEN``, ``UNLISTEN``, ``CONNECT``): ``tag`` and ``op`` are
    set, ``conn`` is None.  For a connection (a refused command or TX data): ``conn``.
    """

    code: ErrorCode
    conn: int | None = None
    tag: int | None = None
    op: CommandOp | None = None

    def exception(self) -> EngineError:
        what = self.op.name if self.op is not None else f"connection {self.conn}"
        return engine_error(self.code, what)


@dataclass(frozen=True)
class Released(Happening):
    """The engine released the connection id; the connection is gone for good."""

    conn: int


@dataclass(frozen=True)
class Info(Happening):
    """The answer to ``get_info(conn, field)``: ``value`` of :class:`InfoField` ``field``."""

    conn: int
    tag: int
    field: InfoField
    value: int


@dataclass(frozen=True)
class TcpInfo:
    """What ``Connection.tcp_info()`` reads of a connection in the engine (every
    :class:`InfoField`), in the spirit of Linux's ``TCP_INFO``; times in us."""

    cwnd: int
    ssthresh: int
    srtt_us: int
    rttvar_us: int
    rto_us: int
    flight: int  # bytes sent and not acknowledged
    snd_wnd: int  # the peer's window
    rcv_wnd: int  # the window this end could advertise now
    retransmits: int  # segments sent again (after a timeout or fast)
    snd_mss: int
    state: int  # hdl.tcp.states.TcpState
    options: int  # bit 0 window scaling, 1 timestamps, 2 SACK; 4..7 and 8..11 the shifts
    congestion: int  # the algorithm: an index into ToeConfig.congestion's names

    @classmethod
    def from_fields(cls, values: dict) -> "TcpInfo":
        return cls(**{f.name.lower(): values[f] for f in InfoField})

    @property
    def wscale(self) -> tuple[int, int] | None:
        """(the peer's shift, ours), or None without window scaling."""
        return ((self.options >> 4) & 15, (self.options >> 8) & 15) if self.options & 1 else None

    @property
    def timestamps(self) -> bool:
        return bool(self.options & 2)

    @property
    def sack(self) -> bool:
        return bool(self.options & 4)
