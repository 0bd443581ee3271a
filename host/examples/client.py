"""A client on the offloaded engine: connect out, send, half-close, read to the end.

    python -m toe.host.examples.client --socket build/vnic/toe.sock 10.0.0.1 8000 --send request.bin

Sends the file (or standard input with ``--send -``, or nothing), half-closes its side
(RFC 9293 s3.6: the FIN follows the data, the peer's data keeps flowing), writes
everything the server sends until its FIN to standard output (or ``--out``), waits
until every byte it sent was acknowledged, and closes.  The client closed first, so the
engine holds TIME-WAIT; the program does not wait the 60 s out.  (When it exits the
virtual NIC resets the engine, as a NIC is reset when its owner goes away.)
"""

import argparse
import asyncio
import hashlib
import sys

from toe.host.socket_transport import open_engine


async def run(socket_path: str, host: str, port: int, send: str | None, out: str | None) -> dict:
    engine = await open_engine(socket_path)
    conn = await engine.connect(host, port)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    nsent = nreceived = 0

    async def writer() -> None:
        nonlocal nsent
        if send is not None:
            source = sys.stdin.buffer if send == "-" else open(send, "rb")
            with source:
                while chunk := source.read(65536):
                    conn.write(chunk)
                    sent.update(chunk)
                    nsent += len(chunk)
                    await conn.drain()
        await conn.shutdown()

    sink = sys.stdout.buffer if out in (None, "-") else open(out, "wb")
    task = asyncio.create_task(writer())
    while data := await conn.read(65536):
        received.update(data)
        nreceived += len(data)
        sink.write(data)
    await task
    await conn.wait_acked()
    await conn.close()  # the engine holds TIME-WAIT; the id is released after it
    if sink is sys.stdout.buffer:
        sink.flush()
    else:
        sink.close()
    return {"sent": nsent, "received": nreceived, "sent_sha256": sent.hexdigest(),
            "received_sha256": received.hexdigest()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the virtual NIC's socket")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--send", help="file to send (- for standard input)")
    parser.add_argument("--out", help="where the server's bytes go (default: standard output)")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.socket, args.host, args.port, args.send, args.out))
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
