"""The sweep's evaluation round is leased: of two sweepers (two gateway processes) on one PostgreSQL
database, exactly one evaluates each period, even when both ask at the same instant. And a failing
evaluation does not stop the sweep's deliveries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import anyio
import pytest
from sqlalchemy import func, select

from alert_helpers import VAULT, Clock
from alert_receiver import receiver
from conftest_helpers import NOW, postgres_schema_url
from glasskey.alerts.delivery import DeliveryLimits, enqueue
from glasskey.alerts.lease import LEASE_SECONDS, take
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.tables import alert_deliveries
from glasskey.alerts.webhooks import set_webhook
from glasskey.ledger.accounts import ensure_system_accounts
from glasskey.orgs.service import create_org
from glasskey.pricing.catalog import sync_catalog
from glasskey.store.database import Database

ROUNDS = 4


class CountingRunner(AlertRunner):
    """A sweeper that counts its evaluations (each of which reads every org with a webhook)."""

    evaluations = 0

    def evaluate_all(self) -> int:
        self.evaluations += 1
        return super().evaluate_all()


@pytest.fixture
def pg_db() -> Iterator[Database]:
    for url in postgres_schema_url():
        database = Database(url)
        database.create_all()
        with database.write() as conn:
            ensure_system_accounts(conn, NOW)
            sync_catalog(conn)
        yield database
        database.dispose()


def _org_with_webhook(db: Database) -> str:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)  # empty wallets: two alerts past their threshold
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
    return org.id


def test_two_sweepers_on_postgresql_evaluate_once_per_round_even_asking_at_once(pg_db):
    clock = Clock()
    org_id = _org_with_webhook(pg_db)
    # Two processes' runners: each its own engine (its own connections), one database.
    other_db = Database(pg_db.url)
    sweepers = [
        CountingRunner(pg_db, VAULT, clock, allow_private=True),
        CountingRunner(other_db, VAULT, clock, allow_private=True),
    ]
    both_ask = threading.Barrier(2)

    def ask(runner: CountingRunner) -> int | None:
        both_ask.wait()
        return runner.evaluate_round()

    results = []
    try:
        with ThreadPoolExecutor(2) as pool:
            for round_number in range(ROUNDS):
                clock.now = NOW + timedelta(seconds=15 * round_number)
                results.append(list(pool.map(ask, sweepers)))
                # Within the same period, neither asks successfully again.
                clock.now += timedelta(seconds=14)
                assert [runner.evaluate_round() for runner in sweepers] == [None, None]
    finally:
        other_db.dispose()
    with pg_db.read() as conn:
        queued = conn.scalar(
            select(func.count()).select_from(alert_deliveries).where(alert_deliveries.c.org_id == org_id)
        )
    assert [sum(result is not None for result in pair) for pair in results] == [1] * ROUNDS
    assert sum(runner.evaluations for runner in sweepers) == ROUNDS
    assert [next(r for r in pair if r is not None) for pair in results] == [2, 0, 0, 0]
    assert queued == 2


def test_a_holder_that_died_mid_round_holds_it_no_longer_than_the_lease(db):
    clock = Clock()
    _org_with_webhook(db)
    survivor = CountingRunner(db, VAULT, clock, allow_private=True)
    with db.write() as conn:
        assert take(conn, "swp_dead", clock()) is True  # took the round, then died before giving it back
    clock.now = NOW + timedelta(seconds=LEASE_SECONDS - 1)
    held = survivor.evaluate_round()
    clock.now = NOW + timedelta(seconds=LEASE_SECONDS)
    taken = survivor.evaluate_round()
    assert held is None and taken == 2 and survivor.evaluations == 1


class BrokenEvaluation(AlertRunner):
    def evaluate_round(self) -> int | None:
        raise RuntimeError("alert_sweeps is missing")


def test_a_failing_evaluation_does_not_hold_back_the_deliveries_already_queued(sqlite_db):
    clock = Clock()
    with receiver() as hook:
        with sqlite_db.write() as conn:
            org = create_org(conn, "acme", NOW)
            set_webhook(conn, VAULT, org.id, hook.url, NOW, allow_private=True)
            enqueue(conn, org.id, "alert.fired", {"id": "evt_1"}, NOW, DeliveryLimits())
        runner = BrokenEvaluation(sqlite_db, VAULT, clock, allow_private=True, tick_seconds=0.01)

        async def sweep_until_delivered() -> None:
            with anyio.move_on_after(5):  # a bound on waiting, not a claim about speed
                async with anyio.create_task_group() as group:
                    group.start_soon(runner.run_forever)
                    while not hook.received:
                        await anyio.sleep(0.01)
                    group.cancel_scope.cancel()

        anyio.run(sweep_until_delivered)
    assert [got.body for got in hook.received] == [b'{"id":"evt_1"}']
