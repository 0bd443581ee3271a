"""ARP transmitter: replies, requests and announcements (RFC 826, RFC 5227 s2.3)."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..proto import arp, ethernet
from ..stream import be_bytes, beat_signature
from ..tx.headers import ethernet_header
from ..tx.serializer import FrameSerializer

__all__ = ["ArpTransmitter", "FRAME_BYTES"]

FRAME_BYTES = ethernet.HEADER_BYTES + arp.PACKET_BYTES  # 42


class ArpTransmitter(wiring.Component):
    """Builds ARP frames from our addresses and sends them as beats.

    Priority: replies (someone waits for us), then requests, then announcements.

    Ports
    -----
    reply : In(stream)
        ``tha``/``tpa``: answer a request from that host (unicast, RFC 826).
    request : In(stream)
        ``tpa``: broadcast a request for that address.
    announce : In(1)
        Pulse: queue one gratuitous ARP announcement of our address (RFC 5227 s2.3:
        sender and target protocol address both ours).
    mac_addr, ip_addr : In
    o : Out(stream)
    """

    def __init__(self, data_bytes: int):
        super().__init__({
            "reply": In(stream.Signature(data.StructLayout({"tha": 48, "tpa": 32}))),
            "request": In(stream.Signature(data.StructLayout({"tpa": 32}))),
            "announce": In(1),
            "mac_addr": In(48),
            "ip_addr": In(32),
            "o": Out(beat_signature(data_bytes)),
        })
        self._w = data_bytes

    def elaborate(self, platform):
        m = Module()
        m.submodules.serializer = ser = FrameSerializer(self._w, FRAME_BYTES)
        wiring.connect(m, wiring.flipped(self.o), ser.o)

        pending_announce = Signal()
        with m.If(self.announce):
            m.d.sync += pending_announce.eq(1)

        oper = Signal(16)
        eth_dst = Signal(48)
        tha = Signal(48)
        tpa = Signal(32)
        loaded = Signal()
        with m.If(~loaded | (ser.frame.valid & ser.frame.ready)):
            m.d.sync += loaded.eq(0)
            with m.If(self.reply.valid):
                m.d.comb += self.reply.ready.eq(1)
                m.d.sync += [
                    loaded.eq(1), oper.eq(arp.OPER_REPLY), eth_dst.eq(self.reply.p.tha),
                    tha.eq(self.reply.p.tha), tpa.eq(self.reply.p.tpa),
                ]
            with m.Elif(self.request.valid):
                m.d.comb += self.request.ready.eq(1)
                m.d.sync += [
                    loaded.eq(1), oper.eq(arp.OPER_REQUEST), eth_dst.eq(ethernet.BROADCAST),
                    tha.eq(0), tpa.eq(self.request.p.tpa),
                ]
            with m.Elif(pending_announce & ~self.announce):
                m.d.sync += [
                    loaded.eq(1), pending_announce.eq(0), oper.eq(arp.OPER_REQUEST),
                    eth_dst.eq(ethernet.BROADCAST), tha.eq(0), tpa.eq(self.ip_addr),
                ]

        frame = (
            ethernet_header(eth_dst, self.mac_addr, ethernet.ETHERTYPE_ARP)
            + be_bytes(Const(arp.HTYPE_ETHERNET, 16), 2)
            + be_bytes(Const(ethernet.ETHERTYPE_IPV4, 16), 2)
            + [Const(6, 8), Const(4, 8)]
            + be_bytes(oper, 2)
            + be_bytes(self.mac_addr, 6) + be_bytes(self.ip_addr, 4)
            + be_bytes(tha, 6) + be_bytes(tpa, 4)
        )
        assert len(frame) == FRAME_BYTES
        for i, byte in enumerate(frame):
            m.d.comb += ser.frame.p.bytes[i].eq(byte)
        m.d.comb += [ser.frame.p.length.eq(FRAME_BYTES), ser.frame.valid.eq(loaded)]
        return m
