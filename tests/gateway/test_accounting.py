"""The two commands of a request's money, run on a batch without a server or a writer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.errors import BudgetError
from glasskey.gateway.accounting import Held, Hold, Settlement
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.ledger import SYSTEM_REVENUE, InsufficientFunds, audit, get_balance, void_pending
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.receipts.records import Receipt
from glasskey.store.batch import Batch
from glasskey.store.database import Database
from glasskey.store.tables import receipts, transfers


def setup(db: Database, *, wallet_micros: int, policy: KeyPolicy) -> tuple[str, str]:
    """A funded org's routed wallet and a key on it: (wallet account id, key id)."""
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        if wallet_micros:
            top_up(conn, org.id, "routed", wallet_micros, NOW)
        record, _ = create_key(conn, pepper="p" * 32, org_id=org.id, name="k", policy=policy, now=NOW)
        return get_wallet(conn, org.id, "routed").account_id, record.id


def hold_of(wallet: str, key_id: str, policy: KeyPolicy, amount: int) -> Hold:
    return Hold(
        key_id=key_id,
        policy=policy,
        wallet_kind="routed",
        wallet_account_id=wallet,
        revenue_account_id=SYSTEM_REVENUE["routed"],
        amount_micros=amount,
        now=NOW,
        expires_at=NOW + timedelta(minutes=15),
        request_id="req_acc",
        memo="hold for test",
    )


def run(db: Database, command: Hold | Settlement) -> object:
    with db.write() as conn:
        batch = Batch.group(conn)
        job = batch.job()
        command.send(job)
        batch.flush()
        result = command.finish(job)
        batch.keep(job)
        batch.apply()
    return result


def receipt_row(request_id: str) -> dict[str, object]:
    return Receipt(request_id=request_id, endpoint="chat.completions", created_at=NOW, status="succeeded").row()


POLICY = KeyPolicy(settlement="routed", budget_total_micros=1_000_000)


def test_a_hold_then_its_settlement_charge_the_wallet_and_the_budget_once(db: Database):
    wallet, key_id = setup(db, wallet_micros=500_000, policy=POLICY)
    held = run(db, hold_of(wallet, key_id, POLICY, 200_000))
    assert isinstance(held, Held)
    with db.read() as conn:
        assert get_balance(conn, wallet).held_micros == 200_000
    settled = run(db, Settlement(held, 70_000, receipt_row("req_acc"), NOW))
    with db.read() as conn:
        assert get_balance(conn, wallet).available_micros == 430_000
        assert get_spend(conn, key_id, TOTAL).spent_micros == 70_000
        assert get_spend(conn, key_id, TOTAL).held_micros == 0
        row = conn.execute(select(receipts).where(receipts.c.request_id == "req_acc")).one()
        report = audit(conn)
    assert (row.charge_micros, row.transfer_id) == (70_000, held.transfer_id)
    assert settled.charge_micros == 70_000  # type: ignore[attr-defined]
    report.raise_if_broken()


def test_a_wallet_refusal_comes_from_finish_and_gives_back_the_budget_it_took(db: Database):
    wallet, key_id = setup(db, wallet_micros=100, policy=POLICY)
    with pytest.raises(InsufficientFunds, match="routed wallet has"):
        run(db, hold_of(wallet, key_id, POLICY, 200_000))
    with db.read() as conn:
        assert get_spend(conn, key_id, TOTAL).held_micros == 0
        assert conn.scalar(select(transfers.c.id).where(transfers.c.kind == "charge")) is None


def test_a_budget_refusal_comes_from_finish_and_touches_no_wallet(db: Database):
    wallet, key_id = setup(db, wallet_micros=5_000_000, policy=POLICY)
    with pytest.raises(BudgetError):
        run(db, hold_of(wallet, key_id, POLICY, 2_000_000))
    with db.read() as conn:
        assert get_balance(conn, wallet).held_micros == 0


def test_a_hold_run_again_after_its_batch_rolled_back_takes_the_same_transfer(db: Database):
    wallet, key_id = setup(db, wallet_micros=500_000, policy=POLICY)
    hold = hold_of(wallet, key_id, POLICY, 100_000)
    with pytest.raises(RuntimeError), db.write() as conn:
        batch = Batch.group(conn)
        hold.send(batch)
        batch.flush()
        first = hold.finish(batch)
        raise RuntimeError("another write of the batch failed")
    again = run(db, hold)
    assert isinstance(again, Held) and again.transfer_id == first.transfer_id
    with db.read() as conn:
        assert get_balance(conn, wallet).held_micros == 100_000


def test_a_settlement_whose_hold_is_gone_charges_directly_and_says_so(db: Database):
    wallet, key_id = setup(db, wallet_micros=500_000, policy=POLICY)
    held = run(db, hold_of(wallet, key_id, POLICY, 100_000))
    assert isinstance(held, Held)
    with db.write() as conn:
        void_pending(conn, held.transfer_id, NOW)  # as the sweep would have released it
    settled = run(db, Settlement(held, 40_000, receipt_row("req_late"), NOW))
    assert settled.flags == ("hold_expired_before_settlement",)  # type: ignore[attr-defined]
    with db.read() as conn:
        assert get_balance(conn, wallet).available_micros == 460_000
        row = conn.execute(select(receipts).where(receipts.c.request_id == "req_late")).one()
        audit(conn).raise_if_broken()
    assert row.flags == ["hold_expired_before_settlement"]
    assert row.charge_micros == 40_000 and row.transfer_id != held.transfer_id


def test_a_charge_above_its_hold_is_refused_before_anything_is_written(db: Database):
    held = Held("tr_x", 10, "2026-11-27", "acc_w", "acc_r", "key_x")
    with pytest.raises(ValueError):
        Settlement(held, 11, receipt_row("req_x"), NOW)
