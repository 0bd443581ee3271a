"""The one configuration object of the engine.

Every parameter of the gateware lives here: the datapath width, the addresses the engine
answers to at reset, buffer sizes and timer defaults.  The same RTL elaborates for any
value of ``data_bytes`` from 1 to 64; 8 bytes per beat (64 bit, 10G class) is the default
and the performance reference.
"""

import hashlib
import ipaddress
from dataclasses import asdict, dataclass, replace

__all__ = ["ToeConfig", "ip", "mac"]


def ip(text: str) -> int:
    """``"10.0.0.2"`` -> ``0x0a000002``."""
    return int(ipaddress.IPv4Address(text))


def mac(text: str) -> int:
    """``"02:00:00:00:00:02"`` -> ``0x020000000002``."""
    return int(text.replace(":", "").replace("-", ""), 16)


@dataclass(frozen=True)
class ToeConfig:
    """Parameters of one engine build.

    data_bytes:
        Bytes per stream beat (1..64).  Width of the MAC RX/TX streams.
    mac_addr, ip_addr, netmask, gateway:
        Reset values of the address registers (writable through the register file).
    mtu:
        Largest IPv4 datagram the engine receives or sends (bytes, without Ethernet header).
    rx_buffer_bytes:
        Size of the RX frame buffer that holds frames while their headers are processed.
    arp_entries:
        Entries of the ARP cache (a power of two).
    arp_timeout_us:
        Lifetime of a resolved ARP cache entry (RFC 1122 s2.3.2.1: entries must time out).
    arp_retry_us, arp_retries:
        Interval between ARP requests for an unresolved address, and how many are sent
        before the lookup fails (RFC 1122 s2.3.2.1 flooding limit: at most one per second
        is recommended; the default is 1 s).
    connections:
        TCBs in the connection table (a power of two).  Connection ids are 0..connections-1.
    listeners:
        Ports that can listen at once (passive opens).
    tx_ring_bytes, rx_ring_bytes:
        Per-connection send and receive rings (powers of two, 64 B .. 1 MiB; the TCP
        engine needs a power-of-two ``data_bytes``).  The receive ring bounds the
        advertised window: at most 65,535 bytes unless window scaling is negotiated, and
        then the whole ring (:attr:`rcv_wscale`).
    window_scaling, timestamps, sack:
        Offer and accept the TCP options of RFC 7323 s2 (window scale), RFC 7323 s3-5
        (timestamps, PAWS, RTT measurement) and RFC 2018 (SACK-permitted, SACK blocks in
        the ACKs while out-of-order text is held).  All on by default; each can be
        turned off for a build (then the option is neither sent nor accepted).
    sack_ranges:
        SACKed ranges the sender's scoreboard holds per connection (RFC 6675;
        :mod:`hdl.tcp.scoreboard`): the holes between them are resent in recovery.
    ecn:
        Explicit Congestion Notification (RFC 3168; RFC 9293 SHLD-8): offered in an
        active open's SYN (ECE and CWR) and accepted from a peer's; once agreed, new
        data goes out ECT(0), a CE mark is echoed with ECE until the peer's CWR, and an
        ECE halves cwnd once per window.  On by default; off, no SYN carries ECE.
    congestion, initial_window:
        The congestion control algorithm (RFC 5681 s3; ``"newreno"``, or any
        ``hdl/tcp/cc_<name>.py``, :mod:`hdl.tcp.congestion`) and the initial window in
        segments (RFC 6928's 10: min(10 * SMSS, max(2 * SMSS, 14,600)) bytes).
    msl_us:
        Maximum segment lifetime; TIME-WAIT lasts 2 * MSL (RFC 9293 MUST-13; the RFC's
        MSL is 2 minutes).
    rto_initial_us, rto_min_us, rto_max_us:
        RFC 6298 s2.1 (1 s), s2.4 (floor, 1 s) and s2.5 (cap, at least 60 s).
    r1_retries, r2_retries, r2_syn_retries:
        RFC 9293 s3.8.3 thresholds counted in retransmissions of the same segment: R1
        (advise; counted), R2 (abort the connection, MUST-20..23).  R2 for a SYN is
        separate: 1+2+4+8+16+32+60 + 60 = 183 s of back-off with the defaults, at least
        the 3 minutes of MUST-23.
    challenge_acks_per_s:
        RFC 5961 s7: the challenge ACKs sent per second over all connections, on
        average (see ``oow_ack_interval_us``).
    ip_ttl, ip_dscp:
        The IPv4 TTL (RFC 9293 MUST-49, RFC 1122 s3.2.1.7: 64) and DSCP (MUST-48, RFC
        2474: 0) of everything the engine sends; a connection can change its own with
        ``SET_OPTION TTL`` and ``DSCP``.  The ECN bits are the connection's (RFC 3168).
    oow_ack_interval_us:
        RFC 5961 s7 per connection (Linux's ``tcp_invalid_ratelimit``): at most one
        challenge ACK, or ACK answering an out-of-window segment without data, per this
        interval on each connection (500 ms; 0: no limit).  Over all connections the
        challenge ACKs of a second are limited to a budget drawn at random each second
        from ``challenge_acks_per_s / 2 .. challenge_acks_per_s * 3 / 2``, as Linux has
        done since CVE-2016-5696, so that the count one connection sees tells nothing
        about the others.
    min_pmtu:
        The smallest path MTU an ICMP fragmentation-needed message can lower a
        connection to (RFC 1191 s3; :mod:`hdl.tcp.icmp_errors`): 552 bytes, Linux's
        ``min_pmtu``, so SND.MSS never drops below 512 (500 with timestamps), however
        small an MTU a message reports (RFC 5927 s7.2).  A build whose ``mtu`` is
        smaller uses ``mtu`` as the floor.
    syn_cookies, syn_backlog, cookie_period_log2:
        SYN flood defence (RFC 4987; :mod:`hdl.tcp.syn_cookie`).  A listener holds at
        most ``syn_backlog`` connections in SYN-RECEIVED (half-open).  ``"auto"`` (the
        default): a SYN that finds the half-open places or the backlog full, or no free
        connection id, is answered with a SYN cookie and no state; ``"always"``: every
        SYN to a listener is; ``"off"``: such SYNs are dropped (``tcp_backlog_drops``).
        A cookie is valid for its period of 2**cookie_period_log2 us (67 s) and the
        next.
    r2_synack_retries:
        R2 for the SYN-ACK of a passive open: the half-open connection is deleted after
        this many retransmissions (5, as Linux's ``tcp_synack_retries``: 1+2+4+8+16+32
        = 63 s), sooner than an active open's SYN (``r2_syn_retries``).
    reassembly_intervals:
        How many disjoint ranges of out-of-order text a connection holds beyond RCV.NXT
        (RFC 9293 SHLD-31; hdl/tcp/reassembly.py).  Each costs 65 bits of TCB.
    ack_delay_us:
        Delayed ACKs (RFC 9293 SHLD-18, RFC 5681 s4.2): text received in order is
        acknowledged at once when more than one MSS is unacknowledged (so at least
        every second full-sized segment, SHLD-19), otherwise within this delay (MUST-40:
        under 0.5 s).  40 ms, Linux's shortest delayed-ACK timeout: short enough that
        a peer's Nagle algorithm or a request/response exchange waits little, long
        enough to ride on the reply of a request.  Out-of-order text, a segment that
        fills a hole, a FIN and window updates are acknowledged at once; 0 turns
        delaying off, and so does the per-connection QUICKACK option.
    fin_wait_2_us:
        How long a connection the host has closed waits in FIN-WAIT-2 for the peer's
        FIN before it is deleted (RFC 9293 has no such timer: a peer that never closes
        would hold the connection id forever; 60 s as Linux's ``tcp_fin_timeout``).  A
        connection that was only shut down (half-closed) waits as long as it takes.
    tick_bits:
        Width of the ``tick`` input, the microseconds that elapse in a cycle.  1 (the
        default): a strobe, one pulse per microsecond from a clock divider.  Wider: a
        platform whose time source is coarser than the clock, or a simulation slower
        than real time (the virtual NIC), passes several microseconds at once; every
        timer compares deadlines with the microsecond count, so none is skipped.
    """

    data_bytes: int = 8
    mac_addr: int = mac("02:00:00:00:00:02")
    ip_addr: int = ip("10.0.0.2")
    netmask: int = ip("255.255.255.0")
    gateway: int = ip("10.0.0.1")
    mtu: int = 1500
    rx_buffer_bytes: int = 8192
    arp_entries: int = 8
    arp_timeout_us: int = 60_000_000
    arp_retry_us: int = 1_000_000
    arp_retries: int = 3
    connections: int = 16
    listeners: int = 8
    tx_ring_bytes: int = 4096
    rx_ring_bytes: int = 4096
    msl_us: int = 120_000_000
    rto_initial_us: int = 1_000_000
    rto_min_us: int = 1_000_000
    rto_max_us: int = 60_000_000
    r1_retries: int = 3
    r2_retries: int = 8
    r2_syn_retries: int = 7
    challenge_acks_per_s: int = 100
    oow_ack_interval_us: int = 500_000
    ip_ttl: int = 64
    ip_dscp: int = 0
    min_pmtu: int = 552
    syn_cookies: str = "auto"
    syn_backlog: int = 8
    cookie_period_log2: int = 26
    r2_synack_retries: int = 5
    fin_wait_2_us: int = 60_000_000
    ack_delay_us: int = 40_000
    reassembly_intervals: int = 4
    sack_ranges: int = 4
    tick_bits: int = 1
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    congestion: str = "newreno"
    ecn: bool = True
    initial_window: int = 10

    def __post_init__(self):
        if not 1 <= self.tick_bits <= 16:
            raise ValueError(f"tick_bits must be 1..16, not {self.tick_bits}")
        if not 1 <= self.data_bytes <= 64:
            raise ValueError(f"data_bytes must be 1..64, not {self.data_bytes}")
        if not 68 <= self.mtu <= 9000:
            raise ValueError(f"mtu must be 68..9000, not {self.mtu}")
        if self.arp_entries & (self.arp_entries - 1):
            raise ValueError("arp_entries must be a power of two")
        for name in ("connections", "tx_ring_bytes", "rx_ring_bytes"):
            value = getattr(self, name)
            if value < 2 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 2, not {value}")
        for name in ("tx_ring_bytes", "rx_ring_bytes"):
            if not 64 <= getattr(self, name) <= 1 << 20:
                raise ValueError(f"{name} must be 64 bytes .. 1 MiB")
        if not 0 <= self.ack_delay_us < 500_000:
            raise ValueError("ack_delay_us must be 0 .. 499,999 (RFC 9293 MUST-40)")
        if not 1 <= self.reassembly_intervals <= 16:
            raise ValueError("reassembly_intervals must be 1..16")
        if not 1 <= self.sack_ranges <= 8:
            raise ValueError("sack_ranges must be 1..8")
        if not 1 <= self.initial_window <= 64:
            raise ValueError("initial_window must be 1..64 segments")
        if not 1 <= self.ip_ttl <= 255:
            raise ValueError("ip_ttl must be 1..255")
        if not 0 <= self.ip_dscp <= 63:
            raise ValueError("ip_dscp must be 0..63")
        if not 68 <= self.min_pmtu <= 65535:
            raise ValueError(f"min_pmtu must be 68 .. 65535, not {self.min_pmtu}")
        if not 0 <= self.oow_ack_interval_us < 1 << 31:
            raise ValueError("oow_ack_interval_us must be 0 .. 2**31 - 1")
        if self.syn_cookies not in ("off", "auto", "always"):
            raise ValueError(f"syn_cookies must be off, auto or always, not {self.syn_cookies!r}")
        if not 1 <= self.syn_backlog <= 0xFFFF:
            raise ValueError("syn_backlog must be 1..65535")
        if not 10 <= self.cookie_period_log2 <= 26:
            raise ValueError("cookie_period_log2 must be 10..26 (1 ms .. 67 s)")
        if self.rx_buffer_bytes < 2 * self.max_frame_bytes:
            raise ValueError("rx_buffer_bytes must hold at least two largest frames")

    @property
    def data_bits(self) -> int:
        return self.data_bytes * 8

    @property
    def max_frame_bytes(self) -> int:
        """Largest Ethernet frame without FCS: 14-byte header + MTU."""
        return 14 + self.mtu

    @property
    def conn_bits(self) -> int:
        """Width of a connection id."""
        return max(1, (self.connections - 1).bit_length())

    @property
    def mss(self) -> int:
        """The MSS we announce and the largest segment we send: MTU - 40 (MUST-14..16)."""
        return self.mtu - 40

    @property
    def rcv_wscale(self) -> int:
        """The window scale shift the engine offers (RFC 7323 s2.2): the least that lets
        a 16-bit window field cover the whole RX ring; 0 for rings up to 64 KiB (the
        option is still sent, so the peer may scale its own window)."""
        return max(0, (self.rx_ring_bytes - 1).bit_length() - 16)

    def replace(self, **changes) -> "ToeConfig":
        return replace(self, **changes)

    def key(self) -> str:
        """A short stable digest of every parameter: names a cached build."""
        text = repr(sorted(asdict(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]
