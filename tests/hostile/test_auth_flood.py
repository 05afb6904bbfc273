"""Issue 18 #6: a flood of failed authentications leaves a few receipts and a count, not a row each.

The lifecycle is driven in process with the client address the front door passes it, on SQLite
and PostgreSQL: 1,000 garbage keys from one address leave at most the per-minute threshold of
receipts, every failure is counted in ``auth_failures``, past the limit they are 429 ``source:
key`` with ``retry-after``, and a legitimate key from another address is served throughout.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from conftest_helpers import make_settings, postgres_schema_url
from gateway_fixtures import seed
from glasskey.app import build_app
from glasskey.errors import APIKeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import JSONOutcome
from glasskey.keys import secret as key_secret
from glasskey.keys.auth_failures import counts_by, total_failures
from glasskey.keys.auth_throttle import MemoryFailureCounter
from glasskey.services import Services, build_services
from glasskey.store.tables import auth_failures, receipts

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
ATTACKER, HONEST = "203.0.113.9", "198.51.100.7"
RECEIPTS_PER_MINUTE, REFUSED_AFTER = 20, 120


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[Services, dict[str, str]]]:
    limits = {
        "auth_failure_receipts_per_minute": RECEIPTS_PER_MINUTE,
        "auth_failures_refused_after_per_minute": REFUSED_AFTER,
    }
    urls: Iterator[str | None] = iter([None]) if request.param == "sqlite" else postgres_schema_url()
    for url in urls:
        extra = {"database_url": url} if url else {}
        services = build_services(make_settings(tmp_path, **limits, **extra))
        # One fixed minute, so the counts cannot be split by the minute turning during the test.
        throttle = services.auth_throttle
        throttle.counter = MemoryFailureCounter(throttle.limits, clock=lambda: 1_800_000_000.0)
        try:
            yield services, seed(services)
        finally:
            services.close()


def body() -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return orjson.dumps(CHAT)

    return read


async def attempt(lifecycle: Lifecycle, request_id: str, key: str, address: str) -> int | APIKeyError:
    try:
        outcome = await lifecycle.chat(request_id, f"Bearer {key}", body(), client_address=address)
    except APIKeyError as refused:
        return refused
    assert isinstance(outcome, JSONOutcome)
    return 200


def key_receipts(services: Services) -> int:
    with services.db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(receipts).where(receipts.c.error_source == "key")) or 0)


def test_a_thousand_garbage_keys_leave_the_threshold_of_receipts_and_a_count(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)

    async def flood() -> tuple[list[int | APIKeyError], list[int | APIKeyError]]:
        garbage: list[int | APIKeyError] = []
        honest: list[int | APIKeyError] = []
        for n in range(1000):
            token = "gk-garbage" if n % 2 else key_secret.generate()[0]  # unparseable, and unknown public ids
            garbage.append(await attempt(lifecycle, f"req_bad_{n}", token, ATTACKER))
            if n % 50 == 0:
                honest.append(await attempt(lifecycle, f"req_ok_{n}", keys["routed_key"], HONEST))
        await services.auth_throttle.failure_log.flush()
        return garbage, honest

    garbage, honest = asyncio.run(flood())

    assert honest == [200] * 20  # the other address's key is served all along
    assert all(isinstance(answer, APIKeyError) and answer.source == "key" for answer in garbage)
    statuses = [answer.status_code for answer in garbage if isinstance(answer, APIKeyError)]
    assert statuses == [401] * REFUSED_AFTER + [429] * (1000 - REFUSED_AFTER)
    refusal = garbage[-1]
    assert isinstance(refusal, APIKeyError) and refusal.code == "too_many_failed_authentications"
    assert 1 <= int(refusal.headers["retry-after"]) <= 60
    assert key_receipts(services) == RECEIPTS_PER_MINUTE  # not 1,000
    with services.db.read() as conn:
        assert total_failures(conn, None) == 1000
        by_address = counts_by(conn, None, by="address")
        rows = int(conn.scalar(select(func.count()).select_from(auth_failures)))
    assert [(count.name, count.count) for count in by_address] == [(ATTACKER, 1000)]
    assert rows <= 2  # one row per address and minute (two if the minute turned), not one per failure


def test_a_known_public_id_guessed_from_many_addresses_is_refused_but_its_key_works(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)
    public_id = key_secret.parse(keys["official_key"])
    assert public_id is not None
    wrong = f"gk-{public_id[0]}-{'x' * key_secret.SECRET_LENGTH}"

    async def guesses() -> tuple[list[int | APIKeyError], int | APIKeyError]:
        answers = [await attempt(lifecycle, f"req_guess_{n}", wrong, f"192.0.2.{n % 200}") for n in range(150)]
        right = await attempt(lifecycle, "req_right", keys["official_key"], "192.0.2.1")
        await services.auth_throttle.failure_log.flush()
        return answers, right

    answers, right = asyncio.run(guesses())
    statuses = [answer.status_code for answer in answers if isinstance(answer, APIKeyError)]
    assert statuses == [401] * REFUSED_AFTER + [429] * 30
    last = answers[-1]
    assert isinstance(last, APIKeyError) and "for this key" in last.message
    assert right == 200  # only failures are throttled: the key's holder is never locked out
    assert key_receipts(services) == RECEIPTS_PER_MINUTE
    with services.db.read() as conn:
        by_public_id = counts_by(conn, None, by="public_id")
    assert [(count.name, count.count) for count in by_public_id] == [(public_id[0], 150)]


def test_the_failures_page_shows_counts_per_address_and_public_id(seeded):
    services, keys = seeded
    lifecycle = Lifecycle(services)
    public_id = key_secret.parse(keys["routed_key"])
    assert public_id is not None

    async def some() -> None:
        for n in range(30):
            await attempt(lifecycle, f"req_a_{n}", "gk-nonsense", ATTACKER)
        for n in range(5):
            await attempt(lifecycle, f"req_b_{n}", f"gk-{public_id[0]}-{'y' * 40}", HONEST)
        await services.auth_throttle.failure_log.flush()

    asyncio.run(some())
    with TestClient(build_app(services)) as client:
        form = client.get("/signin").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        token = services.settings.admin_token.get_secret_value()
        signed_in = client.post(
            "/signin", data={"csrf_token": csrf.group(1), "admin_token": token}, follow_redirects=False
        )
        assert signed_in.status_code == 303
        page = client.get("/failures?days=1")
    assert page.status_code == 200, page.text[:300]
    html: Any = page.text
    assert 'data-address="203.0.113.9"' in html and 'data-address="198.51.100.7"' in html
    assert f'data-public-id="{public_id[0]}"' in html
    assert "35" in html  # the total of failed authentications counted
