"""One readable line per frame, the way a textbook would label a packet ladder."""

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from toe.hdl.proto.tcp import CWR, ECE, flag_names
from toe.sim.peer import tcp_payload

__all__ = ["describe"]

def describe(frame: Ether) -> str:
    """``ARP who-has 10.0.0.1 tell 10.0.0.2``, ``TCP 10.0.0.1:40000 > 10.0.0.2:80 [SYN]
    seq=1000 win=64240 <mss 1460>``, ..."""
    if ARP in frame:
        arp = frame[ARP]
        if arp.op == 1 and arp.psrc == arp.pdst:
            return f"ARP announce {arp.psrc} is-at {arp.hwsrc}"
        if arp.op == 1:
            return f"ARP who-has {arp.pdst} tell {arp.psrc} ({arp.hwsrc})"
        return f"ARP reply {arp.psrc} is-at {arp.hwsrc}"
    if IP not in frame:
        return frame.summary()
    ip = frame[IP]
    if ICMP in frame:
        icmp = frame[ICMP]
        kind = {0: "echo reply", 8: "echo request"}.get(icmp.type, f"type {icmp.type}")
        return (
            f"ICMP {ip.src} > {ip.dst} {kind} id={icmp.id} seq={icmp.seq} "
            f"len={len(icmp.payload)} ttl={ip.ttl}"
        )
    if TCP in frame:
        tcp = frame[TCP]
        flags = flag_names(int(tcp.flags) & ~(ECE | CWR), ",")  # ECN bits not shown
        text = f"TCP {ip.src}:{tcp.sport} > {ip.dst}:{tcp.dport} [{flags}] seq={tcp.seq}"
        if "A" in str(tcp.flags):
            text += f" ack={tcp.ack}"
        text += f" win={tcp.window} len={len(tcp_payload(frame))}"
        options = [
            f"{name.lower()} {value}" if value not in (None, b"") else name.lower()
            for name, value in tcp.options
            if name not in ("NOP", "EOL")
        ]
        if options:
            text += " <" + ", ".join(str(o) for o in options) + ">"
        return text
    return frame.summary()
