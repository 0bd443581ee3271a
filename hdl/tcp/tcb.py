"""The transmission control block and the messages between the TCP engine's blocks.

RFC 9293 s3.3.1 lists the variables a TCB holds; :func:`tcb_layout` keeps them (SND.UNA,
SND.NXT, SND.WND, SND.WL1, SND.WL2, ISS, RCV.NXT, RCV.WND from the RX ring, IRS) together
with the socket pair, the ring positions and the retransmission state.  One TCB per
connection id lives in block RAM.
"""

from amaranth.lib import data

from ..config import ToeConfig
from .congestion import cc_algo_bits, cc_state_bits
from .states import TcpState  # re-exported: the states and their transitions live there

__all__ = ["TcpState", "tcb_layout", "segment_layout", "copy_layout", "delivery_layout",
           "written_layout", "delivered_layout", "tx_limit_layout"]


def tcb_layout(config: ToeConfig) -> data.StructLayout:
    return data.StructLayout({
        "state": TcpState,
        "owned": 1,  # the host holds this id (until CLOSE/ABORT and CLOSED)
        "host_closed": 1,  # CLOSE or ABORT was issued: release on reaching CLOSED
        "passive": 1,  # opened from LISTEN (MUST-10/11: back to LISTEN on RST)
        "listener": max(1, (config.listeners - 1).bit_length()),
        "accepted": 1,  # the host sent ACCEPT (the backlog place is free)
        "remote_mac": 48,
        "remote_ip": 32,
        "remote_port": 16,
        "local_port": 16,
        # Send sequence space (RFC 9293 s3.3.1).
        "iss": 32,
        "snd_una": 32,
        "snd_nxt": 32,
        "snd_max": 32,  # highest sequence number sent + 1 (snd_nxt goes back on RTO)
        "snd_end": 32,  # sequence number after the last byte the host wrote
        "snd_wnd": 32,  # scaled: SEG.WND << snd_shift (RFC 7323 s2.3)
        "snd_wl1": 32,
        "snd_wl2": 32,
        "snd_mss": 16,
        "fin_queued": 1,  # SHUTDOWN or CLOSE: FIN follows snd_end
        # Options (RFC 7323, RFC 2018): offered in our SYN, then what both ends agreed.
        "ws_ok": 1,  # window scaling
        "snd_shift": 4,  # the peer's shift: its window fields are scaled by it
        "rcv_shift": 4,  # ours: the window we advertise is scaled down by it
        "ts_ok": 1,  # timestamps
        "ts_recent": 32,  # TS.Recent (RFC 7323 s4.3)
        "ts_recent_at": 16,  # when it was set: the timestamp clock's bits 16..31
        "ack_sent": 32,  # Last.ACK.sent: the ACK field of the last segment sent
        "sack_ok": 1,  # SACK blocks may be sent
        "ecn_ok": 1,  # ECN (RFC 3168): offered, then agreed
        "ece_pending": 1,  # a CE mark arrived: every ACK carries ECE until the peer's CWR
        "cwr_pending": 1,  # cwnd was reduced for an ECE: the next new data carries CWR
        # Receive sequence space.
        "irs": 32,
        "rcv_nxt": 32,
        "rcv_read": 32,  # bytes before this have left the RX ring for the host
        "rcv_dlv": 32,  # bytes before this are handed to the delivery engine
        "rcv_adv": 32,  # right edge of the window last advertised (never moves left)
        "rcv_credit": 32,  # bytes the host can still take
        "fin_received": 1,
        # Delayed ACKs (hdl/config.py ack_delay_us): an ACK is owed by ``ack_due``.
        "ack_pending": 1,
        "ack_due": 32,
        "quickack": 1,  # SocketOption.QUICKACK: no delayed ACKs
        "nodelay": 1,  # SocketOption.NODELAY: no Nagle algorithm
        "max_wnd": 32,  # the largest SND.WND the peer offered (sender SWS avoidance)
        # Keep-alives (hdl/tcp/keepalive.py), in timestamp-clock ticks.
        "ka_idle": 32,  # 0: off
        "ka_intvl": 32,
        "ka_count": 4,
        "ka_probes": 4,  # probes sent and not answered
        "ka_due": 32,
        # Reassembly (hdl/tcp/reassembly.py): held ranges beyond RCV.NXT, and a FIN
        # beyond a hole.
        "ooo": data.ArrayLayout(
            data.StructLayout({"valid": 1, "start": 32, "end": 32}),
            config.reassembly_intervals),
        # Recency of each range (RFC 2018 s4): 0 holds the latest segment, then the
        # ranges in the order their last segment came (a permutation of 0..n-1).
        "sack_rank": data.ArrayLayout(max(1, (config.reassembly_intervals - 1).bit_length()),
                                      config.reassembly_intervals),
        "fin_held": 1,
        "fin_at": 32,
        # Congestion control (hdl/tcp/congestion.py, hdl/tcp/recovery.py).
        "cwnd": 32,
        "ssthresh": 32,
        "cc_state": cc_state_bits(config),  # the algorithm's own (hdl/tcp/cc_*.py)
        "cc_algo": cc_algo_bits(config),  # which of the build's algorithms
        "dupacks": 2,  # duplicate ACKs in a row (3: as many or more)
        "in_recovery": 1,  # fast recovery until an ACK covers ``recover``
        "recover": 32,  # RFC 6582: SND.MAX when recovery (or the last timeout) began
        "rexmit": 1,  # the output routine sends the segment at SND.UNA again
        "retransmits": 16,  # segments sent again, after a timeout or fast (GET_INFO)
        # The SACK scoreboard (hdl/tcp/scoreboard.py): ranges the peer holds, and
        # RFC 6675's HighRxt; ``rexmit_dup``: the resend is for a duplicate ACK.
        "sb": data.ArrayLayout(data.StructLayout({"valid": 1, "start": 32, "end": 32}),
                               config.sack_ranges),
        "high_rxt": 32,
        "rexmit_dup": 1,
        # A lost retransmission (hdl/tcp/scoreboard.py): data SACKed at or beyond
        # ``rxt_fence`` was sent after the last hole went again; ``rexmit_lost``: the
        # segment at SND.UNA goes once more (set on that news, cleared when it goes
        # and when a recovery starts).
        "rxt_fence": 32,
        "rexmit_lost": 1,
        # RFC 6675 s4 NextSeg rule 4: this recovery's rescue retransmission went.
        "rescued": 1,
        "sent_at": 32,  # when new data last went (RFC 5681 s4.1 restart after idle)
        # RFC 5961 s7: when the last challenge or out-of-window ACK went (now_us >> 8),
        # valid with ``oow_sent``.
        "oow_at": 24,
        "oow_sent": 1,
        # An ICMP_ERROR event went to the host since SND.UNA last advanced
        # (hdl/tcp/icmp_errors.py).
        "icmp_reported": 1,
        # IPv4 TTL and DSCP of the connection's segments (MUST-48, MUST-49).
        "ttl": 8,
        "dscp": 6,
        # Retransmission (RFC 6298) and the connection timer.
        "rto": 32,
        "srtt": 35,
        "rttvar": 34,
        "rtt_valid": 1,  # SRTT holds a measurement
        "rtt_active": 1,  # timing the segment that ends at rtt_seq (Karn: not retransmitted)
        "rtt_seq": 32,
        "rtt_time": 32,
        "backoff": 5,  # expiries of the timer for the same segment (R1/R2 count)
        "timer_on": 1,  # retransmission timer, or the TIME-WAIT timer
        "deadline": 32,
        "output_queued": 1,  # the id waits in the output queue
        "tx_gen": 1,  # changes with each connection of this id (see tx_limit_layout)
        "dlv_out": 4,  # deliveries handed out and not yet reported done
    })


def segment_layout(config: ToeConfig) -> data.StructLayout:
    """A segment for :class:`hdl.tcp.transmitter.TcpTransmitter` to build and send.

    The payload is ``payload_len`` bytes of the connection's TX ring starting at ring
    offset ``payload_pos`` (a sequence number; the ring offset is its low bits).

    Options, in 4-byte words in this order, each present or left out (RFC 9293 s3.2,
    RFC 7323, RFC 2018; :func:`hdl.proto.tcp.option_bytes` is the reference):

    - ``syn_options`` (SYN and SYN-ACK): MSS ``mss`` (MUST-14, SHLD-5); then, if on,
      timestamps, window scale ``wscale`` (``wscale_on``), SACK-permitted
      (``sack_permitted``);
    - otherwise: timestamps if ``ts_on``, then ``sack_count`` SACK blocks (at most 3
      with timestamps, 4 without: what fits in 40 bytes).
    """
    block = data.StructLayout({"left": 32, "right": 32})
    return data.StructLayout({
        "conn": config.conn_bits,
        "eth_dst": 48,
        "ip_dst": 32,
        "sport": 16,
        "dport": 16,
        "seq": 32,
        "ack": 32,
        "flags": 8,
        "window": 16,
        "syn_options": 1,
        "mss": 16,
        "wscale_on": 1,
        "wscale": 4,
        "sack_permitted": 1,
        "ts_on": 1,
        "ts_val": 32,
        "ts_ecr": 32,
        "sack_count": 3,
        "sack": data.ArrayLayout(block, 4),
        "payload_pos": 32,
        "payload_len": 16,
        "ecn": 2,  # the IPv4 ECN field (RFC 3168 s5): ECT(0) on new data once agreed
        "ttl": 8,
        "dscp": 6,
    })


def copy_layout(config: ToeConfig, buffer_ptr_bits: int) -> data.StructLayout:
    """Received payload to copy from the RX frame buffer into a connection's RX ring."""
    return data.StructLayout({
        "conn": config.conn_bits,
        "buf_start": buffer_ptr_bits,  # first word of the frame in the frame buffer
        "offset": 16,  # byte offset in the frame of the first byte to copy
        "length": 16,
        "ring_pos": 32,  # sequence number of that byte (ring offset: its low bits)
    })


def delivery_layout(config: ToeConfig) -> data.StructLayout:
    """Bytes of a connection's RX ring to send to the host on the RX stream."""
    return data.StructLayout({
        "conn": config.conn_bits,
        "pos": 32,  # sequence number of the first byte
        "length": 32,
    })


def delivered_layout(config: ToeConfig) -> data.StructLayout:
    """A delivery finished: the ring is free up to ``end``."""
    return data.StructLayout({"conn": config.conn_bits, "end": 32})


def written_layout(config: ToeConfig) -> data.StructLayout:
    """The host wrote TX bytes: the connection's data now ends at ``end``.

    ``overflow``: bytes beyond the credit were discarded; ``shut``: bytes after
    SHUTDOWN were discarded; ``unknown``: the id is not open; ``fin``: the host ended
    its stream here (an empty last beat): send FIN after ``end``.
    """
    return data.StructLayout({
        "conn": config.conn_bits,
        "end": 32,
        "overflow": 1,
        "shut": 1,
        "unknown": 1,
        "fin": 1,
    })


def tx_limit_layout() -> data.StructLayout:
    """What the TX writer needs of a TCB, kept by the engine in a memory of its own.

    ``limit``: the writer stores bytes up to (not including) this sequence number
    (SND.UNA + ring size).  ``gen`` changes when the id gets a new connection; the
    writer then starts at ``limit - ring size``.
    """
    return data.StructLayout({"limit": 32, "gen": 1, "open": 1, "shut": 1})
