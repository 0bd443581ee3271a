"""End to end: the host driver's async API (host/api.py) on the simulated engine, against
a reactive scapy peer (sim/tcp_peer.py).  Run through tests/test_tcp.py.

Everything an application sees goes through the real driver, the real host-interface
streams and the gateware; every byte is checked at both ends.
"""

import random

import cocotb
from cocotb.triggers import Combine, Timer
from scapy.layers.l2 import ARP

from toe.host.api import Engine
from toe.host.framing import recv_message, send_message
from toe.sim.host_port import HostPort
from toe.sim.host_transport import CocotbTransport
from toe.sim.tcp_peer import ReactivePeer
from toe.sim.testbench import MacTestbench

TICK_CYCLES = 10
US = TICK_CYCLES * 10


async def start(dut) -> tuple[MacTestbench, Engine, ReactivePeer]:
    tb = MacTestbench(dut, tick_cycles=TICK_CYCLES)
    host = HostPort(dut, tb.config)
    await tb.reset()
    assert ARP in (await tb.recv(timeout_ns=20_000)).ether
    engine = Engine(CocotbTransport(host, tb), tb.config)
    await engine.write_keys()  # random secret keys, as an application starts (MUST-9)
    return tb, engine, ReactivePeer(tb, tb.config)


async def echo(conn) -> int:
    """Echo until the peer's FIN, then close; returns the bytes echoed."""
    total = 0
    while data := await conn.read(4096):
        total += len(data)
        conn.write(data)
        await conn.drain()
    await conn.close()
    return total


@cocotb.test()
async def test_echo_server_random_sizes(dut):
    """Four peers at once send random-sized writes to an echo server written with the
    driver API, then half-close (RFC 9293 s3.6: the other direction keeps flowing); each
    gets back exactly what it sent, then the server's FIN; the server's connections end
    through LAST-ACK and are released."""
    tb, engine, peer = await start(dut)
    listener = await engine.listen(7, backlog=8)
    rng = random.Random(1)
    payloads = {}
    conns = []
    for k in range(4):
        conn = peer.connect(port=42000 + k, engine_port=7, isn=rng.getrandbits(32))
        payloads[conn] = rng.randbytes(rng.randrange(1, 6000))
        conns.append(conn)
    servers = []
    for _ in conns:
        server = await listener.accept()
        servers.append(cocotb.start_soon(echo(server)))
    for conn in conns:
        data = payloads[conn]
        at = 0
        while at < len(data):
            n = rng.randrange(1, 1500)
            conn.send(data[at : at + n])
            at += n
        conn.close()
    for conn in conns:
        await conn.wait(lambda c=conn: c.fin_received.is_set())
        assert bytes(conn.received) == payloads[conn]
    totals = [await task for task in servers]
    assert sorted(totals) == sorted(len(p) for p in payloads.values())
    await tb.finish()


@cocotb.test()
async def test_client_request_response(dut):
    """The driver connects out (active open with ARP resolution), writes a request and
    half-closes; the peer answers and closes; the client reads to EOF, and the engine,
    which closed first, goes through TIME-WAIT (2 MSL) before the id is released."""
    tb, engine, peer = await start(dut)
    server = peer.accept_from(port=8080, engine_port=50001, isn=99)
    conn = await engine.connect(peer.ip, 8080, local_port=50001)
    request = b"GET / HTTP/1.1\r\nHost: peer\r\n\r\n"
    conn.write(request)
    await conn.shutdown()
    await server.wait(lambda: server.fin_received.is_set())
    assert bytes(server.received) == request
    response = random.Random(2).randbytes(5000)
    server.send(response)
    server.close()
    got = b""
    while data := await conn.read():
        got += data
    assert got == response
    await conn.wait_acked()
    await conn.close()
    start_ns = tb.now_ns
    await conn.wait_closed()
    waited = (tb.now_ns - start_ns) / US
    assert waited >= 2 * tb.config.msl_us - 50, waited  # TIME-WAIT held (MUST-13)
    await tb.finish()


@cocotb.test()
async def test_connect_refused(dut):
    """RFC 9293 s3.10.7.3: a RST answering our SYN is "connection refused" for the
    application: ConnectionRefusedError."""
    tb, engine, peer = await start(dut)
    refusing = peer.accept_from(port=9, engine_port=50002)
    refusing.refuse = True
    try:
        await engine.connect(peer.ip, 9, local_port=50002)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("connect() did not raise ConnectionRefusedError")
    await tb.finish()


@cocotb.test()
async def test_framed_messages(dut):
    """Length-prefixed framing (host/framing.py) recovers message boundaries that the
    byte stream does not keep (the "sticky packet" problem): the peer sends messages cut
    and glued at random, the server answers each one."""
    tb, engine, peer = await start(dut)
    listener = await engine.listen(9000)
    client = peer.connect(port=42100, engine_port=9000)
    server = await listener.accept()
    rng = random.Random(3)
    messages = [rng.randbytes(rng.randrange(0, 700)) for _ in range(12)]
    stream = b"".join(len(m).to_bytes(4, "big") + m for m in messages)
    at = 0
    while at < len(stream):
        n = rng.randrange(1, 300)
        client.send(stream[at : at + n])
        at += n
    for message in messages:
        got = await recv_message(server)
        assert got == message
        await send_message(server, got[::-1])
    expected = b"".join(len(m).to_bytes(4, "big") + m[::-1] for m in messages)
    await client.wait(lambda: len(client.received) >= len(expected))
    assert bytes(client.received) == expected
    client.close()
    assert await recv_message(server) is None  # clean end at a boundary
    await server.close()
    await Combine(Timer(10, "ns"))
    await tb.finish()
