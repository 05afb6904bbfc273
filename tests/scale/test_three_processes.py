"""Three gateway processes on one PostgreSQL schema and the real Redis: what they must share, they share.

In file order, on the one cluster of tests/scale (conftest.py):
* a 500-request race on a wallet funded for exactly 10 requests: exactly 10 succeed, the ledger audits;
* a breaker opened by traffic in one process: the other two skip the route within 1 s;
* an operator's force and its lift through one process: the others obey each within 1 s;
* a key revoked through one process's admin API: the other two refuse it within 1 s, although their
  read caches would keep it for a minute (so it is the pub/sub announcement, not the TTL);
* Redis taken away under load and given back: every request served, the loss visible in /readyz
  and /metrics, and once Redis is back the announcements flow again by themselves;
* PostgreSQL taken away under load and given back: 503 naming the gateway, every acknowledged request
  with its receipt and charge, service back by itself;
* SIGTERM with a stream in flight: the stream completes with [DONE] and its receipt, the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from gateway_fixtures import settled_receipt
from glasskey.ledger.accounts import get_balance
from glasskey.orgs.service import top_up, wallet_account_id
from scale_cluster import ADMIN_TOKEN, FAILING_ROUTE, Cluster, Keys
from tcp_forwarder import Forwarder

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def bearer(keys: Keys, name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {keys[name][1]}"}


def test_a_wallet_funded_for_ten_requests_serves_exactly_ten_of_500_raced_across_three_processes(three, keys):
    quote = httpx.post(f"{three.url(0)}/v1/quote", json=CHAT, headers=bearer(keys, "race"), timeout=10).json()
    hold_micros = quote["max_charge_micros"]
    assert hold_micros > 0
    with three.services.db.write() as conn:
        top_up(conn, keys["race_org"], "routed", 10 * hold_micros, three.services.clock())

    async def race() -> list[int]:
        limits = httpx.Limits(max_connections=150)
        async with httpx.AsyncClient(timeout=60, limits=limits, headers=bearer(keys, "race")) as client:
            calls = [client.post(f"{three.url(i % 3)}/v1/chat/completions", json=CHAT) for i in range(500)]
            return [response.status_code for response in await asyncio.gather(*calls)]

    statuses = Counter(asyncio.run(race()))
    assert statuses == {200: 10, 402: 490}, statuses
    with three.services.db.read() as conn:
        balance = get_balance(conn, wallet_account_id(conn, keys["race_org"], "routed"))
    assert (balance.available_micros, balance.held_micros) == (0, 0)  # each charge equals its hold here
    three.audit_ok()


def circuit(admin: httpx.Client) -> str:
    rows = admin.get("/health", params={"model": "gemini-2.5-flash"}).json()["data"]
    return str(next(row["health"]["circuit"] for row in rows if row["route_id"] == FAILING_ROUTE))


def seconds_until_open(admin: httpx.Client, since: float) -> float | None:
    """Poll one process's health board; when (after ``since``) an answer first said the route is open."""
    while time.monotonic() - since < 3:
        if circuit(admin) == "open":
            return time.monotonic() - since  # when the answer arrived: the process decided before
        time.sleep(0.01)
    return None


def test_a_breaker_opened_by_traffic_in_one_process_is_skipped_by_the_others_within_a_second(three, keys):
    body = {**CHAT, "model": "gemini-2.5-flash"}
    admins = [three.admin(index) for index in range(3)]
    with httpx.Client(headers=bearer(keys, "breaker"), timeout=10) as client:
        failures = [client.post(f"{three.url(0)}/v1/chat/completions", json=body) for _ in range(5)]
        assert [r.status_code for r in failures] == [502] * 5
        opened_at = time.monotonic()
        with ThreadPoolExecutor(3) as pool:  # each process watched on its own, at once
            seen = list(pool.map(lambda admin: seconds_until_open(admin, opened_at), admins))
        assert all(seconds is not None and seconds < 1.0 for seconds in seen), seen
        for index in (1, 2):
            skipped = client.post(f"{three.url(index)}/v1/chat/completions", json=body)
            assert skipped.status_code == 503, skipped.text  # not tried: no upstream call, no 502
            error = skipped.json()["error"]
            assert (error["source"], error["code"]) == ("route", "no_healthy_route")
    for admin in admins:
        admin.close()


def seconds_until(three: Cluster, key: str, status: int, since: float) -> dict[int, float]:
    """How long until processes 1 and 2 answer the official key's chat with ``status``."""
    answered: dict[int, float] = {}
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=10) as client:
        while len(answered) < 2 and time.monotonic() - since < 3:
            for index in (1, 2):
                if index not in answered:
                    response = client.post(f"{three.url(index)}/v1/chat/completions", json=CHAT)
                    if response.status_code == status:
                        answered[index] = time.monotonic() - since
            time.sleep(0.01)
    return answered


def test_an_operator_force_and_its_lift_through_one_process_take_effect_in_the_others_within_a_second(three):
    official = three.seeded["official_key"]  # its one route: the official gpt-4o-mini route
    route = "rt-gpt-4o-mini-official"
    assert sorted(seconds_until(three, official, 200, time.monotonic())) == [1, 2]  # cached everywhere
    with three.admin(0) as admin:
        assert admin.post(f"/routes/{route}/breaker", json={"state": "open"}).status_code == 200
        forced_at = time.monotonic()
        skipped = seconds_until(three, official, 503, forced_at)
        assert admin.post(f"/routes/{route}/breaker", json={"state": None}).status_code == 200
        lifted_at = time.monotonic()
        served = seconds_until(three, official, 200, lifted_at)
    assert sorted(skipped) == [1, 2] and max(skipped.values()) < 1.0, skipped
    assert sorted(served) == [1, 2] and max(served.values()) < 1.0, served


def revoke_and_time_refusals(three: Cluster, keys: Keys, name: str, via: int) -> dict[int, float]:
    """Revoke the key through process ``via``; how long until each other process refused it."""
    others = [index for index in range(3) if index != via]
    with httpx.Client(headers=bearer(keys, name), timeout=10) as client:
        for index in range(3):  # every process has the key in its one-minute cache now
            assert client.post(f"{three.url(index)}/v1/chat/completions", json=CHAT).status_code == 200
        with three.admin(via) as admin:
            assert admin.post(f"/keys/{keys[name][0]}/revoke").status_code == 200
        revoked_at = time.monotonic()
        refused: dict[int, float] = {}
        while len(refused) < len(others) and time.monotonic() - revoked_at < 3:
            for index in others:
                if index not in refused and client.get(f"{three.url(index)}/v1/key").status_code == 401:
                    refused[index] = time.monotonic() - revoked_at
            time.sleep(0.01)
    assert sorted(refused) == others, refused
    return refused


def test_a_key_revoked_through_one_process_is_refused_by_the_other_two_within_a_second(three, keys):
    refused = revoke_and_time_refusals(three, keys, "revoked", via=0)
    assert max(refused.values()) < 1.0, refused


def test_redis_taken_away_under_load_serving_goes_on_the_loss_is_visible_and_it_comes_back(
    three, keys, redis_forwarder: Forwarder
):
    statuses: Counter[int] = Counter()
    observed: dict[str, object] = {}

    async def load(until: float) -> None:
        async with httpx.AsyncClient(timeout=30, headers=bearer(keys, "load")) as client:
            i = 0
            while time.monotonic() < until:
                response = await client.post(f"{three.url(i % 3)}/v1/chat/completions", json=CHAT)
                statuses[response.status_code] += 1
                i += 1

    async def outage() -> None:
        await asyncio.sleep(1.0)
        redis_forwarder.cut()
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=three.url(0), timeout=10) as client:
            ready = await client.get("/readyz")
            metrics = await client.get("/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        observed.update(ready_status=ready.status_code, ready=ready.json(), metrics=metrics.text)
        redis_forwarder.start()

    async def story() -> None:
        until = time.monotonic() + 4.0
        await asyncio.gather(*(load(until) for _ in range(6)), outage())

    asyncio.run(story())
    assert set(statuses) == {200} and statuses[200] > 20, statuses  # served all along
    assert observed["ready_status"] == 200  # Redis down degrades; it does not make the process unready
    ready = observed["ready"]
    assert isinstance(ready, dict) and ready["redis"] == "unreachable"
    assert set(ready["degraded"]) == {"rate_limits", "signin_throttle", "route_health", "cache_invalidation"}
    assert 'glasskey_redis_up{feature="cache_invalidation"} 0.0' in str(observed["metrics"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # every process reconnects by itself
        bodies = [httpx.get(f"{three.url(index)}/readyz", timeout=5).json() for index in range(3)]
        metrics = httpx.get(f"{three.url(1)}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        if all(body["redis"] == "ok" for body in bodies) and 'feature="cache_invalidation"} 1.0' in metrics:
            break
        time.sleep(0.2)
    assert all(body["redis"] == "ok" for body in bodies), bodies
    time.sleep(0.5)  # the subscribers' reconnect loop (every 0.5 s) has subscribed again
    refused = revoke_and_time_refusals(three, keys, "revoked_after_outage", via=1)
    assert max(refused.values()) < 1.0, refused


def test_postgresql_taken_away_under_load_is_503_naming_the_gateway_and_nothing_acknowledged_is_lost(
    three, keys, postgres_forwarder: Forwarder
):
    outcomes: Counter[tuple[int, str]] = Counter()
    served: list[str] = []

    async def load(until: float) -> None:
        async with httpx.AsyncClient(timeout=30, headers=bearer(keys, "database_load")) as client:
            i = 0
            while time.monotonic() < until:
                response = await client.post(f"{three.url(i % 3)}/v1/chat/completions", json=CHAT)
                source = "" if response.status_code == 200 else response.json()["error"]["source"]
                outcomes[(response.status_code, source)] += 1
                if response.status_code == 200:
                    served.append(response.headers["x-request-id"])
                else:
                    assert response.headers["retry-after"].isdigit()
                i += 1

    async def outage() -> None:
        await asyncio.sleep(1.0)
        postgres_forwarder.cut()
        await asyncio.sleep(1.5)
        postgres_forwarder.start()

    async def story() -> None:
        until = time.monotonic() + 5.0
        await asyncio.gather(*(load(until) for _ in range(6)), outage())

    asyncio.run(story())
    # Served, or refused by the gateway itself (never 401, 402 or another source), and served again after.
    assert set(outcomes) <= {(200, ""), (503, "gateway")}, outcomes
    assert outcomes[(503, "gateway")] > 0 and outcomes[(200, "")] > 20, outcomes
    with httpx.Client(headers=bearer(keys, "database_load"), timeout=30) as client:
        for index in range(3):
            assert client.post(f"{three.url(index)}/v1/chat/completions", json=CHAT).status_code == 200
    for request_id in served:  # every acknowledged request has its receipt and its charge
        receipt = settled_receipt(three.services, request_id)
        assert receipt["status"] == "succeeded" and receipt["charge_micros"] > 0
    three.audit_ok()


def test_sigterm_lets_a_stream_in_flight_finish_with_its_receipt_and_the_process_exits_0(three, keys):
    body = {**CHAT, "model": "claude-sonnet-4-5", "stream": True}
    process = three.processes[2]
    with (
        httpx.Client(timeout=30, headers=bearer(keys, "stream")) as client,
        client.stream("POST", f"{three.url(2)}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        process.send_signal(signal.SIGTERM)
        rest = list(lines)
    assert first.startswith("data: {") and "data: [DONE]" in rest
    assert process.wait(timeout=30) == 0
    receipt = settled_receipt(three.services, request_id)
    assert receipt["status"] == "succeeded" and receipt["charge_micros"] > 0
    three.audit_ok()
