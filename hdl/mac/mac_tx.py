"""The MAC transmit side: preamble and SFD, padding, FCS and the inter-frame gap.

IEEE 802.3 clause 3 (s3.2.1 preamble: seven octets 10101010; s3.2.2 SFD 10101011;
s3.2.8 pad: data shorter than minFrameSize is extended with octets; s3.2.9 FCS: CRC-32,
first transmitted octet holds x^31..x^24 of the complement, i.e. the CRC32_ETHERNET value
least significant octet first), clause 4 (s4.2.3.2.1 interFrameSpacing: 96 bit times
between frames; s4.4.2 minFrameSize 512 bits) and clause 35 (s35.2.2.5: TX_ER with TX_EN
makes the PHY emit an error, used here when the byte stream runs dry mid-frame).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from .mac_rx import FCS_BYTES, MIN_FRAME_BYTES, PREAMBLE_BYTE, SFD_BYTE

__all__ = ["MacTx", "PREAMBLE_BYTES", "IFG_BYTES", "tx_byte_layout"]

#: Seven preamble octets, then the SFD (IEEE 802.3 s3.2.1-2).
PREAMBLE_BYTES = 7
#: interFrameSpacing: 96 bit times = 12 octets (IEEE 802.3 s4.4.2).
IFG_BYTES = 12


def tx_byte_layout() -> data.StructLayout:
    """One byte to send: ``data`` and ``last`` (the frame's last byte, before padding)."""
    return data.StructLayout({"data": 8, "last": 1})


class MacTx(wiring.Component):
    """Frame bytes in, GMII transmit bytes out.

    Written in the ``sync`` domain; the composer renames it to the PHY's clock domain.
    A frame starts when ``i.valid`` is seen while idle; from then on the frame's bytes
    must come one per cycle (the wire cannot pause): the source guarantees that the
    whole frame is ready (:class:`~toe.hdl.mac.crossing.TxCrossing`).  Should ``i`` run
    dry mid-frame anyway, the MAC sends TX_ER for each missing byte, so that the
    receiver discards the frame.

    On the wire: 7 x 0x55, 0xD5, the frame's bytes, 0x00 pad bytes up to 60 bytes, the
    four FCS bytes (CRC32_ETHERNET over the bytes and the pad, least significant byte
    first), then at least ``ifg_bytes`` cycles with TX_EN low.  ``tx_*`` are registered.

    Ports
    -----
    i : In(stream)
        :func:`tx_byte_layout` bytes of one frame after another (destination address
        to the end of the payload, at least one byte).
    tx_data, tx_en, tx_er : Out
        GMII TXD<7:0>, TX_EN, TX_ER (IEEE 802.3 s35.2.2.3-5).
    frame_start : Out(1)
        One-cycle pulse when a frame's first preamble byte goes out (activity LED,
        counter).
    """

    def __init__(self, ifg_bytes: int = IFG_BYTES):
        if ifg_bytes < IFG_BYTES:
            raise ValueError("the inter-frame gap must be at least 12 bytes")
        self._ifg_bytes = ifg_bytes
        super().__init__({
            "i": In(stream.Signature(tx_byte_layout())),
            "tx_data": Out(8),
            "tx_en": Out(1),
            "tx_er": Out(1),
            "frame_start": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        padded_bytes = MIN_FRAME_BYTES - FCS_BYTES  # 60

        m.submodules.fcs = fcs = crc.catalog.CRC32_ETHERNET(8).create()

        count = Signal(range(max(PREAMBLE_BYTES, padded_bytes, self._ifg_bytes) + 1))
        fcs_index = Signal(range(FCS_BYTES))

        m.d.sync += [
            self.tx_en.eq(0),
            self.tx_er.eq(0),
            self.tx_data.eq(0),
            self.frame_start.eq(0),
        ]

        def send(byte, error=0):
            m.d.sync += [self.tx_en.eq(1), self.tx_er.eq(error), self.tx_data.eq(byte)]

        with m.FSM(name="tx_state"):
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    send(PREAMBLE_BYTE)
                    m.d.sync += [count.eq(1), self.frame_start.eq(1)]
                    m.next = "PREAMBLE"

            with m.State("PREAMBLE"):
                with m.If(count == PREAMBLE_BYTES):
                    send(SFD_BYTE)
                    m.d.comb += fcs.start.eq(1)
                    m.d.sync += count.eq(0)
                    m.next = "DATA"
                with m.Else():
                    send(PREAMBLE_BYTE)
                    m.d.sync += count.eq(count + 1)

            with m.State("DATA"):
                m.d.comb += [
                    self.i.ready.eq(1),
                    fcs.data.eq(self.i.p.data),
                    fcs.valid.eq(self.i.valid),
                ]
                with m.If(self.i.valid):
                    send(self.i.p.data)
                    with m.If(count != padded_bytes):
                        m.d.sync += count.eq(count + 1)
                    with m.If(self.i.p.last):
                        m.d.sync += fcs_index.eq(0)
                        with m.If(count + 1 < padded_bytes):
                            m.next = "PAD"
                        with m.Else():
                            m.next = "FCS"
                with m.Else():
                    # Underrun: the frame cannot be finished correctly; mark it.
                    send(0, error=1)

            with m.State("PAD"):
                send(0)
                m.d.comb += [fcs.data.eq(0), fcs.valid.eq(1)]
                m.d.sync += count.eq(count + 1)
                with m.If(count + 1 == padded_bytes):
                    m.next = "FCS"

            with m.State("FCS"):
                # The CRC register holds the value over every byte sent; no byte is
                # added while the four FCS bytes go out.
                send(fcs.crc.word_select(fcs_index, 8))
                m.d.sync += fcs_index.eq(fcs_index + 1)
                with m.If(fcs_index == FCS_BYTES - 1):
                    m.d.sync += count.eq(0)
                    m.next = "GAP"

            with m.State("GAP"):
                # ifg_bytes cycles here are ifg_bytes idle byte times on the wire (the
                # outputs are registered: IDLE sends the next preamble a cycle later).
                m.d.sync += count.eq(count + 1)
                with m.If(count == self._ifg_bytes - 1):
                    m.next = "IDLE"

        return m
