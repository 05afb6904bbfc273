"""Routing that explains itself: backups on retriable failures only, breakers, the retry budget, cheapest first."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from glasskey.pricing.catalog import Prices
from glasskey.providers.base import RouteTarget
from glasskey.providers.simulated import SimulatedProvider
from glasskey.routing.health import BreakerPolicy, HealthBoard, RetryBudget
from glasskey.routing.routes import Route, create_route, update_route
from glasskey.store.tables import receipts as receipts_table

CHEAP, DEAR = "rt-gpt-4o-mini-routed", "rt-dear"
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


class CountingProvider:
    """The simulated upstream, counting every call per route (the truth the receipts must match)."""

    name = "simulated"

    def __init__(self) -> None:
        self.inner = SimulatedProvider()
        self.calls: Counter[str] = Counter()

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> Any:
        self.calls[target.route_id] += 1
        return await self.inner.chat(target, body)

    def stream_chat(self, target: RouteTarget, body: dict[str, Any], *, pauses: bool = False) -> Any:
        self.calls[target.route_id] += 1
        return self.inner.stream_chat(target, body, pauses=pauses)

    async def embed(self, target: RouteTarget, body: dict[str, Any]) -> Any:
        self.calls[target.route_id] += 1
        return await self.inner.embed(target, body)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def routed(gateway):
    """A second, dearer routed route for gpt-4o-mini, a counting upstream and a key with backups."""
    with gateway.services.db.write() as conn:
        create_route(
            conn,
            Route(
                id=DEAR,
                model="gpt-4o-mini",
                provider="simulated",
                base_url="",
                upstream_model="gpt-4o-mini",
                settlement="routed",
                prices=Prices(120_000, 500_000, 60_000),
                costs=Prices(100_000, 400_000, 50_000),
            ),
            gateway.services.clock(),
        )
    counting = CountingProvider()
    gateway.services.providers["simulated"] = counting
    gateway.counting = counting
    gateway.key = gateway.new_key(settlement="routed", lower_cost_routes=True, backup_routes=True)
    return gateway


def set_options(gateway, route_id: str, **options: Any) -> None:
    with gateway.services.db.write() as conn:
        update_route(conn, route_id, options=options)


def post(gateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.v1}/chat/completions", json=body or CHAT, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def receipt_of(gateway, response: httpx.Response) -> dict[str, Any]:
    request_id = response.headers["x-request-id"]
    with gateway.services.db.read() as conn:
        from glasskey.receipts.records import get_receipt

        return get_receipt(conn, request_id)


@pytest.mark.parametrize(
    "failure",
    [{"fail_status": s} for s in (408, 429, 500, 502, 503, 504, 529)] + [{"timeout": True, "timeout_ms": 5}],
    ids=lambda f: str(f.get("fail_status", "timeout")),
)
def test_a_retriable_failure_falls_back_and_only_the_backup_is_charged(routed, failure):
    set_options(routed, CHEAP, **failure)
    response = post(routed, routed.key)
    assert response.status_code == 200
    receipt = receipt_of(routed, response)
    assert [(a["route_id"], a["status"]) for a in receipt["attempts"]] == [(CHEAP, "failed"), (DEAR, "succeeded")]
    assert receipt["route_id"] == DEAR
    assert receipt["charge_micros"] == int(response.headers["x-glasskey-charge-micros"]) > 0
    assert routed.counting.calls == Counter({CHEAP: 1, DEAR: 1})
    routed.audit_ok()


@pytest.mark.parametrize("status", [400, 401])
def test_a_non_retriable_failure_does_not_fall_back(routed, status):
    set_options(routed, CHEAP, fail_status=status)
    response = post(routed, routed.key)
    assert response.status_code in (400, 502)
    assert response.json()["error"]["source"] == "upstream"
    assert routed.counting.calls == Counter({CHEAP: 1})
    assert receipt_of(routed, response)["charge_micros"] == 0
    routed.audit_ok()


def test_no_fallback_after_the_first_streamed_byte(routed):
    set_options(routed, CHEAP, cut_stream_after_chunks=2)
    response = httpx.post(
        f"{routed.v1}/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {routed.key}"},
    )
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert '"error"' in events[-1] and "[DONE]" not in response.text
    assert routed.counting.calls == Counter({CHEAP: 1})
    receipt = receipt_of(routed, response)
    assert [a["status"] for a in receipt["attempts"]] == ["failed"]
    routed.audit_ok()


def test_a_stream_failing_before_its_first_byte_falls_back(routed):
    set_options(routed, CHEAP, fail_status=503)
    response = httpx.post(
        f"{routed.v1}/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {routed.key}"},
    )
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    assert response.headers["x-glasskey-route"] == DEAR
    routed.audit_ok()


def quote(gateway, key: str) -> dict[str, Any]:
    response = httpx.post(f"{gateway.v1}/quote", json=CHAT, headers={"authorization": f"Bearer {key}"})
    body: dict[str, Any] = response.json()
    return body


def explanation(gateway, key: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {key}"}).json()
    return next(m for m in body["models"] if m["model"] == "gpt-4o-mini")


def test_breaker_opens_moves_quote_and_explanation_then_half_opens_and_closes(routed):
    clock = Clock()
    routed.services.health = HealthBoard(
        clock, BreakerPolicy(consecutive_failures=2, cooldown_seconds=30, half_open_probes=1)
    )
    assert quote(routed, routed.key)["route"]["id"] == CHEAP
    assert explanation(routed, routed.key)["route"]["route_id"] == CHEAP

    set_options(routed, CHEAP, fail_status=500)
    assert [post(routed, routed.key).status_code for _ in range(2)] == [200, 200]
    assert routed.services.health.state(CHEAP) == "open"
    assert quote(routed, routed.key)["route"]["id"] == DEAR
    model = explanation(routed, routed.key)
    assert model["route"]["route_id"] == DEAR
    assert model["backup_routes"][0]["route_id"] == CHEAP
    assert model["backup_routes"][0]["health"]["circuit"] == "open"
    before = routed.counting.calls[CHEAP]
    served = post(routed, routed.key)
    assert served.headers["x-glasskey-route"] == DEAR
    assert routed.counting.calls[CHEAP] == before, "an open breaker is not called"

    clock.now += 30
    assert routed.services.health.state(CHEAP) == "half_open"
    set_options(routed, CHEAP)  # the route recovered
    probe = post(routed, routed.key)
    assert probe.headers["x-glasskey-route"] == CHEAP
    assert routed.services.health.state(CHEAP) == "closed"
    assert quote(routed, routed.key)["route"]["id"] == CHEAP
    routed.audit_ok()


def test_quote_holds_for_the_dearest_backup(routed):
    body = quote(routed, routed.key)
    assert body["backup_routes"] == [DEAR]
    assert body["max_charge_micros"] > body["route_max_charge_micros"]
    response = post(routed, routed.key)
    assert int(response.headers["x-glasskey-hold-micros"]) == body["max_charge_micros"]


def test_the_retry_budget_caps_attempts_when_every_route_is_down(routed):
    set_options(routed, CHEAP, fail_status=503)
    set_options(routed, DEAR, fail_status=503)
    routed.services.retry_budget = RetryBudget(ratio=0.0, minimum=0)
    response = post(routed, routed.key)
    assert response.status_code == 502
    assert routed.counting.calls == Counter({CHEAP: 1})
    attempts = receipt_of(routed, response)["attempts"]
    assert [(a["status"], a["error_class"]) for a in attempts] == [
        ("failed", "server_error"),
        ("skipped", "retry_budget_exhausted"),
    ]
    assert response.json()["error"]["source"] == "route"
    routed.audit_ok()


def test_when_every_route_fails_the_error_lists_every_attempt(routed):
    set_options(routed, CHEAP, fail_status=503)
    set_options(routed, DEAR, fail_status=500)
    response = post(routed, routed.key)
    error = response.json()["error"]
    assert response.status_code == 502
    assert error["source"] == "route"
    assert [a["route_id"] for a in error["attempts"]] == [CHEAP, DEAR]
    assert [a["http_status"] for a in receipt_of(routed, response)["attempts"]] == [503, 500]


def test_64_clients_with_one_route_failing_half_the_time_all_succeed_and_attempts_match_calls(routed):
    set_options(routed, CHEAP, error_rate=0.5)
    # Every failed first attempt may take its backup: at this concurrency the default budget (half
    # the requests in flight) can be reached at random peaks, and the budget has a test of its own.
    routed.services.retry_budget = RetryBudget(ratio=1.0, minimum=64)

    async def client_loop(client: httpx.AsyncClient) -> list[int]:
        statuses = []
        for _ in range(4):
            response = await client.post("/chat/completions", json=CHAT)
            statuses.append(response.status_code)
        return statuses

    async def run() -> list[int]:
        async with httpx.AsyncClient(
            base_url=routed.v1,
            headers={"authorization": f"Bearer {routed.key}"},
            limits=httpx.Limits(max_connections=64),
            timeout=60,
        ) as client:
            results = await asyncio.gather(*(client_loop(client) for _ in range(64)))
        return [s for statuses in results for s in statuses]

    statuses = asyncio.run(run())
    assert statuses.count(200) == 256
    with routed.services.db.read() as conn:
        rows = conn.execute(select(receipts_table.c.attempts)).all()
    assert len(rows) == 256
    made = Counter(a["route_id"] for (attempts,) in rows for a in attempts if a["status"] != "skipped")
    assert made == routed.counting.calls
    assert made[DEAR] >= 1, "some requests needed the backup"
    routed.audit_ok()


def test_an_operator_forces_a_breaker_open_and_lifts_it_for_every_process(routed):
    with routed.services.db.write() as conn:
        update_route(conn, CHEAP, forced_circuit="open")
    served = post(routed, routed.key)
    assert served.headers["x-glasskey-route"] == DEAR
    assert routed.counting.calls[CHEAP] == 0
    assert explanation(routed, routed.key)["backup_routes"][0]["health"]["circuit"] == "open"
    with routed.services.db.write() as conn:
        update_route(conn, CHEAP, forced_circuit=None)
    assert post(routed, routed.key).headers["x-glasskey-route"] == CHEAP
