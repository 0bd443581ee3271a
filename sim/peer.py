"""Frames a scapy peer sends to the engine, and checks of what comes back."""

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from toe.hdl.checksum import reference_sum
from toe.hdl.config import ToeConfig

__all__ = ["Peer", "checksums_ok", "mac_str", "ip_str", "sack_runs"]


def mac_str(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def ip_str(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def checksums_ok(frame: Packet) -> bool:
    """IPv4 header, ICMP and TCP checksums of ``frame`` verify (RFC 1071 / RFC 9293 s3.1)."""
    if IP not in frame:
        return True
    ip = frame[IP]
    raw_ip = bytes(ip)
    hlen = ip.ihl * 4
    if reference_sum(raw_ip[:hlen]) != 0xFFFF:
        return False
    l4 = raw_ip[hlen : ip.len]
    if ip.proto == 1:
        return reference_sum(l4) == 0xFFFF
    if ip.proto == 6:
        pseudo = raw_ip[12:20] + bytes([0, 6]) + len(l4).to_bytes(2, "big")
        return reference_sum(pseudo + l4) == 0xFFFF
    return True


def sack_runs(held, latest: int) -> list[tuple[int, int]]:
    """A SACK receiver's blocks over the segment numbers ``held`` beyond its cumulative
    ACK: the runs of consecutive numbers as [start, end) pairs, the one holding
    ``latest`` (the segment just received) first, the others in ascending order
    (RFC 2018 s4: the first block reports the most recent segment)."""
    runs: list[list[int]] = []
    for k in sorted(held):
        if runs and runs[-1][1] == k:
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1])
    runs.sort(key=lambda run: not run[0] <= latest < run[1])
    return [(start, end) for start, end in runs]


def tcp_payload(frame: Packet) -> bytes:
    """The TCP payload of ``frame`` as its IPv4 total length bounds it (RFC 791): the
    bytes a MAC pads a short frame with to 60 bytes (IEEE 802.3 s4.2.3.3) are not data.
    scapy keeps such padding as a ``Padding`` layer under TCP, so ``bytes(tcp.payload)``
    of a padded pure ACK is 6 zero bytes.  Works on parsed and on built frames."""
    raw_ip = bytes(frame[IP])
    ihl = (raw_ip[0] & 15) * 4
    start = ihl + (raw_ip[ihl + 12] >> 4) * 4
    return raw_ip[start : int.from_bytes(raw_ip[2:4], "big")]


class Peer:
    """A host on the engine's link: builds the frames it sends to the engine."""

    def __init__(self, config: ToeConfig, mac: str = "02:00:00:00:00:01", ip: str = "10.0.0.1"):
        self.config = config
        self.mac = mac
        self.ip = ip
        self.engine_mac = mac_str(config.mac_addr)
        self.engine_ip = ip_str(config.ip_addr)

    def ether(self, dst: str | None = None) -> Ether:
        return Ether(dst=dst or self.engine_mac, src=self.mac)

    def ip_to_engine(self, **fields) -> Packet:
        return self.ether() / IP(src=self.ip, dst=self.engine_ip, **fields)

    def ping(self, payload: bytes = b"", ident: int = 0x1234, seq: int = 1, **ip_fields) -> Packet:
        return self.ip_to_engine(**ip_fields) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)

    def tcp(self, payload: bytes = b"", **fields) -> Packet:
        fields.setdefault("sport", 40000)
        fields.setdefault("dport", 80)
        seg = self.ip_to_engine() / TCP(**fields)
        return seg / Raw(payload) if payload else seg

    def arp_request(self, target: str | None = None, sender_ip: str | None = None) -> Packet:
        return Ether(dst="ff:ff:ff:ff:ff:ff", src=self.mac) / ARP(
            op=1, hwsrc=self.mac, psrc=sender_ip or self.ip, hwdst="00:00:00:00:00:00",
            pdst=target or self.engine_ip)

    def arp_reply_to_engine(self, ip: str | None = None, mac: str | None = None) -> Packet:
        return Ether(dst=self.engine_mac, src=mac or self.mac) / ARP(
            op=2, hwsrc=mac or self.mac, psrc=ip or self.ip, hwdst=self.engine_mac,
            pdst=self.engine_ip)
