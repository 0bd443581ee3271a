"""The Python reference of the MAC layer (hdl/mac/) and its own checks.

The MAC tests compare the gateware against these functions:

- :func:`fcs`: IEEE 802.3 s3.2.9 frame check sequence: CRC-32 (the zlib CRC) of the
  frame from the destination address to the end of the pad, sent least significant
  byte first;
- :func:`wire_octets`: what a MAC puts on the wire for one frame (IEEE 802.3 s3.2.1-2,
  s3.2.8, s3.2.9): 7 x 0x55, 0xD5, the frame padded with zeros to 60 bytes, the FCS;
- :func:`scapy_frame`: an Ethernet/IPv4/UDP frame of an exact length built with scapy.

This file also holds the tests of the reference itself against scapy and known values,
so a wrong reference cannot make the gateware tests pass.
"""

import struct
import zlib

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

PREAMBLE = bytes([0x55] * 7)
SFD = bytes([0xD5])
MIN_PADDED = 60  # IEEE 802.3 s4.4.2 minFrameSize 64 bytes minus the 4-byte FCS
#: The CRC-32 register after a frame and its own FCS (IEEE 802.3 s3.2.9 / the "magic
#: number" of the reflected CRC-32), as zlib reports it.
CRC32_RESIDUE = 0x2144DF1C


def fcs(frame: bytes) -> bytes:
    """IEEE 802.3 s3.2.9: the four FCS octets of ``frame`` (padded already)."""
    return struct.pack("<I", zlib.crc32(frame) & 0xFFFFFFFF)


def pad(frame: bytes) -> bytes:
    """IEEE 802.3 s3.2.8 / s4.2.3.3: zero pad up to 60 bytes (64 with the FCS)."""
    return frame + bytes(max(0, MIN_PADDED - len(frame)))


def wire_octets(frame: bytes, *, padded: bool = True) -> bytes:
    """The octets of one transmitted frame: preamble, SFD, frame (padded), FCS."""
    body = pad(frame) if padded else frame
    return PREAMBLE + SFD + body + fcs(body)


def scapy_frame(length: int, seed: int = 0) -> bytes:
    """An Ethernet II / IPv4 / UDP frame of exactly ``length`` bytes (FCS not included).

    Lengths below 42 (the Ethernet, IPv4 and UDP headers) are the first ``length`` bytes
    of a 42-byte frame: only the bytes matter to the MAC.
    """
    headers = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP(
        src="10.0.0.1", dst="10.0.0.2"
    ) / UDP(sport=1024 + seed, dport=7)
    payload = bytes((seed * 31 + i * 7) & 0xFF for i in range(max(0, length - 42)))
    frame = bytes(headers / Raw(payload)) if payload else bytes(headers)
    return frame[:length]


def test_reference_fcs_known_value():
    """IEEE 802.3 s3.2.9: the CRC-32 of "123456789" is 0xCBF43926 (the catalog check
    value of CRC-32/ISO-HDLC, which is the Ethernet FCS); it is sent LSB first."""
    assert fcs(b"123456789") == bytes([0x26, 0x39, 0xF4, 0xCB])


def test_reference_fcs_residue():
    """IEEE 802.3 s3.2.9: a frame followed by its FCS leaves the fixed CRC residue."""
    for length in (60, 64, 1514):
        body = scapy_frame(length)
        assert zlib.crc32(body + fcs(body)) == CRC32_RESIDUE


def test_reference_scapy_frames():
    """IEEE 802.3 s3.2.6: the Length/Type of the reference frames is IPv4 (0x0800), and
    scapy parses them back with the sizes asked for."""
    for length in (42, 60, 64, 1514):
        frame = scapy_frame(length)
        assert len(frame) == length
        assert Ether(frame).type == 0x0800
        assert frame[12:14] == b"\x08\x00"


def test_reference_wire_octets():
    """IEEE 802.3 s3.2.1-2, s3.2.8: 7 x 0x55 and 0xD5, then a short frame padded with
    zeros to 60 bytes before its FCS."""
    octets = wire_octets(b"\x01" * 14)
    assert octets[:8] == bytes([0x55] * 7 + [0xD5])
    assert len(octets) == 8 + 64
    assert octets[8 + 14 : 8 + 60] == bytes(46)
