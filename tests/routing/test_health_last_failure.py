"""A route's last failure outlives the health window: a quiet route that failed is never "untouched"."""

from __future__ import annotations

from glasskey.dashboard.filters import ago
from glasskey.routing.health import CLOSED, BreakerPolicy, HealthBoard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_last_failure_and_when_survive_the_window():
    clock = Clock()
    board = HealthBoard(clock, BreakerPolicy(window_seconds=60, cooldown_seconds=30))
    assert board.snapshot("r")["last_failure"] is None
    for _ in range(5):
        board.record("r", ok=False, latency_ms=5, error_class="server_error")
    clock.now += 70  # five failures, seventy seconds ago: outside the window, and the breaker half-open
    snapshot = board.snapshot("r")
    assert snapshot["requests"] == 0
    assert snapshot["last_failure"] == {"error_class": "server_error", "seconds_ago": 70.0}
    board.force("r", "open")
    board.force("r", None)  # lifting a force starts closed, and still remembers
    assert board.snapshot("r")["circuit"] == CLOSED
    assert board.snapshot("r")["last_failure"]["seconds_ago"] == 70.0


def test_a_success_does_not_erase_the_last_failure():
    clock = Clock()
    board = HealthBoard(clock)
    board.record("r", ok=False, latency_ms=5, error_class="timeout")
    clock.now += 5
    board.record("r", ok=True, latency_ms=5)
    assert board.snapshot("r")["last_failure"] == {"error_class": "timeout", "seconds_ago": 5.0}


def test_ago_reads_like_a_person_would_say_it():
    assert [ago(70), ago(300), ago(7300), ago(None)] == ["70 s ago", "5 min ago", "2 h ago", "-"]
