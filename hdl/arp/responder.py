"""ARP receive side: answer requests for our address and learn mappings (RFC 826)."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..proto import arp

__all__ = ["ArpResponder"]


class ArpResponder(wiring.Component):
    """Handles one received ARP packet per cycle.

    RFC 826 packet reception: if the sender's address is in the cache its hardware
    address is updated (merge); if we are the target, the sender is added; if the
    operation is a request for our address, a reply goes to the sender.  A packet whose
    sender claims our own address is an address conflict (RFC 5227 s2.4): it is counted
    and not learned; a request for our address is still answered (defence).  A sender
    address of 0.0.0.0 (an RFC 5227 probe) is not learned.

    Ports
    -----
    meta : In(stream)
        ``oper``, ``sha``, ``spa``, ``tpa`` of a received, well-formed ARP packet.
    ip_addr : In
    learn : Out(stream, always ready)
        ``ip``, ``mac``, ``create`` to the cache.
    reply : Out(stream)
        ``tha``, ``tpa`` to the transmitter.
    conflict, replied : Out
        Strobes for the counters.
    """

    meta: In(stream.Signature(data.StructLayout(
        {"oper": 16, "sha": 48, "spa": 32, "tpa": 32})))
    ip_addr: In(32)
    learn: Out(stream.Signature(data.StructLayout({"ip": 32, "mac": 48, "create": 1}),
                                always_ready=True))
    reply: Out(stream.Signature(data.StructLayout({"tha": 48, "tpa": 32})))
    conflict: Out(1)

    def elaborate(self, platform):
        m = Module()
        p = self.meta.p
        for_us = p.tpa == self.ip_addr
        wants_reply = (p.oper == arp.OPER_REQUEST) & for_us
        conflict = p.spa == self.ip_addr
        may_learn = ~conflict & (p.spa != 0)

        m.d.comb += [
            self.learn.p.ip.eq(p.spa),
            self.learn.p.mac.eq(p.sha),
            self.learn.p.create.eq(for_us),
            self.reply.p.tha.eq(p.sha),
            self.reply.p.tpa.eq(p.spa),
        ]
        # The cache always takes a learn; only the reply may have to wait.
        done = ~wants_reply | self.reply.ready
        with m.If(self.meta.valid):
            m.d.comb += [
                self.reply.valid.eq(wants_reply),
                self.meta.ready.eq(done),
                self.learn.valid.eq(may_learn & done),
                self.conflict.eq(conflict & done),
            ]
        return m
