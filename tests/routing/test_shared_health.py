"""Breakers shared through the real Redis: two boards stand for two gateway processes."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.exceptions import RedisError

from conftest_helpers import require_redis
from glasskey.routing.health import CLOSED, OPEN, BreakerPolicy
from glasskey.routing.shared_health import SharedHealthBoard

POLICY = BreakerPolicy(consecutive_failures=3, cooldown_seconds=0.3, half_open_probes=2)


@pytest.fixture
def boards():
    url = require_redis()
    prefix = f"glasskey:test:breaker:{uuid.uuid4().hex}:"
    made = [SharedHealthBoard(time.monotonic, url, POLICY, prefix=prefix) for _ in range(3)]
    for board in made:
        board.state("r")  # each process has selected the route once, as traffic does
    return made


def run(story, boards: list[SharedHealthBoard]) -> None:
    async def then_close() -> None:
        try:
            await story()
        finally:
            for board in boards:
                await board.aclose()

    asyncio.run(then_close())


async def sync(*boards: SharedHealthBoard) -> None:
    for board in boards:
        await board.sync_once()


def fail(board: SharedHealthBoard, times: int) -> None:
    for _ in range(times):
        board.record("r", ok=False, latency_ms=5, error_class="server_error")


def test_failures_reported_by_two_processes_open_the_breaker_for_all(boards):
    a, b, c = boards

    async def story() -> None:
        await sync(a, b, c)  # every process knows the route, all closed
        fail(a, 2)
        fail(b, 1)  # no process alone saw three in a row
        assert a.state("r") == CLOSED and b.state("r") == CLOSED
        await sync(a, b, c)
        await sync(a, b, c)
        for board in (a, b, c):
            assert board.state("r") == OPEN
            assert not board.try_acquire("r")
        assert c.snapshot("r")["circuit"] == OPEN

    run(story, boards)


def test_a_process_that_never_selected_the_route_learns_that_it_is_open(boards):
    a, _, _ = boards

    async def story() -> None:
        fail(a, 3)
        await sync(a)
        newcomer = SharedHealthBoard(time.monotonic, require_redis(), POLICY, prefix=a.prefix)
        try:
            await newcomer.sync_once()
            assert not newcomer.try_acquire("r")  # its first request skips the route, it never tries it
        finally:
            await newcomer.aclose()

    run(story, boards)


def test_only_the_lease_holder_probes_and_its_success_closes_the_breaker_everywhere(boards):
    a, b, c = boards

    async def story() -> None:
        await sync(a, b, c)
        fail(a, 3)  # a's own breaker opens: it says so
        await sync(a, b, c)
        assert not b.try_acquire("r")
        await asyncio.sleep(0.6)  # the shared cooldown (0.3 s) ends, with room for a slow machine
        await sync(b, a, c)  # b asks first and takes the probe lease
        admitted = [board.try_acquire("r") for board in (a, b, c) for _ in range(3)]
        assert admitted.count(True) == POLICY.half_open_probes  # the probes of one process, not three
        assert admitted[3:5] == [True, True]  # b's
        for _ in range(POLICY.half_open_probes):
            b.record("r", ok=True, latency_ms=5)
        await sync(b, a, c)
        for board in (a, b, c):
            assert board.state("r") == CLOSED
            assert board.try_acquire("r")

    run(story, boards)


def test_a_failed_probe_reopens_the_breaker_for_everyone(boards):
    a, b, _ = boards

    async def story() -> None:
        await sync(a, b)
        fail(a, 3)
        await sync(a, b)
        await asyncio.sleep(0.35)
        await sync(a, b)
        assert a.try_acquire("r")
        fail(a, 1)
        await sync(a, b)
        assert a.state("r") == OPEN and b.state("r") == OPEN
        assert b.snapshot("r")["reopens_in_seconds"] > 0

    run(story, boards)


def test_an_operator_lift_resets_the_shared_count_once(boards):
    a, b, _ = boards

    async def story() -> None:
        await sync(a, b)
        fail(a, 2)
        await sync(a)  # two in a row, shared
        a.force("r", OPEN)
        a.force("r", None)  # the operator's lift, written by process a: the shared count restarts
        await sync(a)
        fail(b, 1)  # without the reset this would be the third in a row
        await sync(b, a)
        assert a.state("r") == CLOSED and b.state("r") == CLOSED
        b.sync_forced("r", None)  # b learns of the lift from the route: it resets nothing in Redis
        fail(b, 2)
        await sync(b, a)
        assert a.state("r") == OPEN  # a saw none of these itself: 1 + 2 in a row since the lift, shared

    run(story, boards)


# Only the failure-rate rule can trip: 100 in a row never happen here.
RATE_POLICY = BreakerPolicy(consecutive_failures=100, failure_rate=0.5, minimum_requests=10, cooldown_seconds=30)


def rate_boards(prefix: str) -> list[SharedHealthBoard]:
    made = [SharedHealthBoard(time.monotonic, require_redis(), RATE_POLICY, prefix=prefix) for _ in range(3)]
    for board in made:
        board.state("r")
    return made


def alternate(board: SharedHealthBoard, failures: int, successes: int) -> None:
    """Failures and successes interleaved (never two failures in a row while successes remain)."""
    for index in range(failures + successes):
        ok = (index % 2 == 1 and index // 2 < successes) or index >= 2 * failures
        board.record("r", ok=ok, latency_ms=5, error_class=None if ok else "server_error")


def test_the_failure_rate_counts_every_process_outcomes_and_opens_the_breaker_for_all():
    prefix = f"glasskey:test:breaker:{uuid.uuid4().hex}:"
    a, b, c = boards = rate_boards(prefix)

    async def story() -> None:
        await sync(a, b, c)
        for board in (a, b, c):
            alternate(board, failures=2, successes=2)  # 50% failing, 4 requests: below 10 in each process
        await sync(a, b)
        assert a.state("r") == CLOSED and b.state("r") == CLOSED  # 8 requests shared so far: below 10
        await sync(c)  # 12 shared requests, 6 failed: the shared rate trips
        await sync(a, b)
        for board in (a, b, c):
            assert board.snapshot("r")["requests"] == 4  # no process alone saw enough to decide
            assert board.state("r") == OPEN and not board.try_acquire("r")

    run(story, boards)


def test_a_shared_failure_rate_below_the_policy_leaves_the_breaker_closed():
    prefix = f"glasskey:test:breaker:{uuid.uuid4().hex}:"
    a, b, c = boards = rate_boards(prefix)

    async def story() -> None:
        await sync(a, b, c)
        for board in (a, b, c):
            alternate(board, failures=1, successes=3)  # 25% failing, 12 shared requests
        await sync(a, b, c)
        await sync(a, b, c)
        for board in (a, b, c):
            assert board.state("r") == CLOSED and board.try_acquire("r")
        for board in (a, b, c):
            alternate(board, failures=3, successes=0)  # now 12 of 21 failed: over half
        await sync(a, b, c)
        await sync(a, b)
        assert all(board.state("r") == OPEN for board in (a, b, c))

    run(story, boards)


def test_without_redis_each_board_decides_alone_and_says_so():
    board = SharedHealthBoard(time.monotonic, "redis://127.0.0.1:1/0", POLICY)

    board.state("r")

    async def story() -> None:
        with pytest.raises(RedisError):
            await board.sync_once()
        assert not board.redis_up and board.sync_failures == 1
        fail(board, 3)
        assert board.state("r") == OPEN  # the local breaker still works
        await board.aclose()

    asyncio.run(story())
