"""ICMP errors the engine reports about a connection (``ICMP_ERROR`` events and the
``UNREACHABLE`` code of ``RESET``; hdl/tcp/icmp_errors.py), as the driver keeps them.

The errno of each message is the one Linux gives a socket for it (``icmp_err_convert``),
so a program sees the same ``OSError`` as with a kernel socket.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from toe.hdl.proto import icmp

__all__ = ["IcmpReport"]

_UNREACHABLE = {  # code -> (errno, what the router said)
    0: (errno.ENETUNREACH, "network unreachable"),
    1: (errno.EHOSTUNREACH, "host unreachable"),
    2: (errno.ENOPROTOOPT, "protocol unreachable"),
    3: (errno.ECONNREFUSED, "port unreachable"),
    4: (errno.EMSGSIZE, "fragmentation needed"),
    5: (errno.EOPNOTSUPP, "source route failed"),
    6: (errno.ENETUNREACH, "destination network unknown"),
    7: (errno.EHOSTDOWN, "destination host unknown"),
    8: (errno.ENONET, "source host isolated"),
    9: (errno.ENETUNREACH, "network administratively prohibited"),
    10: (errno.EHOSTUNREACH, "host administratively prohibited"),
    11: (errno.ENETUNREACH, "network unreachable for the type of service"),
    12: (errno.EHOSTUNREACH, "host unreachable for the type of service"),
    13: (errno.EHOSTUNREACH, "communication administratively prohibited"),
    14: (errno.EHOSTUNREACH, "host precedence violation"),
    15: (errno.EHOSTUNREACH, "precedence cutoff in effect"),
}


@dataclass(frozen=True)
class IcmpReport:
    """One ICMP error about a connection's segments: RFC 792 type and code, and the
    next-hop MTU of a fragmentation-needed message (else 0)."""

    type: int
    code: int
    mtu: int = 0

    @classmethod
    def from_event(cls, value: int) -> IcmpReport:
        """The event's ``value``: type << 8 | code | next-hop MTU << 16."""
        return cls(value >> 8 & 0xFF, value & 0xFF, value >> 16 & 0xFFFF)

    @property
    def errno(self) -> int:
        if self.type == icmp.TYPE_DEST_UNREACHABLE:
            return _UNREACHABLE.get(self.code, (errno.EHOSTUNREACH, ""))[0]
        if self.type == icmp.TYPE_PARAMETER_PROBLEM:
            return errno.EPROTO
        return errno.EHOSTUNREACH  # time exceeded

    @property
    def description(self) -> str:
        if self.type == icmp.TYPE_DEST_UNREACHABLE:
            text = _UNREACHABLE.get(self.code, (0, f"destination unreachable code {self.code}"))[1]
        elif self.type == icmp.TYPE_TIME_EXCEEDED:
            text = "time exceeded" + (" in reassembly" if self.code == 1 else " in transit")
        elif self.type == icmp.TYPE_PARAMETER_PROBLEM:
            text = "parameter problem"
        else:
            text = f"ICMP type {self.type} code {self.code}"
        return f"ICMP {text}"
