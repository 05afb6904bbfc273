"""Key budgets: what a key has spent and holds, in total and per UTC day.

A request's hold is added to the key's ``held`` counters by a conditional ``UPDATE`` that
refuses to pass the budget, in the same transaction as the wallet hold; settlement moves the
actual charge from ``held`` to ``spent``. Concurrent requests therefore cannot overrun a budget.
The same statements refuse to take a counter past 2^63 - 1 (``ledger.bounds``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, select

from glasskey.errors import BudgetError
from glasskey.keys.policy import KeyPolicy
from glasskey.ledger.bounds import bounded_sum, room_for
from glasskey.limits import counter_overflow
from glasskey.money import format_micros
from glasskey.store.batch import Batch
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import key_spend

TOTAL = "total"


def day_period(now: datetime) -> str:
    return _day_text(now.astimezone(UTC).date())


@functools.lru_cache(maxsize=8)
def _day_text(day: date) -> str:
    return day.isoformat()


@dataclass(frozen=True)
class Spend:
    spent_micros: int
    held_micros: int


# One statement per period: create the row holding the amount, or add to an existing row's hold
# only if the budget allows it (the upsert's WHERE). Zero rows changed means the budget said no
# (or, without a budget, that the counter is full). The budget's condition is a subtraction, so
# that no sum can overflow: ``:limit - :amount`` is never negative (a larger amount is refused first).
_HOLD = {
    limited: DriverStatement(
        "INSERT INTO key_spend (key_id, period, spent_micros, held_micros) VALUES (:key_id, :period, 0, :amount) "
        "ON CONFLICT (key_id, period) DO UPDATE SET held_micros = key_spend.held_micros + :amount WHERE "
        + (
            "key_spend.held_micros <= :limit - :amount - key_spend.spent_micros"
            if limited
            else room_for("key_spend.held_micros", ":amount")
        )
    )
    for limited in (True, False)
}
# Every unconditional change to a key's two counters (total and today) is this one upsert: a
# settlement, and the hold of a key without budgets (most keys), which nothing can refuse. A
# batch's changes of one key sum into a single statement (Batch.increment). An overflow sets NULL,
# which the column refuses (see ledger.bounds).
_CHANGE = DriverStatement(
    "INSERT INTO key_spend (key_id, period, spent_micros, held_micros) "
    "VALUES (:key_id, :total, :spent, :held), (:key_id, :day, :spent, :held) "
    f"ON CONFLICT (key_id, period) DO UPDATE SET "
    f"held_micros = {bounded_sum('key_spend.held_micros', 'excluded.held_micros')}, "
    f"spent_micros = {bounded_sum('key_spend.spent_micros', 'excluded.spent_micros')}"
)


_RELEASE_HELD = DriverStatement(
    "UPDATE key_spend SET held_micros = held_micros - :amount WHERE key_id = :key_id AND period IN (:first, :second)"
)


def hold_budget(target: Batch | Connection, key_id: str, policy: KeyPolicy, amount_micros: int, now: datetime) -> str:
    """Reserve ``amount_micros`` of the key's budgets; returns the day period it was held in.

    A refusal (``BudgetError``) leaves nothing held: a write of the group-commit writer promises it.
    """
    batch = Batch.of(target)
    day = day_period(now)
    if _unlimited(policy):
        # Nothing to check, so nothing to wait for: counted with the batch's other changes.
        _change(batch, key_id, day, held=amount_micros, spent=0)
        return day
    for period, limit in ((TOTAL, policy.budget_total_micros), (day, policy.budget_daily_micros)):
        params = {"key_id": key_id, "period": period, "amount": amount_micros, "limit": limit}
        # A first hold larger than the whole budget would insert unchecked; refuse it here.
        refused = limit is not None and amount_micros > limit
        if refused or batch.execute(_HOLD[limit is not None], params).rowcount != 1:
            if period != TOTAL:
                _release(batch, key_id, (TOTAL, TOTAL), amount_micros)  # the total was taken just now
            if limit is None:  # no budget to pass: the counter is full
                raise counter_overflow(f"the held budget of key {key_id}")
            label = "total" if period == TOTAL else "daily"
            raise BudgetError(
                f"This request may cost up to ${format_micros(amount_micros)}, more than what is left "
                f"of the key's {label} budget of ${format_micros(limit or 0)}",
                code=f"{label}_budget_exceeded",
            )
    return day


def release_budget_hold(
    target: Batch | Connection, key_id: str, policy: KeyPolicy, day: str, amount_micros: int
) -> None:
    """Undo a ``hold_budget``, for a hold refused after it took the budget: at once when the hold
    was checked (and so run at once), else with the hold it undoes."""
    batch = Batch.of(target)
    if _unlimited(policy):
        _change(batch, key_id, day, held=-amount_micros, spent=0)
    else:
        _release(batch, key_id, (TOTAL, day), amount_micros)


def _unlimited(policy: KeyPolicy) -> bool:
    return policy.budget_total_micros is None and policy.budget_daily_micros is None


def _change(batch: Batch, key_id: str, day: str, *, held: int, spent: int) -> None:
    batch.increment(
        _CHANGE,
        {"key_id": key_id, "total": TOTAL, "day": day},
        {"held": held, "spent": spent},
        what=f"the budget counters of key {key_id}",
    )


def _release(batch: Batch, key_id: str, periods: tuple[str, str], amount_micros: int) -> None:
    params = {"amount": amount_micros, "key_id": key_id, "first": periods[0], "second": periods[1]}
    batch.execute(_RELEASE_HELD, params)


def settle_budget(target: Batch | Connection, key_id: str, day: str, held_micros: int, charged_micros: int) -> None:
    """Release a hold taken by ``hold_budget`` and count what was actually charged."""
    _change(Batch.of(target), key_id, day, held=-held_micros, spent=charged_micros)


def get_spend(conn: Connection, key_id: str, period: str) -> Spend:
    row = conn.execute(
        select(key_spend.c.spent_micros, key_spend.c.held_micros).where(
            key_spend.c.key_id == key_id, key_spend.c.period == period
        )
    ).first()
    return Spend(row.spent_micros, row.held_micros) if row else Spend(0, 0)
