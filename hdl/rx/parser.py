"""RX classification: Ethernet, ARP, IPv4, ICMP and TCP header checks on captured bytes."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..checksum import fold
from ..proto import arp, ethernet, icmp, ipv4, tcp
from ..stream import be
from .meta import DropReason, Verdict, rx_meta_layout
from .tcp_options import TcpOptionParser

__all__ = ["RxParser", "CAPTURE_BYTES"]

L4_AT = ethernet.HEADER_BYTES + ipv4.MIN_HEADER_BYTES  # 34: L4 header without IP options
CAPTURE_BYTES = ethernet.HEADER_BYTES + ipv4.MAX_HEADER_BYTES + tcp.MAX_HEADER_BYTES  # 134


class RxParser(wiring.Component):
    """Decides what each received frame is, and extracts every header field.

    Works on the snapshot of :class:`FrameCapture` and the sums of :class:`RxChecksum`.
    IPv4 options are skipped by shifting the captured L4 bytes 4 bytes a cycle (so IP
    options cost ``IHL - 5`` cycles, and nothing when absent); TCP options go through
    :class:`TcpOptionParser`.  Checks, in order, each with its drop reason:

    - MAC: the frame was marked bad on its last beat (FCS, IEEE 802.3 s3.2.9; RX_ER,
      runt, too long, RX overflow), before anything read from its bytes.
    - Ethernet: runt, oversize, destination MAC ours or broadcast, EtherType IPv4 or
      ARP, then frame buffer full (a frame not for us is never counted as lost).
    - ARP (RFC 826): length, hardware type Ethernet, protocol IPv4, sizes 6/4,
      operation request or reply.
    - IPv4 (RFC 791, RFC 1122 s3.2.1): version 4, IHL >= 5, header present, header
      checksum, total length between the header length and the frame length (Ethernet
      padding trimmed), no fragments, destination our address or a broadcast address
      (a link-layer broadcast must carry an IP broadcast, RFC 1122 s3.3.6), source not
      broadcast, multicast, zero or loopback (s3.2.1.3), protocol ICMP or TCP.
    - ICMP (RFC 792): header present, checksum, to our unicast address (RFC 1122
      s3.2.2.6 lets a host ignore broadcast echo requests; this one does); an echo
      request, or an error TCP acts on (destination unreachable, time exceeded,
      parameter problem; RFC 9293 MUST-54) that quotes at least 8 bytes of a TCP
      segment this engine sent: IPv4 with a 20-byte header (the engine sends no IP
      options), protocol TCP, our source address, no later fragment.  Anything else,
      source quench among it (MUST-55), is ignored and counted.
    - TCP (RFC 9293 s3.1): unicast destination (MUST-57), fixed header present, data
      offset in range, checksum over the pseudo-header (MUST-2, MUST-3), legal options
      (MUST-7).

    Ports
    -----
    frame_bytes, frame_len, frame_done, mac_error : In
        From :class:`FrameCapture` (``mac_error``: its ``frame_mac_error`` snapshot).
    ip_sum, l4_sum, sum_done : In
        From :class:`RxChecksum`.
    buf_start, buf_end, buf_kept : In
        From :class:`FrameBuffer`.
    mac_addr, ip_addr, netmask : In
        Our addresses.
    ready_for_frame : Out
        Low while a frame is being parsed: the last beat of the next frame must wait.
    meta : Out(stream)
        One :func:`rx_meta_layout` per frame.
    """

    def __init__(self, max_frame_bytes: int, buffer_ptr_bits: int):
        self._max_frame = max_frame_bytes
        self.meta_layout = rx_meta_layout(buffer_ptr_bits)
        super().__init__({
            "frame_bytes": In(data.ArrayLayout(8, CAPTURE_BYTES)),
            "frame_len": In(16),
            "frame_done": In(1),
            "mac_error": In(1),
            "ip_sum": In(16),
            "l4_sum": In(32),
            "sum_done": In(1),
            "buf_start": In(buffer_ptr_bits),
            "buf_end": In(buffer_ptr_bits),
            "buf_kept": In(1),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "netmask": In(32),
            "ready_for_frame": Out(1),
            "meta": Out(stream.Signature(self.meta_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.options = options = TcpOptionParser()

        b = self.frame_bytes
        meta = self.meta.payload

        def field(offset, size):
            return be([b[offset + i] for i in range(size)])

        # Ethernet and IPv4 fixed header, straight from the snapshot.
        eth_dst = field(ethernet.DST, 6)
        ethertype = field(ethernet.ETHERTYPE, 2)
        ip = ethernet.HEADER_BYTES
        version = b[ip + ipv4.VERSION_IHL][4:]
        ihl = b[ip + ipv4.VERSION_IHL][:4]
        ip_len = field(ip + ipv4.TOTAL_LENGTH, 2)
        frag = field(ip + ipv4.FLAGS_FRAGMENT, 2)
        proto = b[ip + ipv4.PROTOCOL]
        ip_src = field(ip + ipv4.SRC, 4)
        ip_dst = field(ip + ipv4.DST, 4)
        a = ethernet.HEADER_BYTES

        # The L4 header, realigned past any IPv4 options.
        l4 = Signal(data.ArrayLayout(8, CAPTURE_BYTES - L4_AT))
        shifts = Signal(4)
        ip_sum = Signal(16)
        l4_sum = Signal(32)

        def l4_field(offset, size):
            return be([l4[offset + i] for i in range(size)])

        l4_len = Signal(16)  # registered when the frame is taken
        tcp_doff = l4[tcp.DATA_OFFSET][4:]
        tcp_flags = l4[tcp.FLAGS]

        # The checks, first failing one wins.
        broadcast_ip = Signal()
        subnet_broadcast = Signal(32)
        m.d.comb += [
            subnet_broadcast.eq(self.ip_addr | ~self.netmask),
            broadcast_ip.eq((ip_dst == ipv4.LIMITED_BROADCAST) | (ip_dst == subnet_broadcast)),
        ]
        eth_broadcast = eth_dst == ethernet.BROADCAST
        bad_src = ((ip_src == ipv4.LIMITED_BROADCAST) | (ip_src == subnet_broadcast)
                   | (ip_src[28:] == 0xE) | (ip_src == 0) | (ip_src[24:] == 127))
        pseudo = Signal(20)  # pseudo-header sum without the length, registered at start
        tcp_wide = Signal(33)
        tcp_sum = Signal(16)  # folded in state FOLD, from registered inputs
        icmp_sum = Signal(16)
        flen = self.frame_len

        # Every check is computed from the snapshot and registered in state FLAGS; the
        # priority of the checks is resolved from the registered flags in state CHECK.
        flags = {}

        def flag(name, expr):
            flags[name] = (Signal(name=f"flag_{name}"), expr)
            return flags[name][0]

        oper = field(a + arp.OPER, 2)
        mac_error = flag("mac_error", self.mac_error)
        runt = flag("runt", flen < ethernet.HEADER_BYTES)
        oversize = flag("oversize", flen > self._max_frame)
        mac_dst = flag("mac_dst", (eth_dst != self.mac_addr) & ~eth_broadcast)
        is_arp = flag("is_arp", ethertype == ethernet.ETHERTYPE_ARP)
        is_ipv4 = flag("is_ipv4", ethertype == ethernet.ETHERTYPE_IPV4)
        no_buffer = flag("no_buffer", ~self.buf_kept)
        arp_bad = flag("arp_bad", (flen < a + arp.PACKET_BYTES)
                       | (field(a + arp.HTYPE, 2) != arp.HTYPE_ETHERNET)
                       | (field(a + arp.PTYPE, 2) != ethernet.ETHERTYPE_IPV4)
                       | (b[a + arp.HLEN] != 6) | (b[a + arp.PLEN] != 4)
                       | ((oper != arp.OPER_REQUEST) & (oper != arp.OPER_REPLY)))
        ip_short = flag("ip_short", flen < L4_AT)
        ip_version = flag("ip_version", version != 4)
        ip_ihl = flag("ip_ihl", ihl < 5)
        ip_header_cut = flag("ip_header_cut", flen < ip + (ihl << 2))
        ip_checksum = flag("ip_checksum", ip_sum != 0xFFFF)
        ip_length = flag("ip_length", (ip_len < (ihl << 2)) | (ip_len > flen - ip))
        ip_fragment = flag("ip_fragment", frag[13] | (frag[:13] != 0))
        ip_dst_bad = flag("ip_dst_bad", ((ip_dst != self.ip_addr) & ~broadcast_ip)
                          | (eth_broadcast & ~broadcast_ip))
        ip_src_bad = flag("ip_src_bad", bad_src)
        is_icmp = flag("is_icmp", proto == ipv4.PROTO_ICMP)
        is_tcp = flag("is_tcp", proto == ipv4.PROTO_TCP)
        to_broadcast = flag("to_broadcast", broadcast_ip)
        icmp_short = flag("icmp_short", l4_len < icmp.HEADER_BYTES)
        icmp_checksum = flag("icmp_checksum", icmp_sum != 0xFFFF)
        icmp_type = l4[icmp.TYPE]
        icmp_echo = flag("icmp_echo", (icmp_type == icmp.TYPE_ECHO_REQUEST)
                         & (l4[icmp.CODE] == 0))
        icmp_error = flag("icmp_error", Cat(icmp_type == k for k in icmp.ERROR_TYPES).any())
        icmp_error_short = flag("icmp_error_short", l4_len < icmp.ERROR_MIN_BYTES)
        q = icmp.QUOTE_AT
        quote_frag = l4_field(q + ipv4.FLAGS_FRAGMENT, 2)
        quote_bad = flag("quote_bad", (l4[q + ipv4.VERSION_IHL] != 0x45)
                         | (l4[q + ipv4.PROTOCOL] != ipv4.PROTO_TCP)
                         | (l4_field(q + ipv4.SRC, 4) != self.ip_addr)
                         | (quote_frag[:13] != 0))
        tcp_short = flag("tcp_short", l4_len < tcp.MIN_HEADER_BYTES)
        tcp_offset = flag("tcp_offset", (tcp_doff < 5) | ((tcp_doff << 2) > l4_len))
        tcp_checksum = flag("tcp_checksum", tcp_sum != 0xFFFF)

        reason = Signal(DropReason)
        verdict = Signal(Verdict)
        with m.If(mac_error):
            m.d.comb += reason.eq(DropReason.MAC_ERROR)
        with m.Elif(runt):
            m.d.comb += reason.eq(DropReason.RUNT)
        with m.Elif(oversize):
            m.d.comb += reason.eq(DropReason.OVERSIZE)
        with m.Elif(mac_dst):
            m.d.comb += reason.eq(DropReason.MAC_DST)
        with m.Elif(~is_arp & ~is_ipv4):
            m.d.comb += reason.eq(DropReason.ETHERTYPE)
        with m.Elif(no_buffer):
            m.d.comb += reason.eq(DropReason.BUFFER_FULL)
        with m.Elif(is_arp):
            with m.If(arp_bad):
                m.d.comb += reason.eq(DropReason.ARP_MALFORMED)
            with m.Else():
                m.d.comb += verdict.eq(Verdict.ARP)
        with m.Elif(ip_short):
            m.d.comb += reason.eq(DropReason.IP_TRUNCATED)
        with m.Elif(ip_version):
            m.d.comb += reason.eq(DropReason.IP_VERSION)
        with m.Elif(ip_ihl):
            m.d.comb += reason.eq(DropReason.IP_IHL)
        with m.Elif(ip_header_cut):
            m.d.comb += reason.eq(DropReason.IP_TRUNCATED)
        with m.Elif(ip_checksum):
            m.d.comb += reason.eq(DropReason.IP_CHECKSUM)
        with m.Elif(ip_length):
            m.d.comb += reason.eq(DropReason.IP_LENGTH)
        with m.Elif(ip_fragment):
            m.d.comb += reason.eq(DropReason.IP_FRAGMENT)
        with m.Elif(ip_dst_bad):
            m.d.comb += reason.eq(DropReason.IP_DST)
        with m.Elif(ip_src_bad):
            m.d.comb += reason.eq(DropReason.IP_SRC)
        with m.Elif(is_icmp):
            with m.If(icmp_short):
                m.d.comb += reason.eq(DropReason.ICMP_MALFORMED)
            with m.Elif(icmp_checksum):
                m.d.comb += reason.eq(DropReason.ICMP_CHECKSUM)
            with m.Elif(to_broadcast):
                m.d.comb += reason.eq(DropReason.ICMP_IGNORED)
            with m.Elif(icmp_echo):
                m.d.comb += verdict.eq(Verdict.ICMP_ECHO)
            with m.Elif(~icmp_error):
                m.d.comb += reason.eq(DropReason.ICMP_IGNORED)
            with m.Elif(icmp_error_short):
                m.d.comb += reason.eq(DropReason.ICMP_MALFORMED)
            with m.Elif(quote_bad):
                m.d.comb += reason.eq(DropReason.ICMP_QUOTE)
            with m.Else():
                m.d.comb += verdict.eq(Verdict.ICMP_ERROR)
        with m.Elif(is_tcp):
            with m.If(to_broadcast):
                m.d.comb += reason.eq(DropReason.TCP_BROADCAST)
            with m.Elif(tcp_short):
                m.d.comb += reason.eq(DropReason.TCP_MALFORMED)
            with m.Elif(tcp_offset):
                m.d.comb += reason.eq(DropReason.TCP_OFFSET)
            with m.Elif(tcp_checksum):
                m.d.comb += reason.eq(DropReason.TCP_CHECKSUM)
            with m.Else():
                m.d.comb += verdict.eq(Verdict.TCP)
        with m.Else():
            m.d.comb += reason.eq(DropReason.IP_PROTO)

        m.d.comb += [
            options.length.eq((tcp_doff << 2) - tcp.MIN_HEADER_BYTES),
        ]
        for i in range(tcp.MAX_OPTION_BYTES):
            m.d.comb += options.options[i].eq(l4[tcp.MIN_HEADER_BYTES + i])

        options_started = Signal()
        sums_latched = Signal()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.ready_for_frame.eq(~self.frame_done)
                with m.If(self.frame_done):
                    m.d.sync += [
                        l4.eq(Signal.cast(self.frame_bytes)[8 * L4_AT :]),
                        l4_len.eq(ip_len - (ihl << 2)),
                        pseudo.eq(ip_src[16:] + ip_src[:16] + ip_dst[16:] + ip_dst[:16]
                                  + ipv4.PROTO_TCP),
                        sums_latched.eq(0),
                    ]
                    with m.If(ihl > 5):
                        m.d.sync += shifts.eq(ihl - 5)
                    with m.Else():
                        m.d.sync += shifts.eq(0)
                    m.next = "ALIGN"
            with m.State("ALIGN"):
                # The sums arrive in the first cycle here; IP options shift meanwhile.
                with m.If(self.sum_done):
                    m.d.sync += [
                        ip_sum.eq(self.ip_sum), l4_sum.eq(self.l4_sum), sums_latched.eq(1),
                    ]
                with m.If(shifts != 0):
                    m.d.sync += [
                        l4.eq(Signal.cast(l4)[32:]),
                        shifts.eq(shifts - 1),
                    ]
                with m.Elif(sums_latched | self.sum_done):
                    m.next = "SUMS"
            with m.State("SUMS"):
                m.d.sync += [tcp_wide.eq(l4_sum + pseudo + l4_len), icmp_sum.eq(fold(l4_sum))]
                m.next = "FOLD"
            with m.State("FOLD"):
                m.d.sync += tcp_sum.eq(fold(tcp_wide))
                m.next = "FLAGS"
            with m.State("FLAGS"):
                for signal, expr in flags.values():
                    m.d.sync += signal.eq(expr)
                # Options are parsed for every TCP header that has them; the result is
                # used only if the segment passes its checks.
                started = (proto == ipv4.PROTO_TCP) & (tcp_doff > 5)
                m.d.comb += options.start.eq(started)
                m.d.sync += options_started.eq(started)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [
                    meta.verdict.eq(verdict),
                    meta.reason.eq(reason),
                    meta.buf_start.eq(self.buf_start),
                    meta.buf_end.eq(self.buf_end),
                    meta.frame_len.eq(flen),
                    meta.eth_src.eq(field(ethernet.SRC, 6)),
                    meta.ip_dst.eq(ip_dst),
                    meta.ip_ihl.eq(ihl),
                    meta.ip_len.eq(ip_len),
                    meta.ip_ttl.eq(b[ip + ipv4.TTL]),
                    meta.ip_ecn.eq(b[ip + ipv4.TOS][:2]),
                    meta.ip_csum.eq(field(ip + ipv4.CHECKSUM, 2)),
                    meta.icmp_csum.eq(l4_field(icmp.CHECKSUM, 2)),
                    meta.arp_oper.eq(field(a + arp.OPER, 2)),
                    meta.arp_sha.eq(field(a + arp.SHA, 6)),
                    meta.arp_spa.eq(field(a + arp.SPA, 4)),
                    meta.arp_tpa.eq(field(a + arp.TPA, 4)),
                    meta.tcp_ack.eq(l4_field(tcp.ACK, 4)),
                    meta.tcp_window.eq(l4_field(tcp.WINDOW, 2)),
                    meta.tcp_urgent.eq(l4_field(tcp.URGENT, 2)),
                    meta.tcp_options.eq(0),
                    meta.icmp_type.eq(icmp_type),
                    meta.icmp_code.eq(l4[icmp.CODE]),
                    meta.icmp_mtu.eq(l4_field(icmp.NEXT_HOP_MTU, 2)),
                ]
                # An ICMP error carries the quoted segment, as if its peer had sent it
                # (hdl/rx/meta.py); a segment its own fields.
                quoted = verdict == Verdict.ICMP_ERROR
                qt = icmp.QUOTED_TCP_AT
                for name, own, quote in (
                    ("ip_src", ip_src, l4_field(q + ipv4.DST, 4)),
                    ("tcp_sport", l4_field(tcp.SPORT, 2), l4_field(qt + tcp.DPORT, 2)),
                    ("tcp_dport", l4_field(tcp.DPORT, 2), l4_field(qt + tcp.SPORT, 2)),
                    ("tcp_seq", l4_field(tcp.SEQ, 4), l4_field(qt + tcp.SEQ, 4)),
                    ("tcp_doff", tcp_doff, 5),
                    ("tcp_flags", tcp_flags, 0),
                    ("tcp_payload_len", l4_len - (tcp_doff << 2), 0),
                ):
                    m.d.sync += getattr(meta, name).eq(Mux(quoted, quote, own))
                with m.If(options_started):
                    m.next = "OPTIONS"
                with m.Else():
                    m.next = "OUTPUT"
            with m.State("OPTIONS"):
                with m.If(options.idle):
                    with m.If(meta.verdict == Verdict.TCP):
                        m.d.sync += meta.tcp_options.eq(options.result)
                    with m.If((meta.verdict == Verdict.TCP) & options.error):
                        m.d.sync += [
                            meta.verdict.eq(Verdict.DROP),
                            meta.reason.eq(DropReason.TCP_OPTION),
                        ]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += self.meta.valid.eq(1)
                with m.If(self.meta.ready):
                    # The snapshot is no longer needed: the next frame may end now.
                    m.d.comb += self.ready_for_frame.eq(1)
                    m.next = "IDLE"
        return m
