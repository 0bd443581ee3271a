"""Kernel sockets inside a network namespace, and the kernel's view of them (``ss``).

A socket belongs to the namespace of the thread that creates it, and stays there when
another thread uses it.  :func:`socket_in_netns` creates one from a short-lived thread
that has joined the namespace (``setns(2)``), so a test drives Linux's TCP in the virtual
NIC's namespace with ordinary blocking sockets while the rest of the process stays in
its own namespace.
"""

import ctypes
import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass

__all__ = ["KernelSocket", "kernel_sockets", "socket_in_netns"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns: str | None, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket of Linux's stack in namespace ``netns`` (None: this namespace)."""
    if netns is None:
        return socket.socket(family, kind)
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        try:
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=create)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@dataclass(frozen=True)
class KernelSocket:
    """One line of ``ss -tani``: the state, both ends, and the ``-i`` details."""

    state: str
    local: tuple[str, int]
    peer: tuple[str, int]
    info: str

    def field(self, name: str) -> str | None:
        """A ``name:value`` of the details (``rto``, ``retrans``, ``wscale``...)."""
        match = re.search(rf"(?:^|\s){re.escape(name)}:(\S+)", self.info)
        return match[1] if match else None

    def flag(self, name: str) -> bool:
        """Whether a bare word (``ts``, ``sack``, ``ecn``) is among the details."""
        return re.search(rf"(?:^|\s){re.escape(name)}(?:\s|$)", self.info) is not None


_STATE_NAMES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN-SENT", "SYN-RECV": "SYN-RECEIVED",
    "FIN-WAIT-1": "FIN-WAIT-1", "FIN-WAIT-2": "FIN-WAIT-2", "TIME-WAIT": "TIME-WAIT",
    "CLOSE-WAIT": "CLOSE-WAIT", "LAST-ACK": "LAST-ACK", "LISTEN": "LISTEN",
    "CLOSING": "CLOSING", "UNCONN": "CLOSED",
}


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def kernel_sockets(netns: str | None) -> list[KernelSocket]:
    """Every TCP socket of Linux's stack in ``netns``, with RFC 9293 state names."""
    prefix = ["ip", "netns", "exec", netns] if netns is not None else []
    text = subprocess.run([*prefix, "ss", "-tanHi"], capture_output=True, text=True,
                          check=True).stdout
    sockets: list[KernelSocket] = []
    current: list[str] | None = None
    info: list[str] = []

    def finish() -> None:
        if current is not None:
            state = _STATE_NAMES.get(current[0], current[0])
            sockets.append(KernelSocket(state, _endpoint(current[3]), _endpoint(current[4]),
                                        " ".join(info)))

    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            info.append(line.strip())
            continue
        finish()
        current, info = line.split(), []
    finish()
    return sockets
