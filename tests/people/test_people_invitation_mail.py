"""Invitations by mail (a local SMTP server) and the dashboard page their link opens."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from conftest_helpers import make_settings
from glasskey.app import build_app
from glasskey.services import Services, build_services
from people_api import org_with_tokens


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message: greeting, EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ready\r\n")
        while line := self.rfile.readline():
            verb = line.decode().strip().upper()
            if verb.startswith("EHLO") or verb.startswith("HELO"):
                self.wfile.write(b"250 test\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go on\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    data += self.rfile.readline()
                self.server.messages.append(data.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 taken\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _services(tmp_path, smtp_url: str) -> Services:
    return build_services(make_settings(tmp_path, smtp_url=smtp_url))


def test_a_mailed_link_is_not_shown_and_opens_the_page_that_lets_the_invitee_in(tmp_path, smtp_server):
    port = smtp_server.server_address[1]
    services = _services(tmp_path, f"smtp://127.0.0.1:{port}?from=team@acme.example")
    acme = org_with_tokens(services, "acme")
    with TestClient(build_app(services), follow_redirects=False) as client:
        invited = client.post(
            f"/admin/api/orgs/{acme.team.org_id}/invitations",
            json={"email": "new@acme.example", "role": "viewer"},
            headers=acme.auth("owner"),
        ).json()
        assert invited["mailed_to"] == "new@acme.example" and "token" not in invited and "link" not in invited
        (raw,) = smtp_server.messages
        message = email.message_from_string(raw.removesuffix("\r\n.\r\n"), policy=email.policy.default)
        assert message["To"] == "new@acme.example" and message["From"] == "team@acme.example"
        body = message.get_body()
        assert body is not None
        link = re.search(r"http://\S+/invitation\?token=\S+", body.get_content())
        assert link is not None
        page = client.get(link.group(0).removeprefix("http://127.0.0.1:8787"))
        assert page.status_code == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert csrf is not None and token is not None
        weak = client.post("/invitation", data={"csrf_token": csrf.group(1), "token": token.group(1), "password": "x"})
        assert weak.status_code == 400 and "at least 12" in weak.text
        joined = client.post(
            "/invitation",
            data={"csrf_token": csrf.group(1), "token": token.group(1), "password": "my own passphrase 7"},
        )
        assert joined.status_code == 303 and joined.headers["location"] == "/signin"
        again = client.post(
            "/invitation",
            data={"csrf_token": csrf.group(1), "token": token.group(1), "password": "my own passphrase 7"},
        )
        assert again.status_code == 401
    services.db.dispose()


def test_when_mail_fails_the_link_is_shown_with_the_reason(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    services = _services(tmp_path, f"smtp://127.0.0.1:{closed_port}")
    acme = org_with_tokens(services, "acme")
    with TestClient(build_app(services)) as client:
        invited = client.post(
            f"/admin/api/orgs/{acme.team.org_id}/invitations",
            json={"email": "new@acme.example", "role": "viewer"},
            headers=acme.auth("owner"),
        ).json()
    assert invited["token"] and invited["link"].endswith(invited["token"])
    assert invited["mail_error"].startswith("mail was not sent (ConnectionRefusedError")
    services.db.dispose()
