"""The host interface: message layouts shared by the gateware and the host driver.

Four streams connect the engine to the host (docs/host-driver.md), besides the register
file:

``cmd`` (host -> engine): one :func:`command_layout` per command.
``evt`` (engine -> host): one :func:`event_layout` per event.
``tx`` (host -> engine): :func:`data_layout` beats, the bytes a connection sends.  An
empty beat (``count`` 0, ``last`` 1) ends the connection's stream: FIN follows exactly
the bytes written before it.  (``SHUTDOWN`` does the same from the command stream, after
whatever the engine has already taken from the TX stream.)
``rx`` (engine -> host): :func:`data_layout` beats, the bytes a connection received.

These layouts are the single definition: the gateware builds its ports from them and the
driver packs and unpacks messages with ``layout.const({...}).as_bits()`` and
``layout.from_bits(n)``.

Connection ids are allocated by the engine (``CONNECT`` answers ``CONNECTING`` with the
id; a passive open reports ``ACCEPTED`` with a new id).  An id stays the host's until
the host has issued ``CLOSE`` or ``ABORT`` on it *and* the connection has reached
CLOSED; then ``RELEASED`` tells the host it may be reused.  So no command ever reaches a
later connection by mistake.

Flow control is by credit, per connection, in bytes:

- send: the host may have at most ``tx_ring_bytes`` unacknowledged bytes written to a
  connection; ``ACKED`` events return credit as the peer acknowledges data.  A byte
  beyond the credit is never stored with a hole before it: it and every later byte of
  the connection are discarded, the connection is reset (RST to the peer) and the host
  gets ``RESET(TX_OVERFLOW)``.
- receive: the engine delivers at most the credit the host has granted with ``CREDIT``
  commands; the rest waits in the connection's RX ring, whose free space is the window
  advertised to the peer.
"""

from amaranth.lib import data, enum

from .config import ToeConfig

__all__ = [
    "CommandOp", "SocketOption", "EventKind", "ErrorCode",
    "command_layout", "event_layout", "data_layout",
]


class CommandOp(enum.Enum, shape=4):
    """What a command asks for.  Fields used: see each member."""

    NOP = 0
    LISTEN = 1  # port, value = backlog (connections not yet accepted), tag
    UNLISTEN = 2  # port, tag
    CONNECT = 3  # addr, port = remote port, value = local port, tag
    ACCEPT = 4  # conn: the host took an ACCEPTED connection (frees a backlog place)
    SHUTDOWN = 5  # conn: send FIN after the queued data (half-close, RFC 9293 s3.10.4)
    CLOSE = 6  # conn: shutdown if not yet (value bit 0: the TX stream ends it), release
    #            the id once CLOSED
    ABORT = 7  # conn: send RST, release (RFC 9293 s3.10.5)
    CREDIT = 8  # conn, value = bytes the host can take more on the RX stream
    SET_OPTION = 9  # conn, port = a SocketOption, value: set a per-connection option
    GET_INFO = 10  # conn, port = an InfoField, tag: answered by INFO (as Linux's TCP_INFO)


class SocketOption(enum.Enum, shape=16):
    """Per-connection options of ``SET_OPTION`` (the ``port`` field)."""

    QUICKACK = 1  # value bit 0: acknowledge every segment at once (no delayed ACKs)
    NODELAY = 2  # value bit 0: no Nagle algorithm (RFC 9293 MUST-17)
    # Keep-alives (hdl/tcp/keepalive.py); times in timestamp-clock ticks of 1.024 ms.
    KEEPALIVE_IDLE = 3  # value: idle time before the first probe; 0 turns keep-alives off
    KEEPALIVE_INTERVAL = 4  # value: time between probes (default 75 s)
    KEEPALIVE_COUNT = 5  # value: unanswered probes before the reset, 1..15 (default 10)
    CONGESTION = 6  # value: the algorithm, an index into ToeConfig.congestion's list
    TTL = 7  # value: the IPv4 TTL of the connection's segments, 1..255 (MUST-49)
    DSCP = 8  # value: the DSCP of the connection's segments, 0..63 (MUST-48, RFC 2474)


class InfoField(enum.Enum, shape=16):
    """What ``GET_INFO`` reads of a connection (the ``port`` field); times in us."""

    CWND = 0  # the congestion window, bytes
    SSTHRESH = 1
    SRTT_US = 2  # the smoothed RTT (0 before the first sample)
    RTTVAR_US = 3
    RTO_US = 4
    FLIGHT = 5  # SND.MAX - SND.UNA: bytes sent and not acknowledged
    SND_WND = 6  # the peer's window (scaled)
    RCV_WND = 7  # the window the connection could advertise now
    RETRANSMITS = 8  # segments sent again (after a timeout or fast), this connection
    SND_MSS = 9
    STATE = 10  # TcpState
    OPTIONS = 11  # bit 0 window scaling, 1 timestamps, 2 SACK; bits 4..7 the peer's
    #               shift, 8..11 ours (as TCP_INFO's tcpi_options and wscales)
    CONGESTION = 12  # the algorithm (SocketOption.CONGESTION's index)


class EventKind(enum.Enum, shape=4):
    """What an event reports.  Fields used: see each member."""

    NONE = 0
    LISTENING = 1  # tag, port
    UNLISTENED = 2  # tag, port
    CONNECTING = 3  # tag, conn: the SYN is on its way
    ESTABLISHED = 4  # conn: an active open completed
    ACCEPTED = 5  # conn, port = local port, addr, remote_port: a passive open completed
    PEER_FIN = 6  # conn, value = stream length: the peer sent FIN after that many bytes
    ACKED = 7  # conn, value = bytes acknowledged (send credit returned)
    CLOSED = 8  # conn: the connection reached CLOSED by the close handshake (code NONE),
    #             or by the RST of a CLOSE with unread data (code UNREAD_DATA)
    RESET = 9  # conn, code = REFUSED (RST to our SYN) or RESET
    TIMEOUT = 10  # conn: R2 exceeded (MUST-20..23), the connection was aborted
    ERROR = 11  # conn, tag, code: a command or TX data was refused
    RELEASED = 12  # conn: the id is free again
    INFO = 13  # conn, tag, value: the InfoField a GET_INFO asked for
    ICMP_ERROR = 14  # conn, value = ICMP type << 8 | code (| next-hop MTU << 16): a soft
    #                  error about the connection's segments (RFC 9293 SHLD-25); once
    #                  until SND.UNA advances (hdl/tcp/icmp_errors.py)


class ErrorCode(enum.Enum, shape=5):
    NONE = 0
    BAD_COMMAND = 1  # unknown operation
    UNKNOWN_CONN = 2  # the id is not the host's
    BAD_STATE = 3  # e.g. ACCEPT of an active open, SHUTDOWN twice
    NO_FREE_CONN = 4  # every connection id is in use
    PORT_IN_USE = 5  # LISTEN on a listening port, CONNECT to an existing socket pair
    NO_LISTENER_SLOT = 6
    NOT_LISTENING = 7  # UNLISTEN of a port that does not listen
    TX_OVERFLOW = 8  # with RESET: TX bytes beyond the send credit were discarded
    TX_AFTER_SHUTDOWN = 9  # TX bytes after SHUTDOWN/CLOSE were discarded
    TABLE_FULL = 10  # the connection lookup table had no room
    REFUSED = 11  # with RESET: the peer refused the connection
    RESET = 12  # with RESET: the peer reset the connection
    NO_ROUTE = 13  # the next hop did not answer ARP
    BAD_ADDRESS = 14  # CONNECT to a broadcast, multicast, zero, loopback or own address
    #                   (MUST-46, RFC 1122 s3.2.1.3)
    BAD_PORT = 15  # LISTEN on port 0, CONNECT to or from port 0
    UNREAD_DATA = 16  # with CLOSED: CLOSE found received data unread and sent RST
    #                   (RFC 9293 SHLD-3)
    BAD_OPTION = 17  # SET_OPTION of an unknown SocketOption
    UNREACHABLE = 18  # with RESET: an ICMP protocol or port unreachable ended SYN-SENT
    #                   (SHLD-26); value = ICMP type << 8 | code


def command_layout(config: ToeConfig) -> data.StructLayout:
    return data.StructLayout({
        "op": CommandOp,
        "conn": config.conn_bits,
        "tag": 16,
        "port": 16,
        "addr": 32,
        "value": 32,
    })


def event_layout(config: ToeConfig) -> data.StructLayout:
    return data.StructLayout({
        "kind": EventKind,
        "code": ErrorCode,
        "conn": config.conn_bits,
        "tag": 16,
        "port": 16,
        "remote_port": 16,
        "addr": 32,
        "value": 32,
    })


def data_layout(config: ToeConfig) -> data.StructLayout:
    """A beat of connection data: ``count`` bytes (1..W) in lanes 0..count-1.

    ``last`` ends a write on the TX stream (the engine then queues the bytes for
    sending) and a delivery on the RX stream.
    """
    w = config.data_bytes
    return data.StructLayout({
        "conn": config.conn_bits,
        "data": 8 * w,
        "count": range(w + 1),
        "last": 1,
    })
