"""The audit finds every broken invariant when rows are corrupted behind the ledger's back.

Each test builds a coherent ledger (a top-up, a posted charge with its receipt, a voided hold),
checks the audit passes, then breaks exactly one thing with a direct SQL statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Connection, delete, update

from conftest_helpers import NOW
from glasskey.errors import InvariantViolation
from glasskey.ids import new_id
from glasskey.ledger import SYSTEM_REVENUE, audit, create_pending, post_pending, void_pending
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.receipts.records import Receipt, write_receipt
from glasskey.store.database import Database
from glasskey.store.tables import accounts, receipts, transfers

CHARGE_HELD = 5_000
CHARGE_POSTED = 3_000


@dataclass(frozen=True)
class Ledger:
    wallet: str
    charge_id: str
    voided_id: str
    request_id: str


def receipt(request_id: str, charge_micros: int, transfer_id: str | None) -> Receipt:
    return Receipt(
        request_id=request_id,
        endpoint="chat",
        created_at=NOW,
        status="succeeded",
        http_status=200,
        charge_micros=charge_micros,
        hold_micros=CHARGE_HELD,
        transfer_id=transfer_id,
    )


def build_ledger(db: Database) -> Ledger:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        wallet = get_wallet(conn, org.id, "routed").account_id
        request_id = new_id("req")
        charge = create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=SYSTEM_REVENUE["routed"],
            amount_micros=CHARGE_HELD,
            now=NOW,
            expires_at=NOW + timedelta(minutes=15),
            request_id=request_id,
        )
        post_pending(conn, charge.id, CHARGE_POSTED, NOW)
        write_receipt(conn, receipt(request_id, CHARGE_POSTED, charge.id))
        voided = create_pending(
            conn,
            debit_account_id=wallet,
            credit_account_id=SYSTEM_REVENUE["routed"],
            amount_micros=7_000,
            now=NOW,
            expires_at=NOW + timedelta(minutes=15),
        )
        void_pending(conn, voided.id, NOW)
    return Ledger(wallet=wallet, charge_id=charge.id, voided_id=voided.id, request_id=request_id)


def corrupt_and_audit(db: Database, corruption: Callable[[Connection, Ledger], object]) -> list[str]:
    ledger = build_ledger(db)
    with db.read() as conn:
        clean = audit(conn)
    assert clean.ok, clean.problems
    with db.write() as conn:
        corruption(conn, ledger)
    with db.read() as conn:
        report = audit(conn)
    assert not report.ok
    with pytest.raises(InvariantViolation):
        report.raise_if_broken()
    return report.problems


def mentions(problems: list[str], *words: str) -> bool:
    return any(all(word in problem for word in words) for problem in problems)


def test_a_coherent_ledger_passes_and_counts_what_it_checked(db: Database) -> None:
    build_ledger(db)
    with db.read() as conn:
        report = audit(conn)
    assert report.ok, report.problems
    report.raise_if_broken()
    assert report.transfers_checked == 3
    assert report.receipts_checked == 1
    assert report.accounts_checked == 5  # the top-up source, two revenues, two wallets
    assert report.receipt_charges_micros == report.posted_charges_micros == CHARGE_POSTED


def test_audit_detects_a_counter_that_disagrees_with_its_transfers(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(accounts).where(accounts.c.id == ledger.wallet).values(credits_posted=accounts.c.credits_posted + 1)
        ),
    )
    assert mentions(problems, "credits_posted=1000001 but its transfers sum to 1000000")
    assert mentions(problems, "posted debits", "!= credits")


def test_audit_detects_debits_and_credits_that_no_longer_balance(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(accounts)
            .where(accounts.c.id == SYSTEM_REVENUE["routed"])
            .values(credits_pending=accounts.c.credits_pending + 9)
        ),
    )
    assert mentions(problems, SYSTEM_REVENUE["routed"], "credits_pending")
    assert mentions(problems, "pending debits", "!= credits")


def test_audit_detects_a_wallet_below_its_floor(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(accounts).where(accounts.c.id == ledger.wallet).values(floor_micros=2_000_000)
        ),
    )
    assert mentions(problems, "is below its floor 2000000")


def test_audit_detects_a_transfer_that_posted_more_than_it_held(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(transfers).where(transfers.c.id == ledger.charge_id).values(posted_amount_micros=CHARGE_HELD + 1)
        ),
    )
    assert mentions(problems, "posted 5001 against a hold of 5000")


def test_audit_detects_a_negative_transfer_amount(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(transfers).where(transfers.c.id == ledger.voided_id).values(amount_micros=-1)
        ),
    )
    assert mentions(problems, "negative amount")


def test_audit_detects_a_voided_transfer_that_carries_a_posted_amount(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(transfers).where(transfers.c.id == ledger.voided_id).values(posted_amount_micros=1)
        ),
    )
    assert mentions(problems, "voided transfer", "carries a posted amount")


def test_audit_detects_a_transfer_with_an_unknown_status(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(transfers).where(transfers.c.id == ledger.voided_id).values(status="lost")
        ),
    )
    assert mentions(problems, "unknown status 'lost'")


def test_audit_detects_a_receipt_charge_without_a_posted_transfer(db: Database) -> None:
    problems = corrupt_and_audit(db, lambda conn, ledger: write_receipt(conn, receipt("req_orphan", 1_234, None)))
    assert mentions(problems, "receipt req_orphan charged 1234 with no posted transfer")
    assert mentions(problems, "receipts sum to")


def test_audit_detects_a_receipt_that_points_at_a_voided_transfer(db: Database) -> None:
    problems = corrupt_and_audit(
        db, lambda conn, ledger: write_receipt(conn, receipt("req_voided", 7_000, ledger.voided_id))
    )
    assert mentions(problems, "receipt req_voided", "no posted transfer")


def test_audit_detects_a_posted_charge_transfer_without_a_receipt(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(delete(receipts).where(receipts.c.request_id == ledger.request_id)),
    )
    assert mentions(problems, "posted charge", "has no receipt")
    assert mentions(problems, "receipts sum to 0 but posted charges to 3000")


def test_audit_detects_two_receipts_claiming_one_transfer(db: Database) -> None:
    problems = corrupt_and_audit(
        db, lambda conn, ledger: write_receipt(conn, receipt("req_twin", CHARGE_POSTED, ledger.charge_id))
    )
    assert mentions(problems, "is claimed by", "req_twin")


def test_audit_detects_a_receipt_charge_that_differs_from_the_posted_amount(db: Database) -> None:
    problems = corrupt_and_audit(
        db,
        lambda conn, ledger: conn.execute(
            update(receipts).where(receipts.c.request_id == ledger.request_id).values(charge_micros=2_999)
        ),
    )
    assert mentions(problems, "charged 2999 but transfer", "posted 3000")


def test_a_free_receipt_needs_no_transfer(db: Database) -> None:
    build_ledger(db)
    with db.write() as conn:
        write_receipt(conn, receipt("req_failed", 0, None))
    with db.read() as conn:
        report = audit(conn)
    assert report.ok, report.problems
    assert report.receipts_checked == 2
