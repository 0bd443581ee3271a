"""The MAC and PHY layer: RGMII pads, Ethernet MAC, width gearbox and clock crossing.

IEEE 802.3 clause 3 (frame format), clause 4 (MAC: preamble, SFD, FCS, padding,
inter-frame gap), clause 35 (GMII: TX_EN/TX_ER, RX_DV/RX_ER) and the RGMII 2.0
specification (Hewlett-Packard, 2002: DDR nibbles, RX_CTL/TX_CTL encoding, in-band
status).  1000 Mbit/s: a byte per PHY clock cycle; 100 and 10 Mbit/s: a nibble per
cycle, the MAC stepping on every second (``gmii.enable``).

Layer and data flow::

    pins -RgmiiPhy-> gmii (8 bit, "eth") -MacRx-> RxGearbox -RxCrossing-> rx (W bytes, "sync")
    pins <-RgmiiPhy- gmii (8 bit, "eth") <-MacTx- TxGearbox <-TxCrossing- tx (W bytes, "sync")

Public interface (stable; the board tops in ``boards/`` instantiate these)
-------------------------------------------------------------------------

``toe.hdl.mac.rgmii.RgmiiPhy(pins, *, rx_delay_ns=0.0, tx_delay_ns=0.0, domain="eth",``
``create_domain=True)``
    ECP5 RGMII PHY interface (the FPGA side of the RGMII link).

    ``pins``: an object with the attributes ``rx_clk``, ``rx_ctl`` (or ``rx_ctrl``),
    ``rx_data`` (4 bits), ``tx_clk``, ``tx_ctl`` (or ``tx_ctrl``), ``tx_data`` (4 bits),
    each an I/O port: what ``platform.request("eth_rgmii", n, dir="-")`` returns (other
    subsignals such as ``rst``, ``mdc``, ``mdio`` are ignored), or
    ``amaranth.lib.io.SimulationPort`` objects in simulation.

    ``rx_delay_ns`` / ``tx_delay_ns``: DELAYG delay (25 ps steps, at most 127 steps =
    3.175 ns) on RXD/RX_CTL and on the TXC output.  Colorlight i9 (B50612D):
    ``rx_delay_ns=2.0``; ECPIX-5 and ButterStick (KSZ9031): ``tx_delay_ns=2.0``.

    Drives the clock domain ``domain`` (default ``"eth"``): clocked by the PHY's 125 MHz
    RXC through the input buffer, reset by ``reset`` (synchronised); TX is clocked from
    the same clock (TXC is forwarded by an ODDR).  With ``create_domain=True`` the PHY
    also defines the domain (the board top must not); Amaranth 0.5.10 warns that a
    domain defined in one submodule and used in a sibling (the MAC) will not be
    supported in 0.6, so a board top may instead define ``ClockDomain("eth")`` itself
    and pass ``create_domain=False``.  Constrain ``phy.rx_clk`` (a ``Signal`` attribute,
    the buffered RXC) to 125 MHz: ``platform.add_clock_constraint(phy.rx_clk, 125e6)``.

    Ports:

    - ``reset``: ``In(1)``, asynchronous; holds the ``domain`` clock domain in reset.
    - ``gmii``: ``Out(gmii_signature)``, in ``domain``: the byte interface to the MAC
      (``rx_data`` 8, ``rx_dv``, ``rx_er`` out; ``tx_data`` 8, ``tx_en``, ``tx_er`` in).
    - ``status``: ``Out(phy_status_signature)``, in ``domain``: RGMII 2.0 s3.4.1 in-band
      status, latched from RXD while RX_DV = RX_ER = 0: ``link_up`` (1),
      ``speed`` (2: 0 = 10, 1 = 100, 2 = 1000 Mbit/s), ``full_duplex`` (1).

    When the platform is ``None`` (Amaranth simulator) the DDR cells are behavioural
    models (the delays are not modelled), because ``amaranth.lib.io.DDRBuffer`` does not
    simulate.

``toe.hdl.mac.mac.EthernetMac(data_bytes=8, *, phy_domain="eth", core_domain="sync",``
``max_frame_bytes=1522)``
    The MAC with its gearbox and clock crossing, between the PHY's byte interface and
    the engine's beat streams.

    Ports (``gmii`` and ``phy_status`` in ``phy_domain``, the rest in ``core_domain``):

    - ``gmii``: ``In(gmii_signature)``; connect with
      ``wiring.connect(m, phy.gmii, mac.gmii)``.
    - ``phy_status``: ``In(phy_status_signature)``; ``wiring.connect(m, phy.status,
      mac.phy_status)``.
    - ``tx``: ``In(toe.hdl.stream.beat_signature(data_bytes))``: Ethernet frames from
      the destination address to the end of the payload, without FCS.  The MAC pads a
      frame to 60 bytes, appends the FCS, sends 7 x 0x55 + 0xD5 before it and keeps at
      least 12 idle byte times after it.  A frame goes on the wire only once it is whole
      in the TX FIFO; a frame longer than ``max_frame_bytes - 4`` is cut there (its
      rest is dropped).
    - ``rx``: ``Out(beat_signature(data_bytes))``: received frames from the destination
      address to the end of the payload, preamble, SFD and FCS stripped.
    - ``rx_error``: ``Out(1)``: **the error flag**.  Meaningful when ``rx.valid`` and
      ``rx.p.last`` (0 on every other beat): 1 = the frame that ends with this beat is bad
      and must be dropped: FCS mismatch, RX_ER during the frame, runt (fewer than 64
      bytes with FCS), longer than ``max_frame_bytes`` with FCS (cut there), or cut by an
      RX FIFO overflow.  A frame whose first beat did not fit the full FIFO is dropped
      whole and only counted by ``rx_overflow``.
    - ``rx_overflow``: ``Out(1)``: one-cycle pulse per frame cut or dropped because the
      RX FIFO was full (the core did not take beats fast enough).
    - ``link_up``, ``link_speed`` (2), ``full_duplex``: ``Out``: the PHY's in-band status,
      synchronised into ``core_domain`` for a register.

``toe.hdl.mac.mdio.MdioMaster(clk_div=DEFAULT_CLK_DIV)``
    IEEE 802.3 clause 22 management frames on MDC/MDIO, in the core domain (``sync``),
    apart from the data path.  ``clk_div``: system cycles per half MDC period (at least
    2; ``clk_div_for(core_mhz)`` gives at most 2 MHz, 13 at 50 MHz).

    Ports: ``start`` (strobe; ignored while ``busy``, reported by the ``ignored``
    strobe) with ``write``, ``phy`` (5), ``reg`` (5), ``wdata`` (16); ``busy``, ``done``
    (strobe), ``rdata`` (16) with the ``rdata_valid`` strobe, ``no_answer``; the pins as
    plain signals ``mdc``, ``mdio_o``, ``mdio_oe`` (out) and ``mdio_i`` (in), for
    ``io.Buffer("o")`` and ``io.Buffer("io")``.

``toe.hdl.mac.gmii``: ``gmii_signature`` and ``phy_status_signature`` (the two
interfaces above), seen from the PHY side (``Out`` members are driven by the PHY).

Parts (each usable and tested on its own, written in the ``sync`` domain and renamed by
the composer): ``mac_rx.MacRx``, ``mac_tx.MacTx``, ``gearbox.RxGearbox``,
``gearbox.TxGearbox``, ``crossing.RxCrossing``, ``crossing.TxCrossing``.  See
``docs/mac.md``.
"""
