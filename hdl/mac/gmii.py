"""The byte interface between the PHY and the MAC (GMII-like, IEEE 802.3 clause 35).

Both signatures are seen from the PHY side: ``Out`` members are driven by the PHY,
``In`` members by the MAC.  Everything is in the PHY's clock domain, one byte per cycle
of ``enable`` (1000 Mbit/s: every cycle of 125 MHz; 100 and 10 Mbit/s: every second
cycle of 25 and 2.5 MHz, a byte being two nibbles).
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPEED_10", "SPEED_100", "SPEED_1000", "gmii_signature", "phy_status_signature"]

#: ``phy_status.speed`` codes: RXD[2:1] of the RGMII 2.0 in-band status (s3.4.1).
SPEED_10, SPEED_100, SPEED_1000 = 0, 1, 2

#: IEEE 802.3 35.2.2: RXD<7:0>, RX_DV, RX_ER (PHY to MAC); TXD<7:0>, TX_EN, TX_ER (MAC to
#: PHY); ``enable``: the cycles that carry a byte, a clock enable of the MAC's PHY-side
#: logic (1 when nothing drives it).
gmii_signature = wiring.Signature({
    "rx_data": Out(8),
    "rx_dv": Out(1),
    "rx_er": Out(1),
    "enable": Out(1, init=1),
    "tx_data": In(8),
    "tx_en": In(1),
    "tx_er": In(1),
})

#: RGMII 2.0 s3.4.1 in-band status, as last seen during an inter-frame gap.
phy_status_signature = wiring.Signature({
    "link_up": Out(1),
    "speed": Out(2),
    "full_duplex": Out(1),
})
