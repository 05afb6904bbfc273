"""Two-phase transfers on a real wallet: holds, posts, voids, expiry, the floor and top-ups.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture) and ends with a clean audit.
Holds here are ``adjustment`` transfers: a posted ``charge`` needs a receipt (see test_audit).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from conftest_helpers import NOW
from glasskey.errors import ClientError, InvariantViolation, NotFound
from glasskey.ledger import (
    POSTED,
    SYSTEM_REVENUE,
    SYSTEM_TOPUP_SOURCE,
    VOIDED,
    CreatePending,
    InsufficientFunds,
    ResolvePending,
    Transfer,
    TransferNotPending,
    audit,
    create_pending,
    create_posted,
    expire_pending,
    get_balance,
    get_transfer,
    list_transfers,
    pending_transfer,
    post_pending,
    void_pending,
)
from glasskey.ledger.transfers import _FIELDS
from glasskey.orgs.service import create_org, get_wallet, list_wallets, top_up
from glasskey.store.batch import Batch
from glasskey.store.commands import run_commands
from glasskey.store.database import Database
from glasskey.store.tables import transfers

REVENUE = SYSTEM_REVENUE["official"]
HOLD_TTL = timedelta(minutes=15)


def funded_org(db: Database, name: str = "acme", amount_micros: int = 1_000_000) -> tuple[str, str]:
    """An org whose credit wallet holds ``amount_micros``; returns (org id, wallet account id)."""
    with db.write() as conn:
        org = create_org(conn, name, NOW)
        if amount_micros:
            top_up(conn, org.id, "credit", amount_micros, NOW)
        return org.id, get_wallet(conn, org.id, "credit").account_id


def hold(conn: Connection, account_id: str, amount_micros: Any, *, expires_at: datetime | None = None) -> Transfer:
    command = hold_command(account_id, amount_micros, expires_at=expires_at)
    batch = Batch.now(conn)
    command.send(batch)
    return command.finish(batch)


def hold_command(account_id: str, amount_micros: Any, *, expires_at: datetime | None = None) -> CreatePending:
    return CreatePending(
        pending_transfer(
            debit_account_id=account_id,
            credit_account_id=REVENUE,
            amount_micros=amount_micros,
            now=NOW,
            expires_at=expires_at or NOW + HOLD_TTL,
            kind="adjustment",
        )
    )


def balances(db: Database, account_id: str) -> tuple[int, int, int]:
    """(posted, held, available) of one account."""
    with db.read() as conn:
        b = get_balance(conn, account_id)
    return b.posted_micros, b.held_micros, b.available_micros


def transfer_count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(transfers)) or 0)


def assert_coherent(db: Database) -> None:
    with db.read() as conn:
        report = audit(conn)
    assert report.ok, report.problems


def test_new_org_has_an_empty_credit_and_routed_wallet_with_a_zero_floor(db: Database) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        wallets = list_wallets(conn, org.id)
    assert [w.kind for w in wallets] == ["credit", "routed"]
    assert wallets[0].account_id != wallets[1].account_id
    for wallet in wallets:
        assert (wallet.balance.posted_micros, wallet.balance.held_micros, wallet.balance.available_micros) == (0, 0, 0)
        assert wallet.balance.floor_micros == 0
    assert_coherent(db)


def test_top_up_credits_the_wallet_and_debits_the_topup_source(db: Database) -> None:
    org_id, wallet = funded_org(db, amount_micros=2_500_000)
    assert balances(db, wallet) == (2_500_000, 0, 2_500_000)
    # The source goes negative by exactly the money that entered the system.
    assert balances(db, SYSTEM_TOPUP_SOURCE)[0] == -2_500_000
    with db.read() as conn:
        routed = get_wallet(conn, org_id, "routed").balance
    assert routed.posted_micros == 0
    assert_coherent(db)


def test_hold_moves_money_from_available_to_held(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 300_000)
    assert transfer.status == "pending"
    assert transfer.posted_amount_micros is None
    assert balances(db, wallet) == (1_000_000, 300_000, 700_000)
    with db.read() as conn:
        assert get_balance(conn, REVENUE).posted_micros == 0
    assert transfer_count(db) == 2  # the top-up and the hold
    assert_coherent(db)


def test_posting_less_than_the_hold_charges_that_and_releases_the_rest(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 300_000)
    with db.write() as conn:
        posted = post_pending(conn, transfer.id, 120_000, NOW + timedelta(seconds=5))
    assert posted.status == "posted"
    assert posted.posted_amount_micros == 120_000
    assert posted.amount_micros == 300_000
    assert posted.resolved_at == NOW + timedelta(seconds=5)
    assert balances(db, wallet) == (880_000, 0, 880_000)
    with db.read() as conn:
        revenue = get_balance(conn, REVENUE)
    # Revenue gained exactly what the wallet lost, and holds nothing any more.
    assert (revenue.posted_micros, revenue.held_micros) == (120_000, 0)
    assert_coherent(db)


def test_posting_the_whole_hold_or_nothing_at_all_is_allowed(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        whole = hold(conn, wallet, 200_000)
        nothing = hold(conn, wallet, 100_000)
    with db.write() as conn:
        post_pending(conn, whole.id, 200_000, NOW)
        zero = post_pending(conn, nothing.id, 0, NOW)
    assert zero.status == "posted"
    assert zero.posted_amount_micros == 0
    assert balances(db, wallet) == (800_000, 0, 800_000)
    assert_coherent(db)


def test_void_releases_the_whole_hold(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 400_000)
    with db.write() as conn:
        voided = void_pending(conn, transfer.id, NOW)
    assert voided.status == "voided"
    assert voided.posted_amount_micros is None
    assert balances(db, wallet) == (1_000_000, 0, 1_000_000)
    assert_coherent(db)


def test_posting_above_the_hold_is_an_invariant_violation_and_changes_nothing(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 300_000)
    with pytest.raises(InvariantViolation), db.write() as conn:
        post_pending(conn, transfer.id, 300_001, NOW)
    with db.read() as conn:
        assert get_transfer(conn, transfer.id).status == "pending"
    assert balances(db, wallet) == (1_000_000, 300_000, 700_000)
    assert_coherent(db)


SETTLE_TWICE = {
    "post_then_post": ("post", "post"),
    "post_then_void": ("post", "void"),
    "void_then_post": ("void", "post"),
    "void_then_void": ("void", "void"),
}


@pytest.mark.parametrize("steps", list(SETTLE_TWICE.values()), ids=list(SETTLE_TWICE))
def test_a_hold_is_settled_at_most_once(db: Database, steps: tuple[str, str]) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 300_000)

    def settle(conn: Connection, step: str) -> Transfer:
        if step == "post":
            return post_pending(conn, transfer.id, 100_000, NOW)
        return void_pending(conn, transfer.id, NOW)

    with db.write() as conn:
        first = settle(conn, steps[0])
    after_first = balances(db, wallet)
    with pytest.raises(TransferNotPending), db.write() as conn:
        settle(conn, steps[1])
    assert balances(db, wallet) == after_first
    with db.read() as conn:
        assert get_transfer(conn, transfer.id) == first
    assert_coherent(db)


def test_expire_pending_releases_only_holds_past_their_time_and_returns_them(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        early = hold(conn, wallet, 100_000, expires_at=NOW + timedelta(minutes=1))
        on_the_dot = hold(conn, wallet, 50_000, expires_at=NOW + timedelta(minutes=5))
        late = hold(conn, wallet, 200_000, expires_at=NOW + timedelta(minutes=30))
        settled = hold(conn, wallet, 10_000, expires_at=NOW + timedelta(minutes=1))
        post_pending(conn, settled.id, 10_000, NOW)
    with db.write() as conn:
        expired = expire_pending(conn, NOW + timedelta(minutes=5))
    assert {t.id for t in expired} == {early.id, on_the_dot.id}
    assert all(t.status == "expired" and t.posted_amount_micros is None for t in expired)
    assert balances(db, wallet) == (990_000, 200_000, 790_000)
    with db.read() as conn:
        assert get_transfer(conn, late.id).status == "pending"
        assert get_transfer(conn, settled.id).status == "posted"
    # A second sweep at the same time finds nothing more to do.
    with db.write() as conn:
        assert expire_pending(conn, NOW + timedelta(minutes=5)) == []
    assert_coherent(db)


def test_expire_pending_respects_its_limit(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        for _ in range(5):
            hold(conn, wallet, 1_000, expires_at=NOW)
    with db.write() as conn:
        first = expire_pending(conn, NOW, limit=3)
    with db.write() as conn:
        second = expire_pending(conn, NOW, limit=3)
    assert (len(first), len(second)) == (3, 2)
    assert balances(db, wallet) == (1_000_000, 0, 1_000_000)
    assert_coherent(db)


def test_an_expired_hold_can_no_longer_be_posted(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 100_000, expires_at=NOW + timedelta(minutes=1))
    with db.write() as conn:
        expire_pending(conn, NOW + timedelta(minutes=2))
    with pytest.raises(TransferNotPending), db.write() as conn:
        post_pending(conn, transfer.id, 100_000, NOW + timedelta(minutes=3))
    assert balances(db, wallet) == (1_000_000, 0, 1_000_000)
    assert_coherent(db)


def test_a_hold_past_its_time_can_still_be_posted_until_the_sweep_ends_it(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 100_000, expires_at=NOW + timedelta(minutes=1))
    with db.write() as conn:
        post_pending(conn, transfer.id, 60_000, NOW + timedelta(minutes=10))
    with db.write() as conn:
        assert expire_pending(conn, NOW + timedelta(minutes=11)) == []
    assert balances(db, wallet) == (940_000, 0, 940_000)
    assert_coherent(db)


def test_hold_above_available_balance_is_refused_and_changes_nothing(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        hold(conn, wallet, 600_000)
    before = transfer_count(db)
    with pytest.raises(InsufficientFunds) as caught, db.write() as conn:
        hold(conn, wallet, 400_001)
    assert caught.value.source == "wallet"
    assert caught.value.status_code == 402
    assert transfer_count(db) == before
    assert balances(db, wallet) == (1_000_000, 600_000, 400_000)
    with db.read() as conn:
        assert get_balance(conn, REVENUE).held_micros == 0
    assert_coherent(db)


def test_hold_of_exactly_the_available_balance_leaves_it_at_the_floor(db: Database) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        hold(conn, wallet, 1_000_000)
    assert balances(db, wallet) == (1_000_000, 1_000_000, 0)
    with pytest.raises(InsufficientFunds), db.write() as conn:
        hold(conn, wallet, 1)
    assert_coherent(db)


def test_a_wallet_with_nothing_in_it_refuses_any_positive_hold(db: Database) -> None:
    _, wallet = funded_org(db, amount_micros=0)
    with pytest.raises(InsufficientFunds), db.write() as conn:
        hold(conn, wallet, 1)
    assert balances(db, wallet) == (0, 0, 0)


def test_a_refused_direct_charge_leaves_no_transfer_even_when_its_transaction_goes_on(db: Database) -> None:
    # Settlement catches this refusal and commits the rest of its work (the receipt).
    _, wallet = funded_org(db, amount_micros=0)
    with db.write() as conn, pytest.raises(InsufficientFunds):
        create_posted(
            conn, debit_account_id=wallet, credit_account_id=REVENUE, amount_micros=5, now=NOW, kind="adjustment"
        )
    assert transfer_count(db) == 0
    assert balances(db, wallet) == (0, 0, 0)
    assert_coherent(db)


def test_a_refused_hold_changes_nothing_even_when_its_transaction_goes_on(db: Database) -> None:
    # The group-commit writer runs holds without a savepoint and commits the batch after a refusal.
    _, wallet = funded_org(db)
    before = transfer_count(db)
    with db.write() as conn:
        with pytest.raises(InsufficientFunds):
            hold(conn, wallet, 1_000_001)
        with pytest.raises(NotFound):
            hold(conn, "wal_does_not_exist", 1)
        kept = hold(conn, wallet, 1_000_000)
    assert transfer_count(db) == before + 1
    assert balances(db, wallet) == (1_000_000, 1_000_000, 0)
    with db.read() as conn:
        assert get_transfer(conn, kept.id).status == "pending"
    assert_coherent(db)


def test_holding_on_an_unknown_account_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound), db.write() as conn:
        hold(conn, "wal_does_not_exist", 1)
    assert transfer_count(db) == 0


def test_negative_amounts_are_refused_everywhere(db: Database) -> None:
    org_id, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 100_000)
    before = balances(db, wallet)
    with pytest.raises(ClientError), db.write() as conn:
        hold(conn, wallet, -1)
    with pytest.raises(ClientError), db.write() as conn:
        post_pending(conn, transfer.id, -1, NOW)
    with pytest.raises(ClientError), db.write() as conn:
        top_up(conn, org_id, "credit", -5, NOW)
    with pytest.raises(ClientError), db.write() as conn:
        top_up(conn, org_id, "credit", 0, NOW)
    with pytest.raises(ClientError), db.write() as conn:
        create_posted(
            conn, debit_account_id=wallet, credit_account_id=REVENUE, amount_micros=-1, now=NOW, kind="adjustment"
        )
    assert balances(db, wallet) == before
    assert_coherent(db)


@pytest.mark.parametrize("amount", [1.0, 0.5, True], ids=["float", "fraction", "bool"])
def test_amounts_that_are_not_integers_are_refused(db: Database, amount: Any) -> None:
    _, wallet = funded_org(db)
    with db.write() as conn:
        transfer = hold(conn, wallet, 100_000)
    before = balances(db, wallet)
    with pytest.raises(TypeError), db.write() as conn:
        hold(conn, wallet, amount)
    with pytest.raises(TypeError), db.write() as conn:
        post_pending(conn, transfer.id, amount, NOW)
    with pytest.raises(TypeError), db.write() as conn:
        create_posted(
            conn, debit_account_id=wallet, credit_account_id=REVENUE, amount_micros=amount, now=NOW, kind="adjustment"
        )
    assert balances(db, wallet) == before
    assert_coherent(db)


def test_top_up_replayed_with_the_same_idempotency_key_moves_money_once(db: Database) -> None:
    org_id, wallet = funded_org(db, amount_micros=0)
    with db.write() as conn:
        first = top_up(conn, org_id, "credit", 5_000_000, NOW, idempotency_key="invoice-42")
    with db.write() as conn:
        again = top_up(conn, org_id, "credit", 5_000_000, NOW + timedelta(hours=1), idempotency_key="invoice-42")
    assert first.replayed is False
    assert again.replayed is True
    assert again.id == first.id
    assert again.created_at == first.created_at
    assert balances(db, wallet) == (5_000_000, 0, 5_000_000)
    assert_coherent(db)


def test_top_ups_without_an_idempotency_key_are_never_merged(db: Database) -> None:
    org_id, wallet = funded_org(db, amount_micros=0)
    with db.write() as conn:
        first = top_up(conn, org_id, "credit", 1_000, NOW)
        second = top_up(conn, org_id, "credit", 1_000, NOW)
    assert first.id != second.id
    assert balances(db, wallet) == (2_000, 0, 2_000)


@pytest.mark.parametrize("change", ["amount", "wallet"])
def test_reusing_an_idempotency_key_for_a_different_top_up_is_a_conflict(db: Database, change: str) -> None:
    org_id, wallet = funded_org(db, amount_micros=0)
    with db.write() as conn:
        top_up(conn, org_id, "credit", 5_000_000, NOW, idempotency_key="invoice-42")
    amount, kind = (6_000_000, "credit") if change == "amount" else (5_000_000, "routed")
    with pytest.raises(ClientError) as caught, db.write() as conn:
        top_up(conn, org_id, kind, amount, NOW, idempotency_key="invoice-42")
    assert caught.value.status_code == 409
    assert caught.value.code == "idempotency_key_reused"
    assert balances(db, wallet) == (5_000_000, 0, 5_000_000)
    with db.read() as conn:
        assert get_wallet(conn, org_id, "routed").balance.posted_micros == 0
    assert_coherent(db)


def test_list_transfers_shows_an_accounts_movements_newest_first(db: Database) -> None:
    org_id, wallet = funded_org(db, amount_micros=0)
    with db.write() as conn:
        top_up(conn, org_id, "credit", 1_000, NOW)
        top_up(conn, org_id, "credit", 2_000, NOW + timedelta(seconds=1))
        create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=REVENUE,
            amount_micros=500,
            now=NOW + timedelta(seconds=2),
            expires_at=NOW + HOLD_TTL,
            kind="adjustment",
        )
    with db.read() as conn:
        listed = list_transfers(conn, wallet)
        older = list_transfers(conn, wallet, before=NOW + timedelta(seconds=1))
        limited = list_transfers(conn, wallet, limit=1)
    assert [t.amount_micros for t in listed] == [500, 2_000, 1_000]
    assert [t.amount_micros for t in older] == [1_000]
    assert [t.amount_micros for t in limited] == [500]


def test_transfers_keep_their_instants_whatever_the_time_zone_of_the_clock(db: Database) -> None:
    # SQLite keeps only wall-clock digits: a non-UTC time must still be stored as its UTC instant.
    _, wallet = funded_org(db)
    plus_two = timezone(timedelta(hours=2))
    with db.write() as conn:
        # Expires at 11:00 UTC, written as 13:00+02:00.
        transfer = create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=REVENUE,
            amount_micros=1_000,
            now=(NOW - timedelta(hours=2)).astimezone(plus_two),
            expires_at=(NOW - timedelta(hours=1)).astimezone(plus_two),
            kind="adjustment",
        )
    assert transfer.expires_at == NOW - timedelta(hours=1)
    with db.write() as conn:
        expired = expire_pending(conn, NOW)
    assert [t.id for t in expired] == [transfer.id]


def test_holds_and_settlements_sent_in_one_pipeline_are_checked_in_order(db: Database) -> None:
    # The group-commit writer sends a batch's holds together and reads their answers afterwards.
    _, wallet = funded_org(db)
    posted = hold_in(db, wallet, 100_000)
    voided = hold_in(db, wallet, 100_000)
    with db.write() as conn:
        void_pending(conn, voided.id, NOW)
    before = transfer_count(db)
    with db.write() as conn:
        batch = Batch.group(conn)
        fits = hold_command(wallet, 500_000)
        too_much = hold_command(wallet, 400_001)
        posting = ResolvePending(posted.id, POSTED, 60_000, NOW)
        voiding_again = ResolvePending(voided.id, VOIDED, None, NOW)
        commands: list[CreatePending | ResolvePending] = [fits, too_much, posting, voiding_again]
        for command in commands:
            command.send(batch)
        batch.flush()
        held = fits.finish(batch)
        with pytest.raises(InsufficientFunds):
            too_much.finish(batch)
        assert posting.finish(batch).status == "posted"
        with pytest.raises(TransferNotPending):
            voiding_again.finish(batch)
        batch.apply()
    assert transfer_count(db) == before + 1
    # 1,000,000 less 60,000 posted; 500,000 held by the hold that fit
    assert balances(db, wallet) == (940_000, 500_000, 440_000)
    with db.read() as conn:
        assert get_transfer(conn, held.id).status == "pending"
        assert get_transfer(conn, posted.id).posted_amount_micros == 60_000
    assert_coherent(db)


def hold_in(db: Database, account_id: str, amount_micros: int) -> Transfer:
    with db.write() as conn:
        return hold(conn, account_id, amount_micros)


def test_a_settlement_releases_its_hold_before_the_next_write_of_its_batch_holds(db: Database) -> None:
    # The writer sends every write it has taken before any write finishes: what a
    # settlement frees must be free by then, or a hold after it in the batch is refused for nothing.
    _, wallet = funded_org(db)
    first = hold_in(db, wallet, 800_000)

    settle = ResolvePending(first.id, POSTED, 100_000, NOW)
    hold_the_rest = hold_command(wallet, 900_000)
    with db.write() as conn:
        batch = Batch.group(conn)
        outcomes = run_commands(batch, [settle, hold_the_rest])
        batch.apply()
    assert [refusal for _, refusal in outcomes] == [None, None]
    assert balances(db, wallet) == (900_000, 900_000, 0)
    assert_coherent(db)


def test_a_returned_transfer_row_is_read_in_the_order_of_the_transfer_fields() -> None:
    # The driver's RETURNING row is passed to Transfer by position (ledger.transfers._from_returned).
    assert tuple(field.name for field in fields(Transfer) if field.name != "replayed") == _FIELDS
