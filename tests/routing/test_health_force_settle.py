"""A force and its lifting take effect once: a stale cached route never re-applies the old force.

The bug seen under load: after a force was lifted, eight failures left the breaker closed with three
consecutive failures. Routes read from the one-second cache still carried the old force; each
selection re-applied it, and the next fresh copy lifted it again, resetting the count.
"""

from __future__ import annotations

from glasskey.routing.health import CLOSED, OPEN, BreakerPolicy, HealthBoard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(board: HealthBoard, times: int) -> None:
    for _ in range(times):
        board.record("r", ok=False, latency_ms=5, error_class="server_error")


def test_eight_failures_after_a_lift_open_the_breaker_despite_stale_copies_of_the_route():
    clock = Clock()
    board = HealthBoard(clock, BreakerPolicy(consecutive_failures=5), force_settle_seconds=2.0)
    board.force("r", CLOSED)  # the operator forces closed (this process wrote it)
    clock.now += 5
    board.force("r", None)  # ... and lifts it
    for _ in range(8):
        # Each selection hands the board the route it read; the cached copy still says "closed"
        # (the scenario), the fresh one says None.
        board.sync_forced("r", CLOSED)
        board.sync_forced("r", None)
        fail(board, 1)
        clock.now += 0.1
    snapshot = board.snapshot("r")
    assert snapshot["forced"] is None
    assert snapshot["circuit"] == OPEN
    assert snapshot["consecutive_failures"] == 8


def test_a_force_learnt_from_a_route_applies_once_and_a_later_change_is_not_lost():
    clock = Clock()
    board = HealthBoard(clock, BreakerPolicy(consecutive_failures=5), force_settle_seconds=2.0)
    board.sync_forced("r", OPEN)  # another process forced it; this one reads it from the route
    assert board.state("r") == OPEN
    clock.now += 0.5
    board.sync_forced("r", None)  # a copy read before the force: stale, ignored
    assert board.state("r") == OPEN
    clock.now += 2.0  # past the settle time: no cached copy is that old, so this is a real lift
    board.sync_forced("r", None)
    assert board.state("r") == CLOSED
    fail(board, 4)
    board.sync_forced("r", OPEN)  # stale copy from before the lift
    board.sync_forced("r", None)
    fail(board, 1)
    assert board.state("r") == OPEN  # five in a row: the stale copy did not reset the count


def test_the_operator_writing_a_force_is_never_held_back_by_the_settle_time():
    clock = Clock()
    board = HealthBoard(clock, force_settle_seconds=2.0)
    board.force("r", OPEN)
    board.force("r", None)  # lifted a moment later by the operator: applied at once
    assert board.state("r") == CLOSED
