"""Requests-per-minute limits on a sliding one-minute window, driven by an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glasskey.errors import BudgetError
from glasskey.keys.ratelimit import WINDOW_SECONDS, RateLimiter


def refusal(limiter: RateLimiter, key_id: str, rpm_limit: int, now: float) -> BudgetError:
    with pytest.raises(BudgetError) as caught:
        limiter.check(key_id, rpm_limit, now)
    return caught.value


def test_a_key_without_a_limit_is_never_limited() -> None:
    limiter = RateLimiter()
    for second in range(1_000):
        limiter.check("key_a", None, second / 100)


def test_the_request_past_the_limit_within_a_minute_is_refused_with_a_retry_after() -> None:
    limiter = RateLimiter()
    for now in (0.0, 1.0, 2.0):
        limiter.check("key_a", 3, now)
    error = refusal(limiter, "key_a", 3, 3.0)
    assert error.source == "budget"
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert "3 requests per minute" in error.message
    # The oldest request (at 0 s) leaves the window at 60 s.
    assert error.headers == {"retry-after": "57"}


def test_waiting_the_retry_after_is_enough() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 1, 10.0)
    error = refusal(limiter, "key_a", 1, 25.0)
    retry_after = int(error.headers["retry-after"])
    assert retry_after == 45
    limiter.check("key_a", 1, 25.0 + retry_after)


def test_the_window_slides_rather_than_resetting_each_minute() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 2, 0.0)
    limiter.check("key_a", 2, 30.0)
    refusal(limiter, "key_a", 2, 59.9)
    limiter.check("key_a", 2, WINDOW_SECONDS)  # the request at 0 s has left the window
    refusal(limiter, "key_a", 2, 61.0)  # the one at 30 s and the one at 60 s are still in it


def test_refused_requests_do_not_count_against_the_limit() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 1, 0.0)
    for now in range(1, 60):
        refusal(limiter, "key_a", 1, float(now))
    limiter.check("key_a", 1, 60.0)


def test_keys_are_limited_independently() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 1, 0.0)
    limiter.check("key_b", 1, 0.0)
    refusal(limiter, "key_a", 1, 1.0)
    limiter.check("key_c", 1, 1.0)


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 1, 0.0)
    assert refusal(limiter, "key_a", 1, 59.99).headers["retry-after"] == "1"


def test_waiting_the_retry_after_is_enough_even_for_a_fraction_of_a_millisecond() -> None:
    limiter = RateLimiter()
    limiter.check("key_a", 1, 0.0)
    error = refusal(limiter, "key_a", 1, 54.9995)
    limiter.check("key_a", 1, 54.9995 + int(error.headers["retry-after"]))


def test_a_limit_of_zero_refuses_every_request_with_a_429() -> None:
    limiter = RateLimiter()
    for now in (0.0, 30.0, 120.0):
        error = refusal(limiter, "key_a", 0, now)
        assert error.status_code == 429
        assert int(error.headers["retry-after"]) >= 1


# Times in 1/1024 s steps are exact in binary floating point, so only the limiter's rounding is tested.
TICKS = 1024


@given(first_ticks=st.integers(0, 10_000 * TICKS), gap_ticks=st.integers(0, int(WINDOW_SECONDS) * TICKS - 1))
def test_waiting_the_retry_after_is_always_enough(first_ticks: int, gap_ticks: int) -> None:
    first, gap = first_ticks / TICKS, gap_ticks / TICKS
    limiter = RateLimiter()
    limiter.check("key_a", 1, first)
    error = refusal(limiter, "key_a", 1, first + gap)
    limiter.check("key_a", 1, first + gap + int(error.headers["retry-after"]))
