"""An HTTP/1.1 server on the offloaded engine that serves the files of one directory.

    python -m toe.host.examples.http_server --socket build/vnic/toe.sock --root site/ --port 80

GET and HEAD of regular files under ``--root`` (RFC 9110 s9.3.1/s9.3.2), with
Content-Length, persistent connections (RFC 9112 s9.3: HTTP/1.1 keeps the connection
open unless ``Connection: close``) and 400/404/405/505 answers.  The body streams from
the file in 64 KiB pieces with the driver's flow control (``drain``).
"""

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from toe.host.api import Connection, IncompleteReadError
from toe.host.socket_transport import open_engine

MAX_HEADER = 16384
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           505: "HTTP Version Not Supported"}


def _response_head(status: int, length: int, content_type: str, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Length: {length}",
             f"Content-Type: {content_type}", "Server: toe"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _resolve(root: Path, target: str) -> Path | None:
    path = unquote(urlsplit(target).path)
    candidate = (root / path.lstrip("/")).resolve()
    if candidate.is_dir():
        candidate = candidate / "index.html"
    if root not in candidate.parents and candidate != root or not candidate.is_file():
        return None
    return candidate


async def handle(conn: Connection, root: Path) -> int:
    """Answer requests until the client closes or asks to; return the requests served."""
    served = 0
    try:
        while True:
            try:
                head = await conn.readuntil(b"\r\n\r\n")
            except IncompleteReadError:
                break  # the client closed between requests
            if len(head) > MAX_HEADER:
                break
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            close = headers.get("connection", "").lower() == "close"
            body = b""
            if len(parts) != 3:
                status, body, close = 400, b"bad request\n", True
            elif not parts[2].startswith("HTTP/1."):
                status, body, close = 505, b"HTTP/1.x only\n", True
            elif parts[0] not in ("GET", "HEAD"):
                status, body = 405, b"GET and HEAD only\n"
            else:
                close = close or parts[2] == "HTTP/1.0"
                path = _resolve(root, parts[1])
                if path is None:
                    status, body = 404, b"not found\n"
                else:
                    size = path.stat().st_size
                    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    conn.write(_response_head(200, size, kind, close))
                    if parts[0] == "GET":
                        with open(path, "rb") as f:
                            while chunk := f.read(65536):
                                conn.write(chunk)
                                await conn.drain()
                    await conn.drain()
                    served += 1
                    if close:
                        break
                    continue
            conn.write(_response_head(status, len(body), "text/plain", close) + body)
            await conn.drain()
            served += 1
            if close:
                break
        await conn.close()
        await conn.wait_closed()
    except ConnectionError:
        pass
    return served


async def serve(socket_path: str, root: Path, port: int, count: int | None) -> None:
    engine = await open_engine(socket_path)
    listener = await engine.listen(port, backlog=16)
    print(f"HTTP server on port {port}, serving {root}", flush=True)
    tasks = set()
    accepted = 0
    while count is None or accepted < count:
        conn = await listener.accept()
        accepted += 1
        task = asyncio.create_task(handle(conn, root))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="the virtual NIC's socket")
    parser.add_argument("--root", default=".", help="directory to serve")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--count", type=int, help="exit after this many connections")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.socket, Path(args.root).resolve(), args.port, args.count))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
