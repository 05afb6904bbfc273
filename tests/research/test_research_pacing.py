"""A job paces its calls to the key's requests-per-minute limit, and its preflight says how long that takes."""

from __future__ import annotations

import anyio

from glasskey.research.calls import Pacer


def test_the_pacer_waits_for_the_minute_to_free_a_turn():
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    async def five_calls() -> list[float]:
        pacer = Pacer(2, lambda: now[0], sleep)
        sent = []
        for _ in range(5):
            await pacer.wait_turn()
            sent.append(now[0])
            now[0] += 1.0  # each call takes a second
        return sent

    assert anyio.run(five_calls) == [0.0, 1.0, 60.0, 61.0, 120.0]
    assert waits == [58.0, 58.0]


def test_without_a_limit_the_pacer_never_waits():
    async def many() -> int:
        pacer = Pacer(None, lambda: 0.0)
        for _ in range(100):
            await pacer.wait_turn()
        return len(pacer.sent)

    assert anyio.run(many) == 0


def test_the_preflight_counts_the_minutes_a_rate_limit_adds(gateway):
    import httpx

    from research_helpers import auth, job_body, upload_samples

    key = gateway.new_key(settlement="routed", rpm_limit=2)
    ids = upload_samples(gateway.v1, key)
    checked = httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids, depth="standard"))
    runtime = checked.json()["runtime"]
    assert runtime["p50_ms"] >= 120_000  # 5 calls at 2 a minute: two whole minutes between the batches
    assert any("rate limit of 2 requests a minute paces the 5 calls" in line for line in runtime["how"])
