"""ICMP errors from a Linux router, on the virtual NIC (RFC 1191, RFC 9293 s3.9.2.2).

The virtual NIC's namespace (Linux on the far side of the TAP, the engine's gateway)
forwards to a second namespace, a server behind a veth link.  Linux, as a router, then
sends the engine real ICMP errors: fragmentation needed when the link to the server has
a smaller MTU than the server's own interface (the engine sends with DF), and host
unreachable or administratively prohibited for routes of those types.  Root only, as
tests/test_interop.py.
"""

import asyncio
import hashlib
import os
import subprocess
from itertools import count

import pytest
from test_interop import make_nic, run  # noqa: F401 (make_nic is a fixture)

from toe.host.socket_transport import open_engine
from toe.sim.netns import socket_in_netns
from toe.sim.vnic import VirtualNic, can_run_vnic

_WHY_NOT = can_run_vnic()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"virtual NIC: {_WHY_NOT}")

SERVER = "10.0.1.2"
ROUTER_SIDE = "10.0.1.1"
_names = count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def server_behind(make_nic):  # noqa: F811
    """A virtual NIC and a server namespace behind it: the NIC's namespace routes
    10.0.1.0/24 over a veth whose router end has MTU ``link_mtu`` and whose server end
    1500.  Yields ``start(link_mtu) -> (nic, server namespace)``; removes the namespace."""
    made: list[str] = []

    def start(link_mtu: int = 1500) -> tuple[VirtualNic, str]:
        nic = make_nic()
        ns = f"toes{os.getpid()}x{next(_names)}"
        _ip("netns", "add", ns)
        made.append(ns)
        _ip("-n", nic.netns, "link", "add", "rt0", "type", "veth", "peer", "name", "sv0",
            "netns", ns)
        _ip("-n", nic.netns, "link", "set", "rt0", "mtu", str(link_mtu), "up")
        _ip("-n", nic.netns, "addr", "add", f"{ROUTER_SIDE}/24", "dev", "rt0")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", "sv0", "mtu", "1500", "up")
        _ip("-n", ns, "addr", "add", f"{SERVER}/24", "dev", "sv0")
        _ip("-n", ns, "route", "add", "default", "via", ROUTER_SIDE)
        nic.run_in_netns(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        return nic, ns

    yield start
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_path_mtu_from_a_linux_router(server_behind):
    """RFC 1191 s6.5 and RFC 5927 s4.1 against Linux: the server announces MSS 1460 but
    the router's link to it has MTU 1000, so the engine's first full-sized segments
    (DF set) get fragmentation needed with next-hop MTU 1000 from Linux's forwarding
    path.  The engine takes SND.MSS down to 948 (1000 less 40 bytes of headers and 12
    of timestamps), sends the data again in segments that fit, and 2 MiB reach the
    server intact."""
    nic, ns = server_behind(link_mtu=1000)
    data = os.urandom(2 << 20)
    listener = socket_in_netns(ns)
    listener.bind((SERVER, 7000))
    listener.listen()
    listener.settimeout(60)

    def serve() -> bytes:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            chunks = []
            while chunk := conn.recv(1 << 20):
                chunks.append(chunk)
        return b"".join(chunks)

    async def scenario():
        engine = await open_engine(str(nic.socket))
        server = asyncio.create_task(asyncio.to_thread(serve))
        conn = await engine.connect(SERVER, 7000)
        before = (await conn.tcp_info()).snd_mss
        conn.write(data)
        await conn.drain()
        after = (await conn.tcp_info()).snd_mss
        await conn.close()
        got = await server
        counters = await engine.transport.read_counters()
        await engine.transport.close()
        return before, after, got, counters

    before, after, got, counters = run(scenario())
    listener.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert (before, after) == (1448, 948)
    assert counters["rx_icmp_errors"] >= 1 and counters["tcp_icmp_pmtu"] == 1
    assert counters["tcp_icmp_bad_seq"] == 0


def test_unreachable_routes_are_soft_errors(server_behind):
    """RFC 9293 SHLD-25 and MUST-56 against Linux: a connect to a network the router
    has an ``unreachable`` route for (ICMP host unreachable) and one to a ``prohibit``
    route (communication administratively prohibited) are reported as soft errors and
    never abort: the SYN keeps being retransmitted (each gets an ICMP error) until the
    program gives up, and a connect to the server then succeeds at once."""
    nic, ns = server_behind()
    nic.run_in_netns(["ip", "route", "add", "unreachable", "10.0.3.0/24"])
    nic.run_in_netns(["ip", "route", "add", "prohibit", "10.0.4.0/24"])
    listener = socket_in_netns(ns)
    listener.bind((SERVER, 7001))
    listener.listen()

    async def scenario():
        engine = await open_engine(str(nic.socket))
        outcomes = []
        for target in ("10.0.3.5", "10.0.4.5"):
            try:
                await asyncio.wait_for(engine.connect(target, 80), 3.5)
                outcomes.append("connected")
            except TimeoutError:  # wait_for's: the open was still going on
                outcomes.append("still opening")
            except OSError as exc:
                outcomes.append(exc)
        counters = await engine.transport.read_counters()
        conn = await asyncio.wait_for(engine.connect(SERVER, 7001), 10)
        await conn.close()
        await engine.transport.close()
        return outcomes, counters

    outcomes, counters = run(scenario())
    listener.close()
    assert outcomes == ["still opening"] * 2
    # Each SYN (sent at 0, 1 and 3 s) meets an error: at least two per open.
    assert counters["tcp_icmp_soft"] >= 4
    assert counters["tcp_icmp_aborts"] == 0 and counters["tcp_icmp_bad_seq"] == 0
