"""A loopback upstream that writes exactly the bytes a test scripts, for the upstream HTTP client's tests.

Each server is an asyncio server written for its test: it counts the connections it accepts and
the requests it reads, and answers with raw bytes (framing, early closes, silences, TLS cut short),
so what is tested is the client's handling of the wire, not a library's idea of HTTP.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Upstream:
    port: int = 0
    scheme: str = "http"
    connections: int = 0  # accepted
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: int = 0  # connections whose client end closed first

    def url(self, path: str = "/x", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


Serve = Callable[[Upstream, asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(upstream: Upstream, reader: asyncio.StreamReader) -> bytes | None:
    """One whole request (head and body), or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        upstream.closed_by_client += 1
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    request = head + await reader.readexactly(length)
    upstream.requests.append(request)
    return request


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = chunked(b"data: {}\n\n")[: -len(b"0\r\n\r\n")]  # one SSE event as one chunk, no last chunk


def answer_once(reply: bytes) -> Serve:
    """Answer one request, then close the connection."""

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(reply)

    return serve


def keep_answering(reply: bytes) -> Serve:
    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while await read_request(upstream, reader) is not None:
            writer.write(reply)

    return serve


def silent_after(prefix: bytes, *drip: bytes, pause_s: float) -> Serve:
    """Send ``prefix``, then each of ``drip`` after a pause, then nothing until the client closes."""

    async def serve(upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await read_request(upstream, reader)
        writer.write(prefix)
        for piece in drip:
            await asyncio.sleep(pause_s)
            if reader.at_eof():
                return  # the client gave up
            writer.write(piece)
        await read_request(upstream, reader)  # silent until the client closes

    return serve


@asynccontextmanager
async def raw_upstream(
    serve: Serve, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Upstream]:
    upstream = Upstream(scheme="https" if tls else "http")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        try:
            await serve(upstream, reader, writer, upstream.connections)
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, host, port, ssl=tls)
    upstream.port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


@contextmanager
def unanswering_socket(family: socket.AddressFamily, host: str, port: int = 0) -> Iterator[int]:
    """A listening socket whose accept queue is full: a new connection's SYN goes unanswered.

    Yields its port."""
    listener = socket.socket(family)
    listener.bind((host, port))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket(family)
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect((host, port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_path, key_path


def rss_bytes() -> int:
    """This process's resident memory, from /proc/self/statm (pages)."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def raw_upstream_thread(serve: Serve) -> Iterator[Upstream]:
    """``raw_upstream`` on an event loop of its own thread, for a gateway that runs in another."""
    ready: list[Upstream] = []
    stop: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()

    async def main() -> None:
        stop.append(asyncio.Event())
        async with raw_upstream(serve) as upstream:
            ready.append(upstream)
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not ready:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the raw upstream did not start")
        time.sleep(0.01)
    try:
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=10)
        loop.close()
