"""The MAC receive side: preamble and SFD stripped, FCS checked and stripped, errors marked.

IEEE 802.3 clause 3 (frame format: preamble, SFD, addresses, length/type, data, FCS;
s3.2.9 FCS), clause 4 (s4.2.4.2: a frame of fewer than 64 bytes with FCS is a runt and
is not valid; s4.2.9 receive: FCS check) and clause 35 (s35.2.2.8: RX_ER with RX_DV
marks a data error in the frame).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacRx", "PREAMBLE_BYTE", "SFD_BYTE", "MIN_FRAME_BYTES", "rx_byte_layout"]

#: IEEE 802.3 s3.2.1 / s3.2.2: the preamble octet 10101010 and SFD 10101011 (first bit
#: on the wire is bit 0, so the octets are 0x55 and 0xD5).
PREAMBLE_BYTE = 0x55
SFD_BYTE = 0xD5
#: IEEE 802.3 s4.4.2 minFrameSize: 512 bits, from destination address to FCS.
MIN_FRAME_BYTES = 64
FCS_BYTES = 4


def rx_byte_layout() -> data.StructLayout:
    """One received byte: ``data``, ``last`` (the frame's last byte before its FCS) and
    ``error`` (with ``last``: the frame is bad)."""
    return data.StructLayout({"data": 8, "last": 1, "error": 1})


class MacRx(wiring.Component):
    """GMII receive bytes in, frame bytes out (without preamble, SFD and FCS).

    Written in the ``sync`` domain; the composer renames it to the PHY's clock domain.
    The output cannot be held back (the wire does not pause): ``o`` is always ready.

    A frame starts when RX_DV rises and ends when it falls.  Any number of 0x55 octets
    (PHYs may shorten the preamble) followed by 0xD5 start the frame's data; any other
    octet before the SFD discards the frame.  The last four data octets are the FCS:
    they are checked (the CRC register holds the residue of CRC32_ETHERNET after them)
    and not passed on.  Output lags the wire by five octets plus two cycles.

    ``o.p.error`` on the last byte is 1 when the FCS does not match, RX_ER was seen with
    RX_DV during the frame, the frame had fewer than 64 octets with FCS (runt), or it
    was longer than ``max_frame_bytes`` with FCS (then it is cut: its last byte is the
    one at ``max_frame_bytes - 5`` and the rest of it is dropped).  A fragment of at most
    four octets after the SFD has no data byte and produces no output at all.

    Ports
    -----
    rx_data, rx_dv, rx_er : In
        GMII RXD<7:0>, RX_DV, RX_ER (IEEE 802.3 s35.2.2.6-8).
    o : Out(stream, always ready)
        :func:`rx_byte_layout` bytes.
    frame_end : Out(1)
        One-cycle pulse with each frame's last byte (for a frame counter).
    """

    def __init__(self, max_frame_bytes: int = 1522):
        if max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError("max_frame_bytes must be at least 64")
        self._max_frame_bytes = max_frame_bytes
        super().__init__({
            "rx_data": In(8),
            "rx_dv": In(1),
            "rx_er": In(1),
            "o": Out(stream.Signature(rx_byte_layout(), always_ready=True)),
            "frame_end": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        max_bytes = self._max_frame_bytes

        # Registered GMII inputs: one clean step from the pads' DDR registers.
        rx_data = Signal(8)
        rx_dv = Signal()
        rx_er = Signal()
        m.d.sync += [rx_data.eq(self.rx_data), rx_dv.eq(self.rx_dv), rx_er.eq(self.rx_er)]

        m.submodules.fcs = fcs = crc.catalog.CRC32_ETHERNET(8).create()

        # The last five octets seen: held back until it is known that they are not FCS.
        held = Signal(8 * (FCS_BYTES + 1))
        oldest = held[8 * FCS_BYTES :]
        count = Signal(range(max_bytes + 2))  # octets after the SFD, FCS included
        data_error = Signal()  # RX_ER seen with RX_DV in this frame

        m.d.sync += [self.o.valid.eq(0), self.frame_end.eq(0)]
        m.d.comb += fcs.data.eq(rx_data)

        def emit(last, error):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.p.data.eq(oldest),
                self.o.p.last.eq(last),
                self.o.p.error.eq(error & last),
                self.frame_end.eq(last),
            ]

        with m.FSM(name="rx_state"):
            with m.State("IDLE"):
                with m.If(rx_dv):
                    with m.If(rx_data == SFD_BYTE):
                        m.d.comb += fcs.start.eq(1)
                        m.d.sync += [count.eq(0), data_error.eq(rx_er)]
                        m.next = "DATA"
                    with m.Elif(rx_data == PREAMBLE_BYTE):
                        m.d.sync += data_error.eq(rx_er)
                        m.next = "PREAMBLE"
                    with m.Else():
                        m.next = "DISCARD"

            with m.State("PREAMBLE"):
                with m.If(~rx_dv):
                    m.next = "IDLE"
                with m.Elif(rx_data == SFD_BYTE):
                    m.d.comb += fcs.start.eq(1)
                    m.d.sync += [count.eq(0), data_error.eq(data_error | rx_er)]
                    m.next = "DATA"
                with m.Elif(rx_data != PREAMBLE_BYTE):
                    m.next = "DISCARD"
                with m.Else():
                    m.d.sync += data_error.eq(data_error | rx_er)

            with m.State("DATA"):
                with m.If(rx_dv):
                    m.d.comb += fcs.valid.eq(1)
                    m.d.sync += [
                        held.eq(Cat(rx_data, held[: 8 * FCS_BYTES])),
                        count.eq(count + 1),
                        data_error.eq(data_error | rx_er),
                    ]
                    with m.If(count == max_bytes):
                        # One octet more than a largest frame: cut it here, marked.
                        emit(last=1, error=1)
                        m.next = "DISCARD"
                    with m.Elif(count > FCS_BYTES):
                        emit(last=0, error=0)
                with m.Else():
                    with m.If(count > FCS_BYTES):
                        bad = (~fcs.match_detected) | data_error | (count < MIN_FRAME_BYTES)
                        emit(last=1, error=bad)
                    m.next = "IDLE"

            with m.State("DISCARD"):
                with m.If(~rx_dv):
                    m.next = "IDLE"

        return m
