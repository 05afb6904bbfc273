"""The route health board and the breaker controls of the admin API, after real traffic.

The whole gateway app is driven in-process: requests go through ``/v1/chat/completions`` to the
simulated provider, and the board at ``/admin/api/health`` must show what they did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway_fixtures import seed
from glasskey.app import build_app
from glasskey.ledger import audit
from glasskey.pricing.catalog import get_model
from glasskey.services import Services

AUTH = {"Authorization": "Bearer admin-token-for-tests-0123456789"}
ROUTE = "rt-gpt-4o-mini-routed"


@pytest.fixture
def seeded(services: Services) -> dict[str, str]:
    return seed(services)


@pytest.fixture
def app(services: Services, seeded: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(build_app(services)) as client:
        yield client
    with services.db.read() as conn:
        audit(conn).raise_if_broken()


def chat(app: TestClient, key: str, model: str = "gpt-4o-mini") -> Any:
    return app.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "How healthy is this route?"}]},
    )


def board(app: TestClient) -> dict[str, dict[str, Any]]:
    response = app.get("/admin/api/health", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["window_seconds"] > 0
    return {row["route_id"]: row for row in body["data"]}


def patch(app: TestClient, route_id: str, **fields: Any) -> Any:
    return app.patch(f"/admin/api/routes/{route_id}", headers=AUTH, json=fields)


def test_the_board_lists_every_route_with_its_snapshot_after_traffic(
    app: TestClient, seeded: dict[str, str], services: Services
) -> None:
    for _ in range(2):
        assert chat(app, seeded["routed_key"]).status_code == 200

    rows = board(app)
    assert len(rows) == 6  # three models, one official and one routed route each
    row = rows[ROUTE]
    assert row["object"] == "route_health"
    assert (row["model"], row["provider"], row["settlement"]) == ("gpt-4o-mini", "simulated", "routed")
    assert row["enabled"] is True and row["forced_circuit"] is None
    with services.db.read() as conn:
        official = get_model(conn, "gpt-4o-mini").official_prices.as_dict()
    assert row["official_price_per_mtok_micros"] == official
    assert row["price_per_mtok_micros"] == {part: value * 6 // 10 for part, value in official.items()}

    health = row["health"]
    assert health["circuit"] == "closed"
    assert (health["requests"], health["successes"], health["success_rate"]) == (2, 2, 1.0)
    assert health["errors_by_class"] == {}
    assert health["latency_ms"]["p50"] is not None and health["latency_ms"]["p99"] is not None
    assert set(health["ttft_ms"]) == {"p50", "p95", "p99"}

    untouched = rows["rt-gpt-4o-mini-official"]["health"]
    assert (untouched["requests"], untouched["success_rate"]) == (0, None)


def test_the_board_can_be_narrowed_to_one_model(app: TestClient) -> None:
    response = app.get("/admin/api/health", headers=AUTH, params={"model": "claude-sonnet-4-5"})
    assert {row["route_id"] for row in response.json()["data"]} == {
        "rt-claude-sonnet-4-5-official",
        "rt-claude-sonnet-4-5-routed",
    }


def test_a_failing_route_shows_its_errors_by_class(app: TestClient, seeded: dict[str, str]) -> None:
    assert patch(app, ROUTE, options={"fail_status": 500}).status_code == 200

    failed = chat(app, seeded["routed_key"])
    assert failed.status_code >= 500
    assert failed.json()["error"]["source"] in ("upstream", "route")

    health = board(app)[ROUTE]["health"]
    assert (health["requests"], health["successes"], health["success_rate"]) == (1, 0, 0.0)
    assert health["errors_by_class"] == {"server_error": 1}
    assert health["consecutive_failures"] == 1
    assert health["circuit"] == "closed"  # one error never opens a breaker


def test_patch_forces_the_circuit_open_and_null_lifts_it(app: TestClient, seeded: dict[str, str]) -> None:
    forced = patch(app, ROUTE, forced_circuit="open")
    assert forced.status_code == 200, forced.text
    assert forced.json()["forced_circuit"] == "open"
    row = board(app)[ROUTE]
    assert row["forced_circuit"] == "open"
    assert (row["health"]["circuit"], row["health"]["forced"]) == ("open", "open")

    # A forced-open route is never tried: this key has no other route for the model.
    refused = chat(app, seeded["routed_key"])
    assert refused.json()["error"]["source"] == "route"

    lifted = patch(app, ROUTE, forced_circuit=None)
    assert lifted.json()["forced_circuit"] is None
    assert board(app)[ROUTE]["health"]["circuit"] == "closed"
    assert chat(app, seeded["routed_key"]).status_code == 200


def test_patch_refuses_an_unknown_forced_circuit(app: TestClient) -> None:
    response = patch(app, ROUTE, forced_circuit="half_open")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "forced_circuit"
    assert board(app)[ROUTE]["forced_circuit"] is None


def test_the_breaker_endpoint_sets_the_force_and_answers_with_health(app: TestClient) -> None:
    path = f"/admin/api/routes/{ROUTE}/breaker"
    opened = app.post(path, headers=AUTH, json={"state": "open"})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["id"] == ROUTE and body["forced_circuit"] == "open"
    assert body["health"]["circuit"] == "open" and body["health"]["forced"] == "open"
    assert app.get(f"/admin/api/routes/{ROUTE}", headers=AUTH).json()["forced_circuit"] == "open"

    closed = app.post(path, headers=AUTH, json={"state": "closed"}).json()
    assert closed["health"]["circuit"] == "closed" and closed["health"]["forced"] == "closed"

    lifted = app.post(path, headers=AUTH, json={"state": None}).json()
    assert lifted["forced_circuit"] is None and lifted["health"]["forced"] is None

    assert app.post(path, headers=AUTH, json={}).status_code == 400  # the state must be said, even if null
    assert app.post(path, headers=AUTH, json={"state": "ajar"}).status_code == 400
    missing = app.post("/admin/api/routes/rt-missing/breaker", headers=AUTH, json={"state": "open"})
    assert missing.status_code == 404


def test_the_breaker_needs_the_admin_token(app: TestClient) -> None:
    response = app.post(f"/admin/api/routes/{ROUTE}/breaker", json={"state": "open"})
    assert response.status_code == 401
    assert app.get("/admin/api/health").status_code == 401


@pytest.mark.parametrize("bad", [0, -5, "500", 1.5, True, None, 3_600_001])
def test_per_route_timeouts_must_be_whole_positive_milliseconds(app: TestClient, bad: object) -> None:
    response = patch(app, ROUTE, options={"timeout_first_byte_ms": bad})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "options.timeout_first_byte_ms"


def test_per_route_timeouts_are_stored_with_the_other_options(app: TestClient) -> None:
    options = {"timeout_connect_ms": 2_000, "timeout_total_ms": 120_000, "latency_ms": 5}
    response = patch(app, ROUTE, options=options)
    assert response.status_code == 200, response.text
    assert response.json()["options"] == options
