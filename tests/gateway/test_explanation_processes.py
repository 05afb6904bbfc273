"""A key says what is counted per gateway process and what every process shares (with Redis or not)."""

from __future__ import annotations

import httpx

from conftest_helpers import REDIS_URL, make_settings
from glasskey.explanation import explain_key
from glasskey.keys.service import find_by_public_id


def test_without_redis_the_key_says_its_rate_limit_and_route_health_are_per_process(gateway):
    body = httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {gateway.routed_key}"}).json()
    assert body["rate_limit"]["counted"].startswith("per gateway process")
    shared = body["shared_across_processes"]
    assert shared["rate_limit"] == "per process" and shared["route_health"].startswith("per process")
    assert "holds in the database" in shared["budgets_and_wallet"]


def test_with_redis_the_key_says_what_is_shared_and_what_happens_while_redis_is_away(gateway, tmp_path):
    settings = make_settings(tmp_path, redis_url=REDIS_URL)
    public_id = gateway.routed_key.split("-")[1]
    with gateway.services.db.read() as conn:
        record = find_by_public_id(conn, public_id=public_id)
        assert record is not None
        body = explain_key(conn, settings, record, gateway.services.clock())
    assert body["rate_limit"]["counted"].startswith("across every gateway process")
    assert body["shared_across_processes"]["rate_limit"] == "shared through Redis"
    assert "alone" in body["shared_across_processes"]["without_redis"]
