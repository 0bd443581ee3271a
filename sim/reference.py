"""A plain-Python model of the RX checks and the replies the engine must send.

It mirrors the order of checks documented in :class:`hdl.rx.parser.RxParser` from the
RFC texts, independently of the gateware, so a test can tell for any frame (well-formed,
malformed or fuzzed) which drop counter must move or which reply must leave.
"""

import struct
from dataclasses import dataclass

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig
from toe.hdl.proto import icmp, tcp
from toe.hdl.rx.meta import DropReason, Verdict

__all__ = ["Classification", "classify", "parse_tcp_options"]


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: DropReason = DropReason.NONE

    @property
    def counter(self) -> str:
        """The counter this frame must increment (see hdl/csr.py COUNTERS)."""
        if self.verdict == Verdict.DROP:
            return f"drop_{self.reason.name.lower()}"
        return {Verdict.ARP: "rx_arp", Verdict.ICMP_ECHO: "rx_icmp_echo",
                Verdict.TCP: "rx_tcp", Verdict.ICMP_ERROR: "rx_icmp_errors"}[self.verdict]


def _drop(reason: DropReason) -> Classification:
    return Classification(Verdict.DROP, reason)


def parse_tcp_options(options: bytes) -> dict | None:
    """RFC 9293 s3.2 option walk; None for an illegal length (MUST-7).

    The project's one Python parser of TCP option bytes (the option kinds are those of
    :mod:`hdl.proto.tcp`); ``tests/test_tcp_options_unit.py`` keeps its own on purpose."""
    out = {"mss": None, "wscale": None, "sack_permitted": False, "ts": None, "sack": []}
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == tcp.OPT_EOL:
            break
        if kind == tcp.OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(options):
            return None
        size = options[i + 1]
        if size < 2 or i + size > len(options):
            return None
        body = options[i + 2 : i + size]
        if kind == tcp.OPT_MSS and size == 4:
            out["mss"] = struct.unpack("!H", body)[0]
        elif kind == tcp.OPT_WSCALE and size == 3:
            out["wscale"] = min(body[0], tcp.MAX_WSCALE)
        elif kind == tcp.OPT_SACK_PERMITTED and size == 2:
            out["sack_permitted"] = True
        elif kind == tcp.OPT_TIMESTAMPS and size == 10:
            out["ts"] = struct.unpack("!II", body)
        elif kind == tcp.OPT_SACK and size in (10, 18, 26, 34):
            out["sack"] = [struct.unpack("!II", body[k : k + 8]) for k in range(0, size - 2, 8)]
        i += size
    return out


def classify(frame: bytes, config: ToeConfig = ToeConfig(), *, mac: int | None = None,
             ip: int | None = None, netmask: int | None = None) -> Classification:
    """What the engine must do with ``frame`` (no FCS), given its addresses."""
    mac = config.mac_addr if mac is None else mac
    ip = config.ip_addr if ip is None else ip
    netmask = config.netmask if netmask is None else netmask
    n = len(frame)
    if n < 14:
        return _drop(DropReason.RUNT)
    if n > config.max_frame_bytes:
        return _drop(DropReason.OVERSIZE)
    dst = int.from_bytes(frame[0:6], "big")
    if dst not in (mac, 0xFFFF_FFFF_FFFF):
        return _drop(DropReason.MAC_DST)
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0806:
        if n < 42:
            return _drop(DropReason.ARP_MALFORMED)
        htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", frame[14:22])
        if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or oper not in (1, 2):
            return _drop(DropReason.ARP_MALFORMED)
        return Classification(Verdict.ARP)
    if ethertype != 0x0800:
        return _drop(DropReason.ETHERTYPE)
    if n < 34:
        return _drop(DropReason.IP_TRUNCATED)
    version, ihl = frame[14] >> 4, frame[14] & 15
    if version != 4:
        return _drop(DropReason.IP_VERSION)
    if ihl < 5:
        return _drop(DropReason.IP_IHL)
    hlen = ihl * 4
    if n < 14 + hlen:
        return _drop(DropReason.IP_TRUNCATED)
    if reference_sum(frame[14 : 14 + hlen]) != 0xFFFF:
        return _drop(DropReason.IP_CHECKSUM)
    total = int.from_bytes(frame[16:18], "big")
    if total < hlen or total > n - 14:
        return _drop(DropReason.IP_LENGTH)
    frag = int.from_bytes(frame[20:22], "big")
    if frag & 0x2000 or frag & 0x1FFF:
        return _drop(DropReason.IP_FRAGMENT)
    src = int.from_bytes(frame[26:30], "big")
    dst_ip = int.from_bytes(frame[30:34], "big")
    subnet_bcast = (ip | ~netmask) & 0xFFFF_FFFF
    broadcast = dst_ip in (0xFFFF_FFFF, subnet_bcast)
    if (dst_ip != ip and not broadcast) or (dst == 0xFFFF_FFFF_FFFF and not broadcast):
        return _drop(DropReason.IP_DST)
    if src in (0xFFFF_FFFF, subnet_bcast, 0) or src >> 28 == 0xE or src >> 24 == 127:
        return _drop(DropReason.IP_SRC)
    proto = frame[23]
    l4 = frame[14 + hlen : 14 + total]
    if proto == 1:
        if len(l4) < 8:
            return _drop(DropReason.ICMP_MALFORMED)
        if reference_sum(l4) != 0xFFFF:
            return _drop(DropReason.ICMP_CHECKSUM)
        if broadcast:
            return _drop(DropReason.ICMP_IGNORED)
        if l4[0] == icmp.TYPE_ECHO_REQUEST and l4[1] == 0:
            return Classification(Verdict.ICMP_ECHO)
        if l4[0] not in icmp.ERROR_TYPES:  # source quench among them (RFC 9293 MUST-55)
            return _drop(DropReason.ICMP_IGNORED)
        if len(l4) < icmp.ERROR_MIN_BYTES:  # the quoted IPv4 header and 8 bytes of TCP
            return _drop(DropReason.ICMP_MALFORMED)
        quote = l4[icmp.QUOTE_AT:]
        # A segment this engine sent: a 20-byte IPv4 header (no options), TCP, from our
        # address, not a later fragment.
        if (quote[0] != 0x45 or quote[9] != 6 or int.from_bytes(quote[12:16], "big") != ip
                or int.from_bytes(quote[6:8], "big") & 0x1FFF):
            return _drop(DropReason.ICMP_QUOTE)
        return Classification(Verdict.ICMP_ERROR)
    if proto == 6:
        if broadcast:
            return _drop(DropReason.TCP_BROADCAST)
        if len(l4) < 20:
            return _drop(DropReason.TCP_MALFORMED)
        doff = l4[12] >> 4
        if doff < 5 or doff * 4 > len(l4):
            return _drop(DropReason.TCP_OFFSET)
        pseudo = frame[26:34] + struct.pack("!BBH", 0, 6, len(l4))
        if reference_sum(pseudo + l4) != 0xFFFF:
            return _drop(DropReason.TCP_CHECKSUM)
        if parse_tcp_options(l4[20 : doff * 4]) is None:
            return _drop(DropReason.TCP_OPTION)
        return Classification(Verdict.TCP)
    return _drop(DropReason.IP_PROTO)
