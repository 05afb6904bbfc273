"""Route credentials are sealed at rest, on SQLite and PostgreSQL, and still reach the upstream.

A route created through the admin API with a canary credential: the canary is nowhere in the
database (the raw SQLite files, or every row of PostgreSQL's ``routes``), nowhere in what the admin
API shows, and yet a request reaches the fake upstream with exactly that credential. After a key
rotation (``glasskey routes rotate-encryption-key``'s domain function) it still does, and a vault
with only the old key can no longer open it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

import gateway_fixtures
from fake_openai import FakeOpenAI
from gateway_fixtures import Gateway, ServerThread
from glasskey.providers.sealed import sealed_providers
from glasskey.routing.credentials import CredentialUnopenable, CredentialVault, reseal_stored_credentials

CANARY = "sk-canary-at-rest-5c1d9e7a3b8f2e4d6a0c"
gateway_any_db = gateway_fixtures.gateway_any_db  # the fixture: a gateway on SQLite, then on PostgreSQL
MODEL = "gpt-4o"  # not among the seeded simulated routes: its only route is the one made here


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(credential=CANARY)
    with ServerThread(fake.app) as server:
        fake.base_url = server.base_url
        yield fake


def _admin(gateway: Gateway) -> httpx.Client:
    token = gateway.services.settings.admin_token.get_secret_value()
    return httpx.Client(base_url=f"{gateway.base_url}/admin/api", headers={"Authorization": f"Bearer {token}"})


def _create_route(admin: httpx.Client, upstream: FakeOpenAI, **fields: str) -> httpx.Response:
    """A routed ``openai_compatible`` route of ``MODEL`` to the fake upstream, through the admin API."""
    prices = {"input": 2_500_000, "output": 10_000_000, "cached": 0}
    return admin.post(
        "/routes",
        json={
            "model": MODEL,
            "provider": "openai_compatible",
            "base_url": f"{upstream.base_url}/v1",
            "upstream_model": "upstream-model",
            "settlement": "routed",
            "price_per_mtok_micros": prices,
            "cost_per_mtok_micros": prices,
            **fields,
        },
    )


def _dump(gateway: Gateway) -> str:
    """What a reader of the database sees, without the encryption key."""
    settings = gateway.services.settings
    if not settings.database_url:
        data_dir = Path(settings.data_dir)
        return b"".join(path.read_bytes() for path in sorted(data_dir.glob("glasskey.db*"))).decode("latin-1")
    with gateway.services.db.read() as conn:
        return repr(conn.execute(text("SELECT * FROM routes")).all())


def _chat(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.v1}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]},
        timeout=30,
    )


def test_a_route_credential_is_sealed_at_rest_and_still_reaches_the_upstream(
    gateway_any_db: Gateway, upstream: FakeOpenAI
) -> None:
    gateway = gateway_any_db
    with _admin(gateway) as admin:
        created = _create_route(admin, upstream, credential=CANARY)
        assert created.status_code == 201, created.text
        shown = admin.get(f"/routes/{created.json()['id']}").text + admin.get("/routes").text
    assert CANARY not in created.text and CANARY not in shown
    assert created.json()["credential"] == f"{CANARY[:3]}…{CANARY[-4:]}"

    key = gateway.new_key(allowed_models=(MODEL,), settlement="routed")
    answer = _chat(gateway, key)
    assert answer.status_code == 200, answer.text
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {CANARY}"
    assert CANARY not in _dump(gateway)

    # Rotation: a new key first, the old one kept to open; every row re-sealed under the new key.
    old_key = gateway.services.settings.encryption_key.get_secret_value()
    rotating = CredentialVault([CredentialVault.generate_key(), old_key])
    with gateway.services.db.write() as conn:
        assert reseal_stored_credentials(conn, rotating) == 1
    with pytest.raises(CredentialUnopenable), gateway.services.db.write() as conn:
        reseal_stored_credentials(conn, CredentialVault([old_key]))
    # The running gateway now opens with the rotating vault (a restart with both keys does this).
    gateway.services.providers = sealed_providers(
        {name: provider.inner for name, provider in gateway.services.providers.items()},  # type: ignore[attr-defined]
        rotating,
    )
    again = _chat(gateway, key)
    assert again.status_code == 200, again.text
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {CANARY}"
    assert CANARY not in _dump(gateway)
    gateway.audit_ok()


def test_a_credential_no_key_opens_fails_the_attempt_not_the_gateway(
    gateway_any_db: Gateway, upstream: FakeOpenAI
) -> None:
    gateway = gateway_any_db
    foreign = CredentialVault([CredentialVault.generate_key()]).seal(CANARY)
    with _admin(gateway) as admin:
        created = _create_route(admin, upstream)
    assert created.status_code == 201, created.text
    with gateway.services.db.write() as conn:
        conn.execute(
            text("UPDATE routes SET credential = :c WHERE id = :id"), {"c": foreign, "id": created.json()["id"]}
        )
    answer = _chat(gateway, gateway.new_key(allowed_models=(MODEL,), settlement="routed"))
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["source"] in ("route", "upstream") and CANARY not in answer.text
    gateway.audit_ok()
