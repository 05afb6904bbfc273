"""Group commit: many writes share a transaction, each fails alone, and none is answered before its commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from conftest_helpers import NOW
from glasskey.errors import WalletError
from glasskey.store.database import Database
from glasskey.store.tables import orgs
from glasskey.store.writer import GroupCommitWriter


def insert_org(name: str) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.execute(orgs.insert().values(id=name, name=name, created_at=NOW))
        return name

    return work


def refuse_cleanly(conn: Connection) -> None:
    raise WalletError("refused before writing anything")


def refuse(conn: Connection) -> None:
    conn.execute(orgs.insert().values(id="doomed", name="doomed", created_at=NOW))
    raise WalletError("refused on purpose")


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(orgs)) or 0)


def test_concurrent_writes_are_batched_and_each_is_committed_before_it_is_answered(db):
    writer = GroupCommitWriter(db)
    seen_at_answer: list[int] = []

    async def one(index: int) -> str:
        name = await writer.submit(insert_org(f"org-{index}"))
        seen_at_answer.append(count(db))  # another connection already sees the committed row
        return name

    async def run() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(300)))

    try:
        names = asyncio.run(run())
    finally:
        writer.close()
    assert sorted(names) == sorted(f"org-{i}" for i in range(300))
    assert count(db) == 300
    assert min(seen_at_answer) >= 1
    assert writer.jobs == 300
    assert writer.batches < 300, "writes that arrive together share a commit"


@pytest.mark.parametrize("savepoint", [True, False])
def test_a_refused_write_fails_alone(db, savepoint: bool):
    # In its own savepoint a refusal may have written first; without one it promises it did not.
    refusal = refuse if savepoint else refuse_cleanly
    writer = GroupCommitWriter(db)

    async def run() -> Any:
        return await asyncio.gather(
            writer.submit(insert_org("kept-1"), savepoint=savepoint),
            writer.submit(refusal, savepoint=savepoint),
            writer.submit(insert_org("kept-2"), savepoint=savepoint),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results[0] == "kept-1" and results[2] == "kept-2"
    assert isinstance(results[1], WalletError)
    with db.read() as conn:
        assert sorted(conn.scalars(select(orgs.c.name))) == ["kept-1", "kept-2"]


def test_close_finishes_queued_writes(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)

    async def run() -> None:
        await writer.submit(insert_org("first"))

    asyncio.run(run())
    writer.close()
    assert count(sqlite_db) == 1
    with pytest.raises(AssertionError):
        assert writer._thread is not None


def test_a_hold_and_the_settlement_queued_soon_after_share_one_commit(db):
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    async def run() -> tuple[int, int]:
        await writer.submit(insert_org("held"), durable=False)  # answered before its commit
        seen_before_settlement = count(db)
        await writer.submit(insert_org("settled"))
        return seen_before_settlement, count(db)

    try:
        before, after = asyncio.run(run())
    finally:
        writer.close()
    assert before == 0, "the hold's transaction stays open for the settlement"
    assert after == 2
    assert writer.batches == 1


def test_a_lone_hold_is_committed_once_the_linger_runs_out(db):
    writer = GroupCommitWriter(db, linger_seconds=0.05)

    async def run() -> int:
        await writer.submit(insert_org("held"), durable=False)
        for _ in range(200):  # at most 2 s: the commit comes after the 50 ms linger
            if count(db) == 1:
                break
            await asyncio.sleep(0.01)
        return count(db)

    try:
        seen = asyncio.run(run())
    finally:
        writer.close()
    assert seen == 1
    assert writer.batches == 1


def test_an_unexpected_failure_without_a_savepoint_rolls_back_its_whole_batch(db):
    writer = GroupCommitWriter(db, linger_seconds=1.0)

    def half_done(conn: Connection) -> None:
        conn.execute(orgs.insert().values(id="half", name="half", created_at=NOW))
        raise RuntimeError("a bug after a write")

    async def run() -> Any:
        # The hold-like write lingers, so all four land in one batch.
        first = asyncio.ensure_future(writer.submit(insert_org("hold"), durable=False))
        await asyncio.sleep(0.05)
        return await asyncio.gather(
            first,
            writer.submit(insert_org("before"), savepoint=False),
            writer.submit(half_done, savepoint=False),
            writer.submit(insert_org("after")),
            return_exceptions=True,
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert results[0] == "hold"  # answered before the failure, as holds are
    assert all(isinstance(r, RuntimeError) for r in results[1:]), results
    assert count(db) == 0
    assert writer.batches == 1


def test_on_sqlite_the_wal_is_checkpointed_in_the_background_not_in_the_writers_commits(sqlite_db):
    writer = GroupCommitWriter(sqlite_db)
    writer.checkpoint_seconds = 0.02

    async def run() -> None:
        await writer.submit(insert_org("one"))

    try:
        asyncio.run(run())
        assert writer._conn is not None
        assert writer._conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        writer._conn.rollback()
        for _ in range(200):  # at most 2 s
            if writer.checkpoints:
                break
            time.sleep(0.01)
    finally:
        writer.close()
    assert writer.checkpoints >= 1
    assert writer._checkpointer is None, "closing the writer stops its checkpointer"
