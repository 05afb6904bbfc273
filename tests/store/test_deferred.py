"""Deferred writes: in the writer, a batch's increments of one row become one statement, and a
failed job's deferred writes vanish with it; outside the writer they run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import Connection, select

from conftest_helpers import NOW
from glasskey.errors import WalletError
from glasskey.ledger.accounts import open_account
from glasskey.store import deferred
from glasskey.store.database import Database
from glasskey.store.deferred import Deferred
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import accounts
from glasskey.store.writer import GroupCommitWriter

CREDIT = DriverStatement("UPDATE accounts SET credits_posted = credits_posted + :amount WHERE id = :id")


def credits(db: Database, account_id: str) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(accounts.c.credits_posted).where(accounts.c.id == account_id)) or 0)


def credit(amount: int, *, fail: bool = False) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        deferred.increment(conn, CREDIT, {"id": "acc_revenue"}, {"amount": amount})
        if fail:
            raise WalletError("refused after its credit was collected")

    return work


def test_increments_of_one_row_are_summed_into_one_statement() -> None:
    collected = Deferred()
    for amount in (1, 2, 3):
        collected.add(CREDIT, {"id": "acc_revenue"}, {"amount": amount})
    collected.add(CREDIT, {"id": "acc_other"}, {"amount": 10})
    assert collected.increments == {
        (CREDIT, (("id", "acc_revenue"),)): {"amount": 6},
        (CREDIT, (("id", "acc_other"),)): {"amount": 10},
    }


def test_in_the_writer_a_batch_applies_what_its_jobs_collected_and_drops_what_failed_jobs_did(db: Database) -> None:
    with db.write() as conn:
        open_account(conn, account_id="acc_revenue", kind="revenue", now=NOW, floor_micros=None)
    writer = GroupCommitWriter(db)

    async def run() -> tuple[BaseException | None, ...]:
        return await asyncio.gather(
            writer.submit(credit(1)),
            writer.submit(credit(100, fail=True)),
            writer.submit(credit(2)),
            writer.submit(credit(3)),
            return_exceptions=True,
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
        deferred.increment(conn, CREDIT, {"id": "acc_revenue"}, {"amount": 5})
        row = conn.execute(select(accounts.c.credits_posted).where(accounts.c.id == "acc_revenue")).scalar()
    assert row == 5
