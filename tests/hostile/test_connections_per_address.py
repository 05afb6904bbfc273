"""Issue 18 #9: open connections are capped per peer address (``serving_protocol.PeerConnections``).

Idle connections, which no request in flight stands for, are what ``serving.AddressCap`` cannot
see: ``CAP`` of them from one address are held open, the next one from that address is answered
503 ``source: client`` and closed, while another address is still served; closing one frees a
place. The loopback peer uvicorn trusts as a proxy (127.0.0.1) is not counted. The gateway is
served with the protocol ``glasskey serve`` gives uvicorn.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from conftest_helpers import make_settings
from gateway_fixtures import Gateway, _gateway
from glasskey.cli.base import server_options
from glasskey.services import build_services

CAP = 3
CROWDED = "127.0.0.2"  # the whole of 127.0.0.0/8 is loopback: one address per client
OTHER = "127.0.0.3"


@pytest.fixture(scope="module")
def capped_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = make_settings(tmp_path_factory.mktemp("peers"), connections_per_address_max=CAP)
    yield from _gateway(build_services(settings), http=server_options(settings)["http"])


def _connect(gateway: Gateway, source: str) -> socket.socket:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    return sock


def _answer(sock: socket.socket, wait_seconds: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (or the wait ends)."""
    sock.settimeout(wait_seconds)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n")
    return _answer(sock)


def test_one_idle_connection_past_the_cap_is_refused_and_another_address_is_served(capped_gateway):
    idle = [_connect(capped_gateway, CROWDED) for _ in range(CAP)]
    try:
        refused = _connect(capped_gateway, CROWDED)
        answer = _answer(refused)  # sent unasked, then closed: the client had not written a byte
        refused.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"retry-after: 1" in answer.lower()
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["source"] == "client" and error["code"] == "too_many_open_connections"

        other = _connect(capped_gateway, OTHER)
        assert _healthz(other).startswith(b"HTTP/1.1 200 ")
        other.close()

        # The idle connections were never refused: each still gets its answer.
        assert _healthz(idle[0]).startswith(b"HTTP/1.1 200 ")
        idle.pop(0).close()
        # Its place is free again once the server saw it close.
        for _ in range(50):
            again = _connect(capped_gateway, CROWDED)
            answer = _healthz(again)
            again.close()
            if not answer.startswith(b"HTTP/1.1 503 "):
                break
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    finally:
        for sock in idle:
            sock.close()


def test_the_trusted_proxy_address_is_not_counted(capped_gateway):
    # 127.0.0.1 is uvicorn's default forwarded_allow_ips: a reverse proxy there carries many clients.
    idle = [_connect(capped_gateway, "127.0.0.1") for _ in range(CAP + 2)]
    try:
        assert all(_healthz(sock).startswith(b"HTTP/1.1 200 ") for sock in idle)
    finally:
        for sock in idle:
            sock.close()
