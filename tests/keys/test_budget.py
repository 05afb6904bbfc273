"""Key budgets: total and per UTC day, held while a request runs and spent when it settles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from conftest_helpers import NOW
from glasskey.errors import BudgetError
from glasskey.keys.budget import (
    TOTAL,
    Spend,
    day_period,
    get_spend,
    hold_budget,
    release_budget_hold,
    settle_budget,
)
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key
from glasskey.orgs.service import create_org
from glasskey.store.database import Database

PEPPER = "pepper-for-tests-0123456789abcdef"
TODAY = "2026-11-27"


def budgeted_key(
    db: Database, *, budget_total_micros: int | None = None, budget_daily_micros: int | None = None
) -> KeyRecord:
    policy = KeyPolicy(budget_total_micros=budget_total_micros, budget_daily_micros=budget_daily_micros)
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        key, _ = create_key(conn, pepper=PEPPER, org_id=org.id, name="job", policy=policy, now=NOW)
    return key


def hold(db: Database, key: KeyRecord, amount_micros: int, now: datetime = NOW) -> str:
    with db.write() as conn:
        return hold_budget(conn, key.id, key.policy, amount_micros, now)


def spend(db: Database, key: KeyRecord, period: str) -> Spend:
    with db.read() as conn:
        return get_spend(conn, key.id, period)


def test_a_key_without_budgets_holds_anything_and_counts_it(db: Database) -> None:
    key = budgeted_key(db)
    assert hold(db, key, 10**12) == TODAY
    assert hold(db, key, 5) == TODAY  # the rows exist now: the hold adds to them
    assert spend(db, key, TOTAL) == Spend(spent_micros=0, held_micros=10**12 + 5)
    assert spend(db, key, TODAY) == Spend(spent_micros=0, held_micros=10**12 + 5)


def test_a_key_that_never_spent_reports_zero_in_every_period(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=1_000)
    assert spend(db, key, TOTAL) == Spend(0, 0)
    assert spend(db, key, TODAY) == Spend(0, 0)


def test_a_hold_up_to_the_total_budget_is_allowed_and_one_micro_more_is_refused(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=1_000_000)
    hold(db, key, 600_000)
    hold(db, key, 400_000)
    with pytest.raises(BudgetError) as caught:
        hold(db, key, 1)
    assert caught.value.source == "budget"
    assert caught.value.status_code == 429
    assert caught.value.code == "total_budget_exceeded"
    assert "1.000000" in caught.value.message
    assert spend(db, key, TOTAL) == Spend(0, 1_000_000)


def test_a_refused_daily_hold_leaves_the_total_untouched(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=5_000_000, budget_daily_micros=1_000_000)
    hold(db, key, 900_000)
    with pytest.raises(BudgetError) as caught:
        hold(db, key, 200_000)
    assert caught.value.code == "daily_budget_exceeded"
    # The total row was raised before the daily one refused; the transaction undid it.
    assert spend(db, key, TOTAL) == Spend(0, 900_000)
    assert spend(db, key, TODAY) == Spend(0, 900_000)


def test_a_refused_daily_hold_leaves_nothing_even_when_its_transaction_commits(db: Database) -> None:
    # The group-commit writer runs holds without a savepoint: the refusal itself must undo the total.
    key = budgeted_key(db, budget_total_micros=5_000_000, budget_daily_micros=1_000_000)
    hold(db, key, 900_000)
    with db.write() as conn, pytest.raises(BudgetError):
        hold_budget(conn, key.id, key.policy, 200_000, NOW)
    assert spend(db, key, TOTAL) == Spend(0, 900_000)
    assert spend(db, key, TODAY) == Spend(0, 900_000)


def test_releasing_a_budget_hold_gives_back_both_periods_at_once(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=5_000_000)
    with db.write() as conn:
        period = hold_budget(conn, key.id, key.policy, 700_000, NOW)
        release_budget_hold(conn, key.id, key.policy, period, 700_000)
    assert spend(db, key, TOTAL) == Spend(0, 0)
    assert spend(db, key, TODAY) == Spend(0, 0)


def test_settling_moves_the_charge_from_held_to_spent_and_frees_the_rest(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=1_000_000, budget_daily_micros=800_000)
    period = hold(db, key, 500_000)
    with db.write() as conn:
        settle_budget(conn, key.id, period, 500_000, 300_000)
    assert spend(db, key, TOTAL) == Spend(spent_micros=300_000, held_micros=0)
    assert spend(db, key, TODAY) == Spend(spent_micros=300_000, held_micros=0)
    # What was held but not charged is available again: 500_000 of the daily budget is left.
    hold(db, key, 500_000)
    with pytest.raises(BudgetError):
        hold(db, key, 1)


def test_a_new_utc_day_resets_the_daily_budget_but_not_the_total(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=1_500_000, budget_daily_micros=1_000_000)
    last_second = datetime(2026, 11, 27, 23, 59, 59, tzinfo=UTC)
    period = hold(db, key, 1_000_000, last_second)
    with db.write() as conn:
        settle_budget(conn, key.id, period, 1_000_000, 1_000_000)
    with pytest.raises(BudgetError):
        hold(db, key, 1, last_second)
    next_day = last_second + timedelta(seconds=1)
    assert hold(db, key, 500_000, next_day) == "2026-11-28"
    assert spend(db, key, "2026-11-28") == Spend(0, 500_000)
    assert spend(db, key, TOTAL) == Spend(1_000_000, 500_000)
    with pytest.raises(BudgetError) as caught:
        hold(db, key, 1, next_day)
    assert caught.value.code == "total_budget_exceeded"


def test_a_zero_budget_refuses_any_charge_but_not_a_free_request(db: Database) -> None:
    key = budgeted_key(db, budget_total_micros=0)
    hold(db, key, 0)
    with pytest.raises(BudgetError):
        hold(db, key, 1)


def test_the_daily_period_is_the_utc_day_even_for_a_clock_in_another_zone() -> None:
    new_york = timezone(timedelta(hours=-5))
    # 20:00 in New York on the 27th is already 01:00 UTC on the 28th.
    assert day_period(datetime(2026, 11, 27, 20, 0, tzinfo=new_york)) == "2026-11-28"
