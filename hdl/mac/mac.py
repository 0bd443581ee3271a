"""EthernetMac: the MAC layer composed (layer file, no logic of its own beyond CDC).

PHY side (``phy_domain``, one byte per cycle)::

    gmii.rx_* -> MacRx -> RxGearbox -> RxCrossing -> rx, rx_error (core_domain)
    gmii.tx_* <- MacTx <- TxGearbox <- TxCrossing <- tx            (core_domain)

IEEE 802.3 clauses 3, 4 and 35; see :mod:`toe.hdl.mac` for the interface contract and
docs/mac.md for the design.
"""

from amaranth.hdl import DomainRenamer, EnableInserter, Module
from amaranth.lib import cdc, wiring
from amaranth.lib.wiring import In, Out

from ..stream import beat_signature
from .crossing import RxCrossing, TxCrossing, default_depth
from .gearbox import RxGearbox, TxGearbox
from .gmii import gmii_signature, phy_status_signature
from .mac_rx import FCS_BYTES, MacRx
from .mac_tx import MacTx

__all__ = ["EthernetMac"]


class EthernetMac(wiring.Component):
    """The Ethernet MAC between a PHY's byte interface and the engine's beat streams.

    Parameters
    ----------
    data_bytes : int
        W, bytes per beat of ``tx`` and ``rx`` (1..64; the engine's ``config.data_bytes``).
    phy_domain, core_domain : str
        The PHY's 125 MHz clock domain (defined by :class:`~toe.hdl.mac.rgmii.RgmiiPhy`)
        and the engine's.
    max_frame_bytes : int
        Largest frame with FCS (1522: 1500-byte payload, VLAN tag).  Longer RX frames are
        cut and flagged; longer TX frames are cut at ``max_frame_bytes - 4``.
    rx_depth, tx_depth : int or None
        Beats of the RX and TX queues (powers of two); by default two largest frames.

    Ports
    -----
    gmii : In(gmii_signature), ``phy_domain``
    phy_status : In(phy_status_signature), ``phy_domain``
    tx : In(beat_signature(W)), ``core_domain``
        Frames to send, destination address to end of payload (padding and FCS added).
    rx : Out(beat_signature(W)), ``core_domain``
        Received frames, destination address to end of payload (FCS stripped).
    rx_error : Out(1), ``core_domain``
        The error flag: with ``rx.valid & rx.p.last``, 1 = drop this frame (FCS mismatch,
        RX_ER, runt, too long, or cut by an RX queue overflow).  0 on other beats.
    rx_overflow : Out(1), ``core_domain``
        Pulse per frame cut or lost because the RX queue was full.
    link_up, link_speed, full_duplex : Out, ``core_domain``
        The PHY's in-band status (RGMII 2.0 s3.4.1) through two-stage synchronisers.
    """

    def __init__(self, data_bytes: int = 8, *, phy_domain="eth", core_domain="sync",
                 max_frame_bytes: int = 1522, rx_depth=None, tx_depth=None):
        self._data_bytes = data_bytes
        self._phy_domain = phy_domain
        self._core_domain = core_domain
        self._max_frame_bytes = max_frame_bytes
        self._rx_depth = rx_depth or default_depth(max_frame_bytes, data_bytes)
        self._tx_depth = tx_depth or default_depth(max_frame_bytes - FCS_BYTES, data_bytes)
        super().__init__({
            "gmii": In(gmii_signature),
            "phy_status": In(phy_status_signature),
            "tx": In(beat_signature(data_bytes)),
            "rx": Out(beat_signature(data_bytes)),
            "rx_error": Out(1),
            "rx_overflow": Out(1),
            "link_up": Out(1),
            "link_speed": Out(2),
            "full_duplex": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._data_bytes
        phy, core = self._phy_domain, self._core_domain
        in_phy = DomainRenamer({"sync": phy})

        m.submodules.mac_rx = mac_rx = in_phy(MacRx(self._max_frame_bytes))
        m.submodules.rx_gearbox = rx_gearbox = in_phy(RxGearbox(w))
        m.submodules.rx_crossing = rx_crossing = RxCrossing(
            w, depth=self._rx_depth, phy_domain=phy, core_domain=core)
        m.submodules.tx_crossing = tx_crossing = TxCrossing(
            w, max_frame_bytes=self._max_frame_bytes - FCS_BYTES, depth=self._tx_depth,
            phy_domain=phy, core_domain=core)
        m.submodules.tx_gearbox = tx_gearbox = in_phy(TxGearbox(w))
        m.submodules.mac_tx = mac_tx = in_phy(MacTx())

        m.d.comb += [
            mac_rx.rx_data.eq(self.gmii.rx_data),
            mac_rx.rx_dv.eq(self.gmii.rx_dv),
            mac_rx.rx_er.eq(self.gmii.rx_er),
            self.gmii.tx_data.eq(mac_tx.tx_data),
            self.gmii.tx_en.eq(mac_tx.tx_en),
            self.gmii.tx_er.eq(mac_tx.tx_er),
        ]
        wiring.connect(m, mac_rx.o, rx_gearbox.i)
        wiring.connect(m, rx_gearbox.o, rx_crossing.i)
        wiring.connect(m, wiring.flipped(self.rx), rx_crossing.o)
        m.d.comb += self.rx_error.eq(rx_crossing.error)

        wiring.connect(m, wiring.flipped(self.tx), tx_crossing.i)
        wiring.connect(m, tx_crossing.o, tx_gearbox.i)
        wiring.connect(m, tx_gearbox.o, mac_tx.i)

        m.submodules.overflow_sync = overflow_sync = cdc.PulseSynchronizer(phy, core)
        m.d.comb += [overflow_sync.i.eq(rx_crossing.overflow),
                     self.rx_overflow.eq(overflow_sync.o)]
        for name, port in (("link_up", self.link_up), ("link_speed", self.link_speed),
                           ("full_duplex", self.full_duplex)):
            source = getattr(self.phy_status, "speed" if name == "link_speed" else name)
            m.submodules[f"{name}_sync"] = cdc.FFSynchronizer(source, port, o_domain=core)
        # At 10/100 Mbit/s a byte takes two PHY clock cycles: everything in the PHY
        # domain (MAC, gearboxes, the crossings' PHY sides) steps on ``gmii.enable``.
        return EnableInserter({phy: self.gmii.enable})(m)
