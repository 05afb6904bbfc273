"""A webhook receiver on loopback for the alerts tests: answers from a script, remembers what it got."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    # (status, body) for each request in turn; the last one answers every request after.
    script: list[tuple[int, bytes]] = field(default_factory=lambda: [(200, b"ok")])
    received: list[Received] = field(default_factory=list)


@contextmanager
def receiver(script: list[tuple[int, bytes]] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", script=script or [(200, b"ok")])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                index = min(len(state.received), len(state.script)) - 1
                status, answer = state.script[index]
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/glasskey"
    # A short poll: shutdown() waits for it, and every test ends with one.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
