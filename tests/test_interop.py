"""The engine against the Linux kernel's TCP, on the virtual NIC (TAP in a namespace).

Each test starts its own virtual NIC (``sim.vnic.VirtualNic``) in a network namespace
of its own: the Verilated engine on one end of a TAP device, Linux's stack on the
other.  The engine's side is the host driver over the NIC's socket
(``host.socket_transport``); Linux's side is ordinary sockets created inside the
namespace (``sim.netns``).  The tests need root (namespaces, TAP devices) and skip
without it.
"""

import asyncio
import dataclasses
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from toe.hdl.tcp.engine import TRACE_SOURCES, trace_layout
from toe.host.socket_transport import open_engine
from toe.sim.bench_vnic import (
    TCPI_OPT_SACK,
    TCPI_OPT_TIMESTAMPS,
    TCPI_OPT_WSCALE,
    bulk_data,
    engine_to_kernel,
    kernel_to_engine,
)
from toe.sim.netns import kernel_sockets, socket_in_netns
from toe.sim.state_coverage import event_name
from toe.sim.vnic import VNIC_CONFIG, Impairment, VirtualNic, can_run_vnic, netem_available

_WHY_NOT = can_run_vnic()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"virtual NIC: {_WHY_NOT}")

ENGINE = "10.0.0.2"
KERNEL = "10.0.0.1"
TIMEOUT = 240
_counter = iter(range(1000))


@pytest.fixture
def make_nic(tmp_path) -> Iterator:
    """Start virtual NICs in fresh namespaces; stop them and remove the namespaces."""
    nics: list[VirtualNic] = []

    def start(**options) -> VirtualNic:
        n = next(_counter)
        nic = VirtualNic(netns=f"toet{os.getpid()}x{n}", tap="toe0",
                         socket=tmp_path / f"nic{n}.sock", **options)
        nic.start()
        nics.append(nic)
        return nic

    yield start
    for nic in nics:
        nic.stop()


def run(coro) -> object:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def kernel_socket(nic: VirtualNic) -> socket.socket:
    sock = socket_in_netns(nic.netns)
    sock.settimeout(60)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


class EngineTrace:
    """The engine's state transitions, from its trace port over the NIC's socket."""

    def __init__(self, engine):
        self.records: list[tuple[str, str, str]] = []
        engine.transport.subscribe_trace(self._record)

    def _record(self, record) -> None:
        view = trace_layout.from_bits(record.bits)
        source = TRACE_SOURCES[view.source]
        before, after = view.before.name.replace("_", "-"), view.after.name.replace("_", "-")
        if before != after:
            self.records.append((before, event_name(source, view.flags, bool(view.data),
                                                    view.op, bool(view.icmp)), after))

    async def reached(self, state: str, timeout: float = 10) -> None:
        """Wait until the engine entered ``state``."""
        deadline = time.monotonic() + timeout
        while not any(after == state for _, _, after in self.records):
            assert time.monotonic() < deadline, f"engine never reached {state}: {self.records}"
            await asyncio.sleep(0.01)

    def states(self) -> list[str]:
        """The states passed through, in order (one connection at a time)."""
        out: list[str] = []
        for before, _, after in self.records:
            if not out:
                out.append(before)
            out.append(after)
        return out


def kernel_states(nic: VirtualNic, port: int) -> list[str]:
    """States of the kernel's sockets with ``port`` at either end (``ss -tan``)."""
    return [s.state for s in kernel_sockets(nic.netns)
            if port in (s.local[1], s.peer[1]) and s.state != "LISTEN"]


def assert_nothing_stuck(nic: VirtualNic) -> None:
    """The kernel's view (``ss``): no socket left in FIN-WAIT-2, CLOSE-WAIT or LAST-ACK."""
    deadline = time.monotonic() + 5
    while True:
        stuck = [s for s in kernel_sockets(nic.netns)
                 if s.state in ("FIN-WAIT-2", "CLOSE-WAIT", "LAST-ACK", "CLOSING")]
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not stuck, f"kernel sockets stuck: {stuck}"


# ---------------------------------------------------------------- both directions


def test_kernel_client_engine_server_half_close(make_nic):
    """Linux connects to the engine, sends, and half-closes (RFC 9293 s3.6): the engine
    reads to the FIN, then sends its own data with Linux in FIN-WAIT-2, then closes.
    Linux closed first so Linux holds TIME-WAIT; the engine goes CLOSE-WAIT -> LAST-ACK
    -> CLOSED (RFC 9293 s3.6 case 1, MUST-13 on the kernel's side)."""
    nic = make_nic()
    up, down = random.randbytes(300_000), random.randbytes(500_000)

    def kernel() -> bytes:
        with kernel_socket(nic) as sock:
            sock.connect((ENGINE, 5001))
            sock.sendall(up)
            sock.shutdown(socket.SHUT_WR)
            got = recv_all(sock)
            port = sock.getsockname()[1]
        return got, port

    async def scenario():
        engine = await open_engine(str(nic.socket))
        trace = EngineTrace(engine)
        listener = await engine.listen(5001)
        kernel_side = asyncio.create_task(asyncio.to_thread(kernel))
        conn = await listener.accept()
        received = await conn.read()
        assert received == up, "bytes from Linux lost, duplicated or reordered"
        conn.write(down)
        await conn.close()
        await conn.wait_closed()
        got, port = await kernel_side
        await asyncio.sleep(0.05)
        await engine.transport.close()
        return got, port, trace

    got, port, trace = run(scenario())
    assert hashlib.sha256(got).digest() == hashlib.sha256(down).digest()
    assert trace.states() == ["CLOSED", "LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT",
                              "LAST-ACK", "CLOSED"]
    assert kernel_states(nic, port) == ["TIME-WAIT"], "the side that closed first waits"
    assert_nothing_stuck(nic)


def test_engine_client_kernel_server_engine_closes_first(make_nic):
    """The engine connects out to Linux, sends a request and half-closes; Linux answers
    after the FIN (data flowing to the half-closed side) and closes.  The engine closed
    first: it passes FIN-WAIT-1, FIN-WAIT-2 and holds TIME-WAIT (RFC 9293 s3.6); Linux
    ends with no socket left (no stuck CLOSE-WAIT or LAST-ACK)."""
    nic = make_nic()
    request, reply = random.randbytes(200_000), random.randbytes(400_000)
    server = kernel_socket(nic)
    server.bind((KERNEL, 6001))
    server.listen()

    def kernel() -> bytes:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            got = recv_all(conn)  # up to the engine's FIN
            conn.sendall(reply)
        return got

    async def scenario():
        engine = await open_engine(str(nic.socket))
        trace = EngineTrace(engine)
        kernel_side = asyncio.create_task(asyncio.to_thread(kernel))
        conn = await engine.connect(KERNEL, 6001)
        conn.write(request)
        await conn.shutdown()
        answer = await conn.read()
        await conn.close()  # released only after TIME-WAIT (60 s): not waited for
        got = await kernel_side
        await trace.reached("TIME-WAIT")
        await engine.transport.close()
        return answer, got, trace

    answer, got, trace = run(scenario())
    server.close()
    assert got == request
    assert answer == reply
    assert trace.states() == ["CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1",
                              "FIN-WAIT-2", "TIME-WAIT"]
    assert kernel_states(nic, 6001) == []
    assert_nothing_stuck(nic)


def test_simultaneous_close(make_nic):
    """Both ends send FIN before seeing the other's (RFC 9293 s3.6 case 2, figure 13):
    the NIC holds the engine's frames back while Linux sends its FIN, so the FINs cross
    on the wire.  Both ends pass CLOSING and hold TIME-WAIT."""
    nic = make_nic()
    server = kernel_socket(nic)
    server.bind((KERNEL, 6002))
    server.listen()
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def kernel_accept() -> None:
        conn, _ = server.accept()
        conn.settimeout(60)
        assert conn.recv(5) == b"hello"
        conn.sendall(b"world")
        accepted.append(conn)
        ready.set()

    async def scenario():
        engine = await open_engine(str(nic.socket))
        trace = EngineTrace(engine)
        kernel_side = asyncio.create_task(asyncio.to_thread(kernel_accept))
        conn = await engine.connect(KERNEL, 6002)
        conn.write(b"hello")
        assert await conn.readexactly(5) == b"world"
        await kernel_side
        await conn.wait_acked()
        engine.transport.hold_wire(True)
        await conn.shutdown()                   # the engine's FIN waits in the NIC
        await asyncio.sleep(0.1)
        accepted[0].shutdown(socket.SHUT_WR)    # Linux's FIN reaches the engine
        await asyncio.sleep(0.1)
        engine.transport.hold_wire(False)       # the engine's FIN (and ACK) go out
        assert await conn.read() == b""
        await conn.close()
        local_port = conn.local_port
        await trace.reached("TIME-WAIT")
        await engine.transport.close()
        return trace, local_port

    trace, _ = run(scenario())
    assert trace.states() == ["CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "CLOSING",
                              "TIME-WAIT"]
    assert kernel_states(nic, 6002) == ["TIME-WAIT"]
    accepted[0].close()
    server.close()
    assert_nothing_stuck(nic)


# ---------------------------------------------------------------- the examples


def _example(nic: VirtualNic, module: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", f"toe.host.examples.{module}", "--socket",
                             str(nic.socket), *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the example prints one line when it listens
    assert line, f"{module} did not start"
    return proc


def test_curl_fetches_file_from_http_example(make_nic, tmp_path):
    """curl (Linux's TCP) fetches files from the HTTP/1.1 example served by the engine:
    byte-exact, two requests on one persistent connection (RFC 9112 s9.3), and a 404."""
    nic = make_nic()
    root = tmp_path / "site"
    root.mkdir()
    blob = random.randbytes(3_000_000)
    (root / "blob.bin").write_bytes(blob)
    (root / "index.html").write_text("<h1>served by the engine</h1>\n")
    server = _example(nic, "http_server", "--root", str(root), "--port", "8080", "--count", "2")
    try:
        out = tmp_path / "blob.out"
        fetch = nic.run_in_netns(["curl", "-sS", "--max-time", "120", "-o", str(out),
                                  f"http://{ENGINE}:8080/blob.bin", "-o", str(tmp_path / "i"),
                                  f"http://{ENGINE}:8080/", "-w", "%{http_code} %{num_connects}\n"])
        assert fetch.stdout.split() == ["200", "1", "200", "0"], fetch.stdout
        assert out.read_bytes() == blob
        assert (tmp_path / "i").read_text() == "<h1>served by the engine</h1>\n"
        missing = nic.run_in_netns(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://{ENGINE}:8080/nothing-here"])
        assert missing.stdout == "404"
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    assert_nothing_stuck(nic)


def test_echo_example_with_kernel_clients(make_nic):
    """The echo example (RFC 862) serves four concurrent Linux clients: each gets back
    exactly what it sent, and each half-close is answered by the engine's FIN."""
    nic = make_nic()
    server = _example(nic, "echo_server", "--port", "7", "--count", "4")
    payloads = [random.randbytes(n) for n in (1, 1000, 100_000, 1_000_000)]

    def client(data: bytes) -> bytes:
        with kernel_socket(nic) as sock:
            sock.connect((ENGINE, 7))
            sender = threading.Thread(target=lambda: (sock.sendall(data),
                                                      sock.shutdown(socket.SHUT_WR)))
            sender.start()
            got = recv_all(sock)
            sender.join()
        return got

    try:
        results = [None] * len(payloads)
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, client(payloads[i])))
                   for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert results == payloads
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    assert_nothing_stuck(nic)


def test_client_example_to_kernel_server(make_nic, tmp_path):
    """The client example connects out to a Linux server, sends a file, half-closes and
    reads the server's answer to its FIN (RFC 9293 s3.6)."""
    nic = make_nic()
    request = random.randbytes(250_000)
    (tmp_path / "request.bin").write_bytes(request)
    server = kernel_socket(nic)
    server.bind((KERNEL, 8000))
    server.listen()
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            data = recv_all(conn)
            got.append(data)
            conn.sendall(hashlib.sha256(data).hexdigest().encode() + data[::-1])

    thread = threading.Thread(target=serve)
    thread.start()
    out = tmp_path / "answer.bin"
    subprocess.run([sys.executable, "-m", "toe.host.examples.client", "--socket", str(nic.socket),
                    KERNEL, "8000", "--send", str(tmp_path / "request.bin"), "--out", str(out)],
                   check=True, timeout=TIMEOUT, capture_output=True)
    thread.join(10)
    server.close()
    assert got == [request]
    assert out.read_bytes() == hashlib.sha256(request).hexdigest().encode() + request[::-1]
    assert_nothing_stuck(nic)


# ---------------------------------------------------------------- bulk, options, loss


def _bulk(nic: VirtualNic, size: int, port: int) -> dict:
    """``size`` bytes Linux -> engine on one connection (port ``port``), then ``size``
    bytes engine -> Linux on another (``port + 1``), with :mod:`sim.bench_vnic`'s
    transfers; returns each direction's SHA-256 and ``ss -ti``, the engine's counters
    and the NIC's statistics."""
    chunks = bulk_data(size, seed=port)
    seen: dict = {"expected_sha256": hashlib.sha256(b"".join(chunks)).hexdigest()}

    async def scenario():
        engine = await open_engine(str(nic.socket))
        for way, transfer, at in (("up", kernel_to_engine, port),
                                  ("down", engine_to_kernel, port + 1)):
            result = await transfer(engine, nic, chunks, at)
            seen[way], seen[f"{way}_sha256"] = result["kernel"], result["sha256"]
            seen[f"{way}_tcpi_options"] = result["tcpi_options"]
            seen[f"{way}_bytes"] = result["bytes"]
        seen["counters"] = await engine.transport.read_counters()
        seen["stats"] = await engine.transport.stats()
        await engine.transport.close()

    run(scenario())
    return seen


@pytest.mark.slow  # 128 MiB through the model: make test-all
def test_bulk_64mib_each_way_kernel_options(make_nic, tmp_path):
    """64 MiB each way, SHA-256 checked, with window scaling, timestamps and SACK agreed
    (RFC 7323 s2.2, s3.2; RFC 2018 s2): the engine's SYN-ACK answers Linux's SYN with
    MSS, timestamps (TSecr = Linux's TSval), window scale (the shift of its 256 KiB
    ring) and SACK-permitted; Linux's ``TCP_INFO`` has timestamps, SACK and window
    scale on both connections (also the one the engine's SYN opened; ``ss -ti`` shows
    the shifts), and every later segment of Linux carries timestamps."""
    nic = make_nic(pcap=tmp_path / "handshake.pcap")
    seen = _bulk(nic, 64 << 20, 9000)
    assert seen["up_bytes"] == seen["down_bytes"] == 64 << 20
    assert seen["up_sha256"] == seen["down_sha256"] == seen["expected_sha256"]
    frames = rdpcap(str(tmp_path / "handshake.pcap"), count=40)
    syns = [f[TCP] for f in frames if TCP in f and f[TCP].flags.S]
    kernel_syn = next(s for s in syns if s.dport == 9000 and not s.flags.A)
    engine_synack = next(s for s in syns if s.sport == 9000 and s.flags.A)
    offered = dict(kernel_syn.options)
    assert {"MSS", "WScale", "Timestamp", "SAckOK"} <= offered.keys()
    answered = [(n, v) for n, v in engine_synack.options if n not in ("NOP", "EOL")]
    assert [n for n, _ in answered] == ["MSS", "Timestamp", "WScale", "SAckOK"]
    assert dict(answered)["Timestamp"][1] == offered["Timestamp"][0]
    assert dict(answered)["WScale"] == VNIC_CONFIG.rcv_wscale == 2
    agreed = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    for way in ("up", "down"):
        (sock,) = seen[way]
        assert seen[f"{way}_tcpi_options"] & agreed == agreed, seen[f"{way}_tcpi_options"]
        assert sock.field("wscale") == f"{VNIC_CONFIG.rcv_wscale},{offered['WScale']}", sock
    after = [f[TCP] for f in frames if TCP in f and f[TCP].dport == 9000 and not f[TCP].flags.S]
    assert after and all(any(name == "Timestamp" for name, _ in t.options) for t in after)
    assert_nothing_stuck(nic)


def _impaired_bulk(make_nic, impairment: Impairment, netem: list[str], size: int) -> dict:
    """A bulk transfer each way over an impaired wire: netem on Linux's side when the
    kernel has it, and the NIC's own impairment on both directions.  ``TOE_BULK_MIB``
    in the environment sets another size (``make soak SOAK_MIB=64``), and
    ``TOE_SOAK_RUN`` (the soak's run number) another seed, so that each run of a soak
    meets its own pattern of losses."""
    size = int(os.environ.get("TOE_BULK_MIB", "0")) << 20 or size
    impairment = dataclasses.replace(
        impairment, seed=impairment.seed + 1000 * int(os.environ.get("TOE_SOAK_RUN", "0")))
    nic = make_nic(impairment=impairment)
    if netem_available(nic.netns, nic.tap):  # pragma: no cover - kernels with sch_netem
        nic.run_in_netns(["tc", "qdisc", "add", "dev", nic.tap, "root", "netem", *netem])
    nstat = ["nstat", "-az", "TcpRetransSegs"]
    before = int(nic.run_in_netns(nstat).stdout.split()[-2])
    seen = _bulk(nic, size, 9100)
    seen["kernel_retransmits"] = int(nic.run_in_netns(nstat).stdout.split()[-2]) - before
    assert seen["up_sha256"] == seen["down_sha256"] == seen["expected_sha256"]
    assert_nothing_stuck(nic)
    return seen


def test_bulk_with_loss_and_duplication(make_nic):
    """1 % loss and 1 % duplication each way: 2 MiB each way arrive byte-exact (RFC 9293
    s3.4 and s3.10.7.4: sequence numbers drop duplicates; lost segments are sent again,
    by fast retransmit, RFC 5681 s3.2, or after a timeout, RFC 6298 s5), and the
    retransmission counters of both ends account for the losses."""
    seen = _impaired_bulk(make_nic, Impairment(loss=0.01, duplicate=0.01, seed=7),
                          ["loss", "1%", "duplicate", "1%"], 2 << 20)
    stats, counters = seen["stats"], seen["counters"]
    assert stats["impaired_dropped"] > 0 and stats["impaired_duplicated"] > 0
    assert counters["tcp_fast_retransmits"] > 0, "no loss was repaired by fast retransmit"
    assert seen["kernel_retransmits"] > 0, "Linux resent nothing"


def test_bulk_with_reordering(make_nic):
    """2 % of frames reordered each way: 2 MiB each way arrive byte-exact.  RFC 9293
    SHLD-31: the engine holds text beyond RCV.NXT (hdl/tcp/reassembly.py), so a
    reordered segment fills its hole instead of being sent again."""
    seen = _impaired_bulk(make_nic, Impairment(reorder=0.02, seed=7),
                          ["delay", "1ms", "reorder", "2%"], 2 << 20)
    assert seen["stats"]["impaired_reordered"] > 0
    assert seen["counters"]["tcp_out_of_order"] > 0
    assert seen["counters"]["tcp_ooo_dropped"] == 0


def test_bulk_with_loss_duplication_reordering(make_nic):
    """1 % loss, 1 % duplication and 2 % reordering together, 4 MiB each way, byte-exact
    (RFC 9293 s3.4, s3.10.7.4 with SHLD-31; RFC 6298 s5)."""
    seen = _impaired_bulk(make_nic,
                          Impairment(loss=0.01, duplicate=0.01, reorder=0.02, seed=11),
                          ["loss", "1%", "duplicate", "1%", "delay", "1ms", "reorder", "2%"],
                          4 << 20)
    assert seen["counters"]["tcp_out_of_order"] > 0


def test_many_kernel_connections(make_nic):
    """Forty Linux clients, twenty at a time, against one listener of the engine (backlog
    16): every connection is accepted, echoes its bytes and closes; ids are reused."""
    nic = make_nic()

    def client(i: int) -> bool:
        data = random.randbytes(5000 + i)
        with kernel_socket(nic) as sock:
            sock.connect((ENGINE, 7007))
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            return recv_all(sock) == data

    async def serve(listener, count: int) -> None:
        async def echo(conn) -> None:
            conn.write(await conn.read())
            await conn.close()
            await conn.wait_closed()

        tasks = [asyncio.create_task(echo(await listener.accept())) for _ in range(count)]
        await asyncio.gather(*tasks)

    async def scenario():
        engine = await open_engine(str(nic.socket))
        listener = await engine.listen(7007, backlog=16)
        results = []
        for _ in range(2):
            server = asyncio.create_task(serve(listener, 20))
            results += await asyncio.gather(*(asyncio.to_thread(client, i) for i in range(20)))
            await server
        await engine.transport.close()
        return results

    assert run(scenario()) == [True] * 40
    assert_nothing_stuck(nic)


def test_vnic_cleans_up(make_nic):
    """Stopping the virtual NIC removes the TAP and the namespace it created."""
    nic = make_nic()
    netns = nic.netns
    assert Path(f"/var/run/netns/{netns}").exists()
    nic.stop()
    assert not Path(f"/var/run/netns/{netns}").exists()
    assert nic.stats["cycles"] > 0 and nic.stats["frames_out"] > 0  # the ARP announcement
