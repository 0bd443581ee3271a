"""An echo server (RFC 862) on the offloaded engine.

    python -m toe.host.examples.echo_server --socket build/vnic/toe.sock --port 7

Every connection gets back every byte it sends; when the peer half-closes, the server
sends what is left, then closes its side too.  Connections are served concurrently.
"""

import argparse
import asyncio
import sys

from toe.host.api import Connection
from toe.host.socket_transport import open_engine


async def echo(conn: Connection) -> int:
    """Echo until the peer's FIN, then close; return the bytes echoed."""
    total = 0
    try:
        while data := await conn.read(65536):
            conn.write(data)
            await conn.drain()
            total += len(data)
        await conn.close()
        await conn.wait_closed()
    except ConnectionError:
        pass
    return total


async def serve(socket_path: str, port: int, count: int | None) -> None:
    engine = await open_engine(socket_path)
    listener = await engine.listen(port, backlog=16)
    print(f"echo server on {engine.config.ip_addr >> 24}.{engine.config.ip_addr >> 16 & 255}."
          f"{engine.config.ip_addr >> 8 & 255}.{engine.config.ip_addr & 255}:{port}", flush=True)
    tasks = set()
    served = 0
    while count is None or served < count:
        conn = await listener.accept()
        served += 1
        task = asyncio.create_task(echo(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the virtual NIC's socket")
    parser.add_argument("--port", type=int, default=7)
    parser.add_argument("--count", type=int, help="exit after serving this many connections")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.socket, args.port, args.count))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
