"""A receiver that never answers: the attempt ends at the delivery timeout, is logged, and is retried later."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

from alert_helpers import VAULT, Clock
from conftest_helpers import NOW
from glasskey.alerts.delivery import DeliveryLimits, enqueue, list_deliveries
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.webhooks import set_webhook
from glasskey.orgs.service import create_org


def test_a_receiver_that_never_answers_fails_the_attempt_at_the_timeout_and_it_is_retried_later(sqlite_db):
    clock = Clock()
    # The timeout is a limit the runner is given (5 s in production): a fifth of a second here.
    limits = DeliveryLimits(timeout_seconds=0.2, retry_base_seconds=10)
    # A socket that listens and never accepts: the kernel completes the connection and takes the
    # request into its buffer, and no answer ever comes.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks/glasskey"
    try:
        with sqlite_db.write() as conn:
            org = create_org(conn, "acme", clock())
            set_webhook(conn, VAULT, org.id, url, clock(), allow_private=True)
            enqueue(conn, org.id, "alert.fired", {"id": "evt_1", "type": "alert.fired"}, clock(), limits)
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=True, limits=limits)
        first = asyncio.run(runner.deliver_due())
        clock.now = NOW + timedelta(seconds=9)  # not due yet: the first backoff is 10 s
        early = asyncio.run(runner.deliver_due())
        clock.now = NOW + timedelta(seconds=10)
        second = asyncio.run(runner.deliver_due())
        with sqlite_db.read() as conn:
            (delivery,) = list_deliveries(conn, org.id)
    finally:
        silent.close()
    assert (first, early, second) == (["pending"], [], ["pending"])
    assert delivery["status"] == "pending" and delivery["attempts"] == 2
    assert [answer["error"] for answer in delivery["answers"]] == ["no answer within 0.2 s"] * 2
    assert [answer["status_code"] for answer in delivery["answers"]] == [None, None]
    assert delivery["next_attempt_at"] == (NOW + timedelta(seconds=10 + 20)).isoformat()


def test_the_production_timeout_is_five_seconds():
    assert DeliveryLimits().timeout_seconds == 5.0
