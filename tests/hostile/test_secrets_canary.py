"""Secrets canary: three secrets, looked for everywhere an attacker or an operator could read.

A canary key secret, a canary admin token and a canary route credential (given through the admin
API, so it is sealed as in production) go through a gateway on SQLite and on PostgreSQL: requests
that succeed, stream, fail at the upstream (which echoes the credential it was sent), fail to
authenticate, and every GET of the admin API, with right and wrong admin tokens. Then none of the
three may appear in:

* any response body or header the gateway, the admin API or ``/metrics`` sent;
* any log line, captured at DEBUG from every logger, tracebacks included;
* the database: on SQLite the raw bytes of every file (``glasskey.db``, ``-wal``, ``-shm``), and on
  both engines every row of every table (what a ``pg_dump`` would hold).

``tests/gateway/test_no_secrets.py`` (key secrets, SQLite), ``test_secrets_at_rest.py`` (sealed
credentials and rotation) and ``test_debug_logs.py`` (the serve command's DEBUG configuration)
each hold one part of this; here the three secrets are held together on both engines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, select

from conftest_helpers import make_settings, postgres_schema_url
from fake_openai import FakeOpenAI
from gateway_fixtures import Gateway, ServerThread, _gateway
from glasskey.keys.secret import parse
from glasskey.services import build_services
from glasskey.store.tables import api_keys
from hostile.test_secrets_at_rest import MODEL
from hostile.test_secrets_at_rest import _create_route as create_route

ADMIN_TOKEN_CANARY = "admin-canary-Zq8vN3kW1pX7rT5yB2mC9dF4"
ROUTE_CREDENTIAL_CANARY = "sk-route-canary-H6jL0sQ4uV8wY2aE5gI9"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(credential=ROUTE_CREDENTIAL_CANARY)
    with ServerThread(fake.app) as server:
        fake.base_url = server.base_url
        yield fake


@pytest.fixture(params=["sqlite", "postgresql"])
def canary_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    if request.param == "sqlite":
        yield from _gateway(build_services(make_settings(tmp_path, admin_token=ADMIN_TOKEN_CANARY)))
        return
    for url in postgres_schema_url():
        settings = make_settings(tmp_path, database_url=url, admin_token=ADMIN_TOKEN_CANARY)
        yield from _gateway(build_services(settings))


class Seen:
    """Every response seen: its status line, headers and body, as one text to search."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.parts.append(f"{response.request.method} {response.request.url} {response.status_code}\n{headers}")
        self.parts.append(response.text)
        return response

    @property
    def text(self) -> str:
        return "\n".join(self.parts)


def drive_gateway(gateway: Gateway, key: str, seen: Seen) -> None:
    auth = {"authorization": f"Bearer {key}"}
    public_id, _ = parse(key) or ("", "")

    def chat(content: str, stream: bool = False) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": stream}
        with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, headers=auth, timeout=30) as response:
            response.read()
            seen.add(response)

    chat("hello")
    chat("hello", stream=True)
    for stream in (False, True):  # the upstream refuses and echoes the credential it was sent
        chat("x [fake:status=401] [fake:echo_key]", stream=stream)
        chat("x [fake:status=500] [fake:echo_key]", stream=stream)
    with httpx.Client(base_url=gateway.v1, headers=auth, timeout=30) as client:
        seen.add(client.get("/key"))
        seen.add(client.get("/models"))
        seen.add(client.get("/receipts"))
        seen.add(client.post("/quote", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        # A wrong secret for the canary's own public id, and no valid key at all.
        wrong = {"authorization": f"Bearer gk-{public_id}-{'x' * 40}"}
        seen.add(client.get("/key", headers=wrong))
        seen.add(client.post("/chat/completions", json={"model": MODEL}, headers={"authorization": "Bearer gk-no"}))


def drive_admin(gateway: Gateway, key_id: str, route_id: str, seen: Seen) -> None:
    ids = {"org_id": gateway.org_id, "key_id": key_id, "route_id": route_id}
    admin = {"authorization": f"Bearer {ADMIN_TOKEN_CANARY}"}
    with httpx.Client(base_url=f"{gateway.base_url}/admin/api", headers=admin, timeout=30) as client:
        document = seen.add(client.get("/openapi.json")).json()
        for path, item in document["paths"].items():
            if "get" not in item:
                continue
            try:
                concrete = path.format(**ids)
            except KeyError:
                continue  # an id of a kind this test made none of
            seen.add(client.get(concrete))
        for wrong in (ADMIN_TOKEN_CANARY[:-1] + "!", ADMIN_TOKEN_CANARY + "x", ADMIN_TOKEN_CANARY[:20]):
            seen.add(client.get("/orgs", headers={"authorization": f"Bearer {wrong}"}))
            seen.add(httpx.get(f"{gateway.base_url}/metrics", headers={"authorization": f"Bearer {wrong}"}))
    seen.add(httpx.get(f"{gateway.base_url}/metrics", headers=admin))


def database_dump(gateway: Gateway) -> str:
    """Every row of every table, and on SQLite every byte of the database's files too."""
    rows: list[str] = []
    with gateway.services.db.read() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            rows += [repr(tuple(row)) for row in conn.execute(select(table))]
    assert len(metadata.tables) > 10 and len(rows) > 20  # a real dump, not an empty one
    settings = gateway.services.settings
    if not settings.database_url:
        files = sorted(Path(settings.data_dir).glob("glasskey.db*"))
        rows += [path.read_bytes().decode("latin-1") for path in files]
    return "\n".join(rows)


def test_no_secret_in_any_answer_log_line_database_row_or_metric(
    canary_gateway: Gateway, upstream: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = canary_gateway
    seen = Seen()
    caplog.set_level(logging.DEBUG)
    admin_headers = {"authorization": f"Bearer {ADMIN_TOKEN_CANARY}"}
    with httpx.Client(base_url=f"{gateway.base_url}/admin/api", headers=admin_headers, timeout=30) as admin:
        # The route made as an operator makes it, so its credential is sealed as in production.
        created = seen.add(create_route(admin, upstream, credential=ROUTE_CREDENTIAL_CANARY))
    assert created.status_code == 201, created.text
    key = gateway.new_key(allowed_models=(MODEL,), settlement="routed", name="canary")
    public_id, key_secret = parse(key) or ("", "")
    assert key_secret
    with gateway.services.db.read() as conn:
        key_id = conn.execute(select(api_keys.c.id).where(api_keys.c.public_id == public_id)).scalar_one()

    drive_gateway(gateway, key, seen)
    drive_admin(gateway, key_id, created.json()["id"], seen)
    # The canaries were really used: the upstream got the credential, the key was served.
    assert any(r.headers.get("authorization") == f"Bearer {ROUTE_CREDENTIAL_CANARY}" for r in upstream.requests)
    assert '"canary"' in seen.text and len(seen.parts) > 60

    places = {"responses": seen.text, "logs": caplog.text, "database": database_dump(gateway)}
    assert "DEBUG" in caplog.text  # captured at DEBUG, not only warnings
    for name, secret in {
        "key secret": key_secret,
        "admin token": ADMIN_TOKEN_CANARY,
        "route credential": ROUTE_CREDENTIAL_CANARY,
    }.items():
        for place, text in places.items():
            assert secret not in text, f"the {name} is in the {place}"
    gateway.audit_ok()
