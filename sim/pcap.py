"""A small pcapng writer: nanosecond timestamps, direction flags, per-packet comments.

scapy's writers stamp packets in microseconds, too coarse for simulated time (back-to-back
frames at 10 Gb/s are tens of nanoseconds apart), and classic pcap has no direction.  This
writes pcapng (IETF draft-ietf-opsawg-pcapng) with one Ethernet interface whose
``if_tsresol`` is 9 (ns); each Enhanced Packet Block carries ``epb_flags`` with the direction
(inbound = towards the device under test) and an optional comment.  Wireshark, tshark and
scapy's ``rdpcap`` (``pkt.time``, ``pkt.direction``, ``pkt.comments``) read it.
"""

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["INBOUND", "OUTBOUND", "LINKTYPE_ETHERNET", "PcapRecord", "write_pcapng"]

INBOUND = 1
"""``epb_flags`` direction: the frame went *to* the device under test."""
OUTBOUND = 2
"""``epb_flags`` direction: the frame came *from* the device under test."""
LINKTYPE_ETHERNET = 1

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_END, _OPT_COMMENT = 0, 1
_IF_NAME, _IF_TSRESOL = 2, 9
_EPB_FLAGS = 2


@dataclass(frozen=True)
class PcapRecord:
    """One packet: its time in nanoseconds, its bytes, INBOUND/OUTBOUND and a comment."""

    time_ns: int
    data: bytes
    direction: int = 0
    comment: str | None = None


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def write_pcapng(
    path: str | Path,
    records: Iterable[PcapRecord],
    *,
    interface: str = "toe",
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
) -> Path:
    """Write ``records`` (in the order given) to ``path`` as pcapng; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(_OPT_END, b"")
    idb = (
        struct.pack("<HHI", linktype, 0, snaplen)
        + _option(_IF_NAME, interface.encode())
        + _option(_IF_TSRESOL, bytes([9]))
        + _option(_OPT_END, b"")
    )
    with open(path, "wb") as f:
        f.write(_block(_SHB, shb))
        f.write(_block(_IDB, idb))
        for record in records:
            ts = int(record.time_ns)
            if ts < 0:
                raise ValueError(f"negative timestamp {ts}")
            data = bytes(record.data)
            captured = data[:snaplen]
            options = b""
            if record.comment:
                options += _option(_OPT_COMMENT, record.comment.encode())
            if record.direction:
                options += _option(_EPB_FLAGS, struct.pack("<I", record.direction & 3))
            if options:
                options += _option(_OPT_END, b"")
            body = (
                struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(captured), len(data))
                + _pad(captured)
                + options
            )
            f.write(_block(_EPB, body))
    return path
