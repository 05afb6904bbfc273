"""Top-ups are bounded one by one and in total, so no ledger counter can pass 2^63 - 1 (both engines).

On SQLite a counter pushed past 2^63 - 1 used to become a float, and ``audit()`` failed; the total
cap keeps every counter far below that, and the audit stays clean right up to it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from conftest_helpers import NOW
from glasskey.errors import ClientError
from glasskey.ledger import SYSTEM_TOPUP_SOURCE, audit, create_posted
from glasskey.limits import COUNTER_MAX, TOP_UP_MAX_MICROS, TOP_UPS_TOTAL_MAX_MICROS
from glasskey.orgs.service import create_org, get_wallet, top_up
from glasskey.store.database import Database
from glasskey.store.tables import accounts


def _counters(db: Database) -> list[int]:
    with db.read() as conn:
        rows = conn.execute(
            select(accounts.c.debits_posted, accounts.c.credits_posted, accounts.c.debits_pending)
        ).all()
    return [value for row in rows for value in row]


def test_one_top_up_above_its_maximum_is_refused(db: Database) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        for amount in (TOP_UP_MAX_MICROS + 1, 2**63, 10**30):
            with pytest.raises(ClientError) as caught:
                top_up(conn, org.id, "credit", amount, NOW)
            assert caught.value.code == "value_too_large" and caught.value.param == "amount_micros"
        top_up(conn, org.id, "credit", TOP_UP_MAX_MICROS, NOW)
        assert get_wallet(conn, org.id, "credit").balance.posted_micros == TOP_UP_MAX_MICROS


def test_cumulative_top_ups_stop_at_the_total_cap_and_the_audit_stays_clean(db: Database, database_url: str) -> None:
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        credit = get_wallet(conn, org.id, "credit").account_id
        # A long history, written in one transfer: all but half a maximal top-up of the total cap.
        create_posted(
            conn,
            debit_account_id=SYSTEM_TOPUP_SOURCE,
            credit_account_id=credit,
            amount_micros=TOP_UPS_TOTAL_MAX_MICROS - TOP_UP_MAX_MICROS // 2,
            now=NOW,
            kind="topup",
        )
        top_up(conn, org.id, "routed", TOP_UP_MAX_MICROS // 4, NOW, idempotency_key="last")
    refusals = 0
    for _ in range(50):  # a script topping up the maximum again and again
        try:
            with db.write() as conn:
                top_up(conn, org.id, "credit", TOP_UP_MAX_MICROS, NOW)
        except ClientError as error:
            assert error.code == "value_too_large"
            refusals += 1
    assert refusals == 50
    with db.write() as conn:  # a replay moves nothing, so the cap never refuses it
        assert top_up(conn, org.id, "routed", TOP_UP_MAX_MICROS // 4, NOW, idempotency_key="last").replayed
        total = conn.scalar(select(accounts.c.debits_posted).where(accounts.c.id == SYSTEM_TOPUP_SOURCE))
        report = audit(conn)
        if database_url.startswith("sqlite"):
            kinds = conn.execute(text("SELECT DISTINCT typeof(credits_posted), typeof(debits_posted) FROM accounts"))
            assert set(kinds.all()) == {("integer", "integer")}
    assert total is not None and total <= TOP_UPS_TOTAL_MAX_MICROS
    assert report.ok, report.problems
    assert max(_counters(db)) <= TOP_UPS_TOTAL_MAX_MICROS < COUNTER_MAX
