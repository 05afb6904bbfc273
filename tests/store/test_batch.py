"""A ``Batch`` says what each statement does: run now, go in the pipeline, or wait for the end of the batch."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, select

from conftest_helpers import NOW
from glasskey.errors import ClientError, WalletError
from glasskey.ledger.accounts import open_account
from glasskey.store.batch import Batch, Deferred
from glasskey.store.database import Database
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import UTCDateTime, accounts, orgs
from glasskey.store.writer import GroupCommitWriter

CREDIT = DriverStatement("UPDATE accounts SET credits_posted = credits_posted + :amount WHERE id = :id")
# Refuses a sum above 100 as the ledger's bounded sums refuse an overflow: NULL into a NOT NULL column.
CREDIT_UP_TO_100 = DriverStatement(
    "UPDATE accounts SET credits_posted = CASE WHEN credits_posted + :amount > 100 THEN NULL "
    "ELSE credits_posted + :amount END WHERE id = :id"
)
INSERT_ORG = DriverStatement(
    "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
)


def credits(db: Database, account_id: str) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(accounts.c.credits_posted).where(accounts.c.id == account_id)) or 0)


def org_names(conn: Connection) -> set[str]:
    return set(conn.scalars(select(orgs.c.name)))


class Credit:
    """A write that collects a credit, then may refuse."""

    def __init__(self, amount: int, *, fail: bool = False) -> None:
        self.amount = amount
        self.fail = fail

    def send(self, batch: Batch) -> None:
        batch.increment(CREDIT, {"id": "acc_revenue"}, {"amount": self.amount}, what="the revenue")

    def finish(self, batch: Batch) -> None:
        if self.fail:
            raise WalletError("refused after its credit was collected")


def test_increments_of_one_row_are_summed_into_one_statement() -> None:
    collected = Deferred()
    for amount in (1, 2, 3):
        collected.add(CREDIT, {"id": "acc_revenue"}, {"amount": amount}, "the revenue")
    collected.add(CREDIT, {"id": "acc_other"}, {"amount": 10}, "the other")
    assert collected.increments == {
        (CREDIT, (("id", "acc_revenue"),)): {"amount": 6},
        (CREDIT, (("id", "acc_other"),)): {"amount": 10},
    }


def test_in_the_writer_a_batch_applies_what_its_writes_collected_and_drops_what_refused_writes_did(
    db: Database,
) -> None:
    with db.write() as conn:
        open_account(conn, account_id="acc_revenue", kind="revenue", now=NOW, floor_micros=None)
    writer = GroupCommitWriter(db)

    async def run() -> list[BaseException | None]:
        return list(
            await asyncio.gather(
                writer.submit(Credit(1)),
                writer.submit(Credit(100, fail=True)),
                writer.submit(Credit(2)),
                writer.submit(Credit(3)),
                return_exceptions=True,
            )
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert isinstance(results[1], WalletError)
    assert credits(db, "acc_revenue") == 6


def test_outside_the_writer_a_deferrable_write_runs_at_once(db: Database) -> None:
    with db.write() as conn:
        open_account(conn, account_id="acc_revenue", kind="revenue", now=NOW, floor_micros=None)
        Batch.now(conn).increment(CREDIT, {"id": "acc_revenue"}, {"amount": 5}, what="the revenue")
        row = conn.execute(select(accounts.c.credits_posted).where(accounts.c.id == "acc_revenue")).scalar()
    assert row == 5


def test_statements_sent_in_a_group_run_together_when_it_is_flushed(db: Database) -> None:
    with db.write() as conn:
        batch = Batch.group(conn)
        first = batch.send(INSERT_ORG, {"id": "org_first", "name": "first", "created_at": NOW})
        second = batch.send(INSERT_ORG, {"id": "org_second", "name": "second", "created_at": NOW})
        seen_before_flush = org_names(conn)
        if db.dialect == "postgresql":
            with pytest.raises(RuntimeError, match="never flushed"):
                _ = first.cursor
        batch.flush()
        assert org_names(conn) == {"first", "second"}
        assert first.cursor.rowcount == 1 and second.cursor.rowcount == 1
    if db.dialect == "postgresql":  # PostgreSQL waits for the flush; SQLite has no round trips to save
        assert seen_before_flush == set()
    else:
        assert seen_before_flush == {"first", "second"}


def test_a_statement_sent_outside_the_writer_runs_at_once(db: Database) -> None:
    with db.write() as conn:
        sent = Batch.now(conn).send(INSERT_ORG, {"id": "org_now", "name": "now", "created_at": NOW})
        assert sent.cursor.rowcount == 1
        assert org_names(conn) == {"now"}


def test_a_writes_view_of_a_batch_keeps_its_deferred_writes_apart_until_kept(db: Database) -> None:
    with db.write() as conn:
        batch = Batch.group(conn)
        kept, dropped = batch.job(), batch.job()
        kept.insert(INSERT_ORG, {"id": "org_kept", "name": "kept", "created_at": NOW})
        dropped.insert(INSERT_ORG, {"id": "org_dropped", "name": "dropped", "created_at": NOW})
        batch.keep(kept)
        batch.apply()
        assert org_names(conn) == {"kept"}


def test_on_postgresql_a_group_commits_deferred_writes_go_in_one_pipeline(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no pipeline: its statements are no round trips")
    with db.write() as conn:
        open_account(conn, account_id="acc_revenue", kind="revenue", now=NOW, floor_micros=None)
        batch = Batch.group(conn)
        job = batch.job()
        job.increment(CREDIT, {"id": "acc_revenue"}, {"amount": 5}, what="the revenue")
        for name in ("first", "second"):
            job.insert(INSERT_ORG, {"id": f"org_{name}", "name": name, "created_at": NOW})
        batch.keep(job)
        driver = batch.driver
        pipelines: list[int] = []
        real_pipeline = driver.pipeline

        def counted_pipeline() -> object:
            pipelines.append(1)
            return real_pipeline()

        driver.pipeline = counted_pipeline  # the real psycopg pipeline, its entries counted
        batch.apply(pipeline=True)
        assert len(pipelines) == 1  # the increment and both inserts: one pipeline, one wait
        assert org_names(conn) == {"first", "second"}
    assert credits(db, "acc_revenue") == 5


def test_in_one_pipeline_an_overflow_fails_the_batch_and_applied_alone_it_names_its_counter(db: Database) -> None:
    with db.write() as conn:
        open_account(conn, account_id="acc_revenue", kind="revenue", now=NOW, floor_micros=None)
    for pipeline in (True, False):
        with pytest.raises(Exception) as refused, db.write() as conn:
            batch = Batch.group(conn)
            job = batch.job()
            job.increment(CREDIT_UP_TO_100, {"id": "acc_revenue"}, {"amount": 101}, what="the revenue's credits")
            batch.keep(job)
            batch.apply(pipeline=pipeline)
        if pipeline and db.dialect == "postgresql":
            # The writer retries such a batch write by write (GroupCommitWriter._isolate), without one.
            assert isinstance(refused.value, conn.dialect.dbapi.IntegrityError)  # type: ignore[union-attr]
        else:  # SQLite has no pipeline: at once, as alone
            assert isinstance(refused.value, ClientError)
            assert refused.value.code == "value_too_large"
            assert "the revenue's credits" in refused.value.message
    assert credits(db, "acc_revenue") == 0
