"""Issue 18 #9: a request's line and headers are bounded in time and size (``serving_protocol``).

A slowloris client trickling its headers a byte at a time is cut with a 408 ``source: client``
at the header read timeout, while legitimate requests, a kept-alive connection idle for longer
than that timeout included, are served; a megabyte of headers is a 431; a connection that sends
nothing is closed too. The gateway is served with the protocol ``glasskey serve`` gives uvicorn.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest_helpers import make_settings
from gateway_fixtures import Gateway, _gateway
from glasskey.cli.base import server_options
from glasskey.services import build_services
from glasskey.serving_protocol import BoundedHttpToolsProtocol

TIMEOUT_SECONDS = 1.0
HEADERS_MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def bounded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = make_settings(
        tmp_path_factory.mktemp("headers"),
        header_read_timeout_seconds=TIMEOUT_SECONDS,
        headers_max_bytes=HEADERS_MAX_BYTES,
    )
    yield from _gateway(build_services(settings), http=server_options(settings)["http"])


def _address(gateway: Gateway) -> tuple[str, int]:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _answer(sock: socket.socket, wait_seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (or the wait ends)."""
    sock.settimeout(wait_seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _error(answer: bytes) -> dict[str, object]:
    error: dict[str, object] = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    return error


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_timeout_while_others_are_served(bounded_gateway: Gateway):
    gateway = bounded_gateway
    slow = socket.create_connection(_address(gateway))
    stop = threading.Event()

    def trickle() -> None:  # an endless header, a byte every 50 ms: each byte alone is "progress"
        try:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.wait(0.05):
                slow.sendall(b"a")
        except OSError:  # the server hung up
            pass

    began = time.monotonic()
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    statuses = []
    with httpx.Client(base_url=gateway.base_url) as kept_alive:
        statuses.append(kept_alive.get("/healthz").status_code)
        time.sleep(TIMEOUT_SECONDS * 1.5)  # idle on a kept-alive connection for longer than the header timeout
        statuses.append(kept_alive.get("/healthz").status_code)
        statuses.append(
            kept_alive.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {gateway.routed_key}"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
            ).status_code
        )
    answer = _answer(slow, 10)
    elapsed = time.monotonic() - began
    stop.set()
    trickler.join()
    slow.close()

    assert statuses == [200, 200, 200]
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    error = _error(answer)
    assert error["source"] == "client" and error["code"] == "header_read_timeout"
    assert TIMEOUT_SECONDS <= elapsed < TIMEOUT_SECONDS + 5  # cut, and the connection closed (recv saw its end)


def test_a_connection_that_sends_nothing_is_closed_at_the_timeout(bounded_gateway: Gateway):
    with socket.create_connection(_address(bounded_gateway)) as silent:
        began = time.monotonic()
        answer = _answer(silent, 10)
        elapsed = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 ") and _error(answer)["code"] == "header_read_timeout"
    assert elapsed < TIMEOUT_SECONDS + 5


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"X-Big: " + b"a" * (1 << 20) + b"\r\n", id="one 1 MiB header line"),
        pytest.param(b"".join(b"X-%d: %s\r\n" % (n, b"b" * 1000) for n in range(1024)), id="1,024 headers of 1 KB"),
        pytest.param(b"X-Big: " + b"a" * 70_000 + b"\r\n", id="70 KB, likely in a single read"),
    ],
)
def test_headers_over_the_bound_are_refused_with_431(bounded_gateway: Gateway, headers: bytes):
    with socket.create_connection(_address(bounded_gateway)) as client:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
        sender = threading.Thread(target=_send_until_refused, args=(client, request), daemon=True)
        sender.start()  # the server answers before the client has sent it all
        answer = _answer(client, 10)
        sender.join()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    error = _error(answer)
    assert error["source"] == "client" and error["code"] == "headers_too_large"
    assert httpx.get(f"{bounded_gateway.base_url}/healthz").status_code == 200


def test_headers_just_under_the_bound_are_served(bounded_gateway: Gateway):
    filler = b"c" * (HEADERS_MAX_BYTES - 1024)
    answer = httpx.get(f"{bounded_gateway.base_url}/healthz", headers={"x-filler": filler.decode()})
    assert answer.status_code == 200


def _send_until_refused(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # reset by the server once it refused: expected
        sock.sendall(data)


def test_glasskey_serve_gives_uvicorn_the_bounded_protocol_and_it_pickles_for_workers(tmp_path):
    settings = make_settings(tmp_path, header_read_timeout_seconds=3.5, headers_max_bytes=4096)
    protocol = pickle.loads(pickle.dumps(server_options(settings)["http"]))  # --workers sends it to each worker
    assert protocol.func is BoundedHttpToolsProtocol
    assert protocol.keywords["header_read_timeout_seconds"] == 3.5 and protocol.keywords["headers_max_bytes"] == 4096
    # Each worker unpickles its own, empty count of connections per address (the cap is per process).
    peers = protocol.keywords["peer_connections"]
    assert peers.per_address_max == settings.connections_per_address_max and peers.open == {}
