"""The sign-in throttle: per address, per account and for the whole gateway; in memory and in Redis."""

from __future__ import annotations

import uuid

import anyio
import pytest

from conftest_helpers import require_redis
from glasskey.errors import AdminAuthError
from glasskey.people.throttle import MemoryThrottle, RedisThrottle, ThrottleLimits, build_throttle, scopes
from glasskey.services import signin_limits
from glasskey.settings import SettingsError, load_settings

LIMITS = ThrottleLimits(per_address=3, per_account=4, whole_gateway=6, window_seconds=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _refusal(throttle, attempt) -> AdminAuthError | None:
    try:
        await throttle.check(attempt)
    except AdminAuthError as refused:
        return refused
    return None


def test_an_address_is_refused_after_its_failures_until_the_window_passes():
    clock = Clock()
    throttle = MemoryThrottle(LIMITS, clock)

    async def scenario() -> None:
        attacker = scopes("203.0.113.5")
        for _ in range(3):
            assert await _refusal(throttle, attacker) is None
            await throttle.fail(attacker)
        refused = await _refusal(throttle, attacker)
        assert refused is not None and refused.status_code == 429
        assert refused.code == "too_many_failed_sign_ins" and "this address" in refused.message
        assert refused.headers["retry-after"] == "60"
        assert await _refusal(throttle, scopes("198.51.100.1")) is None  # another address is not slowed
        clock.now += 30
        later = await _refusal(throttle, attacker)
        assert later is not None and later.headers["retry-after"] == "30"
        clock.now += 31
        assert await _refusal(throttle, attacker) is None

    anyio.run(scenario)


def test_an_account_is_protected_whatever_address_the_guesses_come_from():
    throttle = MemoryThrottle(LIMITS, Clock())

    async def scenario() -> None:
        for index in range(4):
            await throttle.fail(scopes(f"203.0.113.{index}", "Alice@Example.com"))
        refused = await _refusal(throttle, scopes("192.0.2.200", "alice@example.com"))
        assert refused is not None and "this account" in refused.message
        assert await _refusal(throttle, scopes("192.0.2.200", "bob@example.com")) is None

    anyio.run(scenario)


def test_the_whole_gateway_is_throttled_by_a_spread_out_campaign():
    throttle = MemoryThrottle(LIMITS, Clock())

    async def scenario() -> None:
        for index in range(6):
            await throttle.fail(scopes(f"203.0.113.{index}"))
        refused = await _refusal(throttle, scopes("192.0.2.1"))
        assert refused is not None and "on this gateway" in refused.message

    anyio.run(scenario)


def test_memory_stays_bounded_under_a_flood_of_addresses():
    limits = ThrottleLimits(per_address=3, per_account=3, whole_gateway=10**9, tracked_max=100)
    clock = Clock()
    throttle = MemoryThrottle(limits, clock)

    async def scenario() -> None:
        for index in range(1000):
            clock.now += 0.001
            await throttle.fail(scopes(f"10.0.{index // 256}.{index % 256}"))
        assert len(throttle._failures) <= 100

    anyio.run(scenario)


def test_two_processes_share_the_windows_in_redis():
    url = require_redis()
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> None:
        first, second = RedisThrottle(url, LIMITS, prefix=prefix), RedisThrottle(url, LIMITS, prefix=prefix)
        try:
            attacker = scopes("203.0.113.5")
            await first.fail(attacker)
            await second.fail(attacker)
            assert await _refusal(first, attacker) is None
            await first.fail(attacker)
            refused = await _refusal(second, attacker)
            assert refused is not None and 55 <= int(refused.headers["retry-after"]) <= 60
            assert await _refusal(second, scopes("198.51.100.1")) is None
            assert first.failures == second.failures == 0
        finally:
            keys = [key async for key in first.client.scan_iter(match=prefix + "*")]
            if keys:
                await first.client.delete(*keys)
            await first.aclose()
            await second.aclose()

    anyio.run(scenario)


@pytest.mark.timeout(30)
def test_an_unreachable_redis_falls_back_to_this_process_windows_not_to_no_limit():
    async def scenario() -> None:
        throttle = RedisThrottle("redis://127.0.0.1:1/0", LIMITS)
        attacker = scopes("203.0.113.5")
        for _ in range(3):
            await throttle.fail(attacker)
        refused = await _refusal(throttle, attacker)
        assert refused is not None and refused.status_code == 429
        assert throttle.failures >= 3
        await throttle.aclose()

    anyio.run(scenario)


def test_the_limits_are_settings_and_the_gateways_throttle_obeys_them():
    environ = {
        "GLASSKEY_ADMIN_TOKEN": "admin-token-never-printed-0123456789",
        "GLASSKEY_KEY_PEPPER": "pepper-never-printed-0123456789abcdef",
        "GLASSKEY_ENCRYPTION_KEY": "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI=",
        "GLASSKEY_SIGNIN_FAILURES_PER_ADDRESS_PER_MINUTE": "2",
        "GLASSKEY_SIGNIN_FAILURES_PER_ACCOUNT_PER_MINUTE": "5",
        "GLASSKEY_SIGNIN_FAILURES_PER_MINUTE": "7",
    }
    limits = signin_limits(load_settings(environ=environ))
    assert (limits.per_address, limits.per_account, limits.whole_gateway) == (2, 5, 7)
    throttle = build_throttle("", limits)

    async def scenario() -> None:
        attempt = scopes("203.0.113.9")
        for _ in range(2):
            await throttle.fail(attempt)
        refused = await _refusal(throttle, attempt)
        assert refused is not None and "this address" in refused.message

    anyio.run(scenario)
    with pytest.raises(SettingsError, match="GLASSKEY_SIGNIN_FAILURES_PER_MINUTE"):
        load_settings(environ={**environ, "GLASSKEY_SIGNIN_FAILURES_PER_MINUTE": "0"})
