"""The ledger refuses a movement that would take any counter past 2^63 - 1, on SQLite and PostgreSQL.

Accounts are pushed near the limit with direct SQL (a transfer row and its counters together, so
the ledger stays coherent), then holds, top-ups and settlements that would overflow are refused
with ``value_too_large``, nothing moves, the counters stay integers and ``audit()`` stays ok.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from conftest_helpers import NOW
from glasskey.errors import ClientError
from glasskey.keys.budget import TOTAL, get_spend, hold_budget
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import (
    CreatePending,
    audit,
    create_pending,
    create_posted,
    get_transfer,
    open_account,
    pending_transfer,
    post_pending,
    void_pending,
)
from glasskey.limits import COUNTER_MAX
from glasskey.orgs.service import create_org
from glasskey.store.database import Database
from glasskey.store.tables import accounts
from glasskey.store.writer import GroupCommitWriter

NEAR = COUNTER_MAX - 1000  # 1,000 micros of room left
HOLD: dict[str, Any] = {"now": NOW, "expires_at": NOW + timedelta(minutes=15), "kind": "adjustment"}


def open_accounts(db: Database, *names: str) -> None:
    with db.write() as conn:
        for name in names:
            open_account(conn, account_id=name, kind=name, now=NOW, floor_micros=None if "src" in name else 0)


def push(db: Database, debit: str, credit: str, amount: int, *, pending: bool = False) -> None:
    """Move ``amount`` with direct SQL: the transfer row and both counters, as the ledger would."""
    side = "pending" if pending else "posted"
    with db.write() as conn:
        conn.execute(
            text(
                "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_micros, posted_amount_micros,"
                " status, kind, memo, created_at) VALUES (:id, :debit, :credit, :amount, :posted, :status,"
                " 'adjustment', 'pushed', :now)"
            ),
            {
                "id": f"tr_push_{debit}_{credit}",
                "debit": debit,
                "credit": credit,
                "amount": amount,
                "posted": None if pending else amount,
                "status": "pending" if pending else "posted",
                "now": NOW,
            },
        )
        conn.execute(
            text(f"UPDATE accounts SET debits_{side} = debits_{side} + :a WHERE id = :i"), {"a": amount, "i": debit}
        )
        conn.execute(
            text(f"UPDATE accounts SET credits_{side} = credits_{side} + :a WHERE id = :i"), {"a": amount, "i": credit}
        )


def counters(db: Database) -> dict[str, tuple[object, ...]]:
    with db.read() as conn:
        rows = conn.execute(
            select(
                accounts.c.id,
                accounts.c.debits_posted,
                accounts.c.credits_posted,
                accounts.c.debits_pending,
                accounts.c.credits_pending,
            )
        )
        return {row.id: tuple(row[1:]) for row in rows}


def assert_refused(
    db: Database, before: dict[str, tuple[object, ...]], error: pytest.ExceptionInfo[ClientError]
) -> None:
    assert error.value.code == "value_too_large"
    assert error.value.source == "client" and error.value.status_code == 400
    after = counters(db)
    assert after == before  # nothing moved
    assert all(isinstance(value, int) for row in after.values() for value in row)
    with db.read() as conn:
        audit(conn).raise_if_broken()


def test_top_ups_that_would_overflow_either_side_are_refused(db):
    open_accounts(db, "src_a", "src_b", "wallet_a", "wallet_b")
    push(db, "src_a", "wallet_a", NEAR)  # src_a's debits and wallet_a's credits are nearly full
    before = counters(db)
    with pytest.raises(ClientError) as debit_full, db.write() as conn:
        create_posted(
            conn, debit_account_id="src_a", credit_account_id="wallet_b", amount_micros=2000, now=NOW, kind="topup"
        )
    assert_refused(db, before, debit_full)
    with pytest.raises(ClientError) as credit_full, db.write() as conn:
        create_posted(
            conn, debit_account_id="src_b", credit_account_id="wallet_a", amount_micros=2000, now=NOW, kind="topup"
        )
    assert_refused(db, before, credit_full)
    with db.write() as conn:  # what still fits moves
        create_posted(
            conn, debit_account_id="src_a", credit_account_id="wallet_b", amount_micros=1000, now=NOW, kind="topup"
        )
        audit(conn).raise_if_broken()


def test_holds_that_would_overflow_are_refused_at_once_and_in_the_writer(db):
    open_accounts(db, "src_a", "src_b", "wallet_a", "revenue")
    push(db, "src_a", "revenue", NEAR, pending=True)  # src_a holds and revenue is held nearly full
    push(db, "src_b", "wallet_a", 10**9)
    before = counters(db)
    with pytest.raises(ClientError) as debit_full, db.write() as conn:
        create_pending(conn, debit_account_id="src_a", credit_account_id="wallet_a", amount_micros=2000, **HOLD)
    assert_refused(db, before, debit_full)
    with pytest.raises(ClientError) as credit_full, db.write() as conn:
        create_pending(conn, debit_account_id="wallet_a", credit_account_id="revenue", amount_micros=2000, **HOLD)
    assert_refused(db, before, credit_full)

    # In the writer (one statement on PostgreSQL): the debit is refused by its statement; the
    # credit, deferred to the end of the batch, fails that write alone (its batch is retried),
    # with the same value_too_large as outside the writer.
    writer = GroupCommitWriter(db)
    try:
        with pytest.raises(ClientError) as in_writer:
            transfer = pending_transfer(
                debit_account_id="src_a", credit_account_id="wallet_a", amount_micros=2000, **HOLD
            )
            asyncio.run(writer.submit(CreatePending(transfer)))
        assert_refused(db, before, in_writer)
        with pytest.raises(ClientError) as credit_in_writer:
            transfer = pending_transfer(
                debit_account_id="wallet_a", credit_account_id="revenue", amount_micros=2000, **HOLD
            )
            asyncio.run(writer.submit(CreatePending(transfer)))
        assert_refused(db, before, credit_in_writer)
        assert "credits of account revenue" in credit_in_writer.value.message
        assert writer.isolated_failures == 1
    finally:
        writer.close()
    with db.read() as conn:
        audit(conn).raise_if_broken()


def test_a_credit_overflow_in_a_writer_batch_fails_the_guilty_write_alone_with_value_too_large(db):
    open_accounts(db, "src_a", "wallet_a", "revenue", "other_revenue")
    push(db, "src_a", "revenue", NEAR, pending=True)  # revenue's pending credits are nearly full
    push(db, "src_a", "wallet_a", 10**9)
    writer = GroupCommitWriter(db)

    async def both() -> list[Any]:
        guilty, innocent = (
            pending_transfer(debit_account_id="wallet_a", credit_account_id=credit, amount_micros=2000, **HOLD)
            for credit in ("revenue", "other_revenue")
        )
        answers = await asyncio.gather(
            writer.submit(CreatePending(guilty)), writer.submit(CreatePending(innocent)), return_exceptions=True
        )
        return list(answers)

    try:
        refused, held = asyncio.run(both())
    finally:
        writer.close()
    assert isinstance(refused, ClientError), refused
    assert (refused.code, refused.source, refused.status_code) == ("value_too_large", "client", 400)
    assert not isinstance(held, BaseException)  # the other write of the batch went through
    assert writer.isolated_failures == 1
    with db.read() as conn:
        assert get_transfer(conn, held.id).status == "pending"
        audit(conn).raise_if_broken()


def test_settlements_that_would_overflow_are_refused_and_the_hold_stays(db):
    open_accounts(db, "src_a", "src_b", "src_c", "revenue", "wallet_a")
    push(db, "src_a", "wallet_a", NEAR)  # src_a's posted debits are nearly full
    push(db, "src_b", "revenue", NEAR)  # so are revenue's posted credits
    with db.write() as conn:
        on_full_debit = create_pending(
            conn, debit_account_id="src_a", credit_account_id="src_c", amount_micros=2000, **HOLD
        )
        on_full_credit = create_pending(
            conn, debit_account_id="wallet_a", credit_account_id="revenue", amount_micros=2000, **HOLD
        )
    before = counters(db)
    for transfer in (on_full_debit, on_full_credit):
        with pytest.raises(ClientError) as refused, db.write() as conn:
            post_pending(conn, transfer.id, 1500, NOW)
        assert_refused(db, before, refused)
        with db.read() as conn:
            assert get_transfer(conn, transfer.id).status == "pending"
    with db.write() as conn:  # a void still releases, and a charge that fits is posted
        void_pending(conn, on_full_debit.id, NOW)
        post_pending(conn, on_full_credit.id, 1000, NOW)
        audit(conn).raise_if_broken()


def test_key_budget_counters_refuse_to_overflow(db):
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        key, _ = create_key(
            conn, pepper="pepper-for-tests-0123456789abcdef", org_id=org.id, name="job", policy=KeyPolicy(), now=NOW
        )
        day = hold_budget(conn, key.id, key.policy, 5, NOW)
        conn.execute(text("UPDATE key_spend SET held_micros = :near WHERE key_id = :k"), {"near": NEAR, "k": key.id})
    with pytest.raises(ClientError) as refused, db.write() as conn:
        hold_budget(conn, key.id, key.policy, 2000, NOW)
    assert refused.value.code == "value_too_large"
    with db.read() as conn:
        assert get_spend(conn, key.id, TOTAL).held_micros == NEAR
        assert get_spend(conn, key.id, day).held_micros == NEAR
