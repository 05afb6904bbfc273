"""A loopback TCP forwarder in a process of its own, for tests that take a dependency away and back.

``python tests/tcp_forwarder.py LISTEN_PORT TARGET_PORT`` forwards every connection to
127.0.0.1:TARGET_PORT until the process is killed, which drops every connection at once: to the
process that connected through it, the server went down.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def serve(listen_port: int, target_port: int) -> None:
    listener = socket.create_server(("127.0.0.1", listen_port))
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(("127.0.0.1", target_port))
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


class Forwarder:
    """The forwarder as a child process: ``start`` (again after ``cut``) and ``cut``."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = str(Path(__file__).resolve())
        self.process = subprocess.Popen([sys.executable, script, str(self.listen_port), str(self.target_port)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.listen_port), timeout=1):
                return
            time.sleep(0.02)
        raise RuntimeError("the forwarder did not start")

    def cut(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
