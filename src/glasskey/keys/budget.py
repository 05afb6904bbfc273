"""Key budgets: what a key has spent and holds, in total and per UTC day.

A request's hold is added to the key's ``held`` counters by a conditional ``UPDATE`` that
refuses to pass the budget, in the same transaction as the wallet hold; settlement moves the
actual charge from ``held`` to ``spent``. Concurrent requests therefore cannot overrun a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from glasskey.errors import BudgetError
from glasskey.keys.policy import KeyPolicy
from glasskey.money import format_micros
from glasskey.store.tables import key_spend

TOTAL = "total"


def day_period(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Spend:
    spent_micros: int
    held_micros: int


def _ensure_row(conn: Connection, key_id: str, period: str) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(key_spend)
        .values(key_id=key_id, period=period, spent_micros=0, held_micros=0)
        .on_conflict_do_nothing(index_elements=["key_id", "period"])
    )


def hold_budget(conn: Connection, key_id: str, policy: KeyPolicy, amount_micros: int, now: datetime) -> str:
    """Reserve ``amount_micros`` of the key's budgets; returns the day period it was held in."""
    day = day_period(now)
    for period, limit in ((TOTAL, policy.budget_total_micros), (day, policy.budget_daily_micros)):
        _ensure_row(conn, key_id, period)
        query = update(key_spend).where(key_spend.c.key_id == key_id, key_spend.c.period == period)
        if limit is not None:
            query = query.where(key_spend.c.spent_micros + key_spend.c.held_micros + amount_micros <= limit)
        result = conn.execute(query.values(held_micros=key_spend.c.held_micros + amount_micros))
        if result.rowcount != 1:
            label = "total" if period == TOTAL else "daily"
            raise BudgetError(
                f"This request may cost up to ${format_micros(amount_micros)}, more than what is left "
                f"of the key's {label} budget of ${format_micros(limit or 0)}",
                code=f"{label}_budget_exceeded",
            )
    return day


def settle_budget(conn: Connection, key_id: str, day: str, held_micros: int, charged_micros: int) -> None:
    """Release a hold taken by ``hold_budget`` and count what was actually charged."""
    for period in (TOTAL, day):
        conn.execute(
            update(key_spend)
            .where(key_spend.c.key_id == key_id, key_spend.c.period == period)
            .values(
                held_micros=key_spend.c.held_micros - held_micros,
                spent_micros=key_spend.c.spent_micros + charged_micros,
            )
        )


def get_spend(conn: Connection, key_id: str, period: str) -> Spend:
    row = conn.execute(
        select(key_spend.c.spent_micros, key_spend.c.held_micros).where(
            key_spend.c.key_id == key_id, key_spend.c.period == period
        )
    ).first()
    return Spend(row.spent_micros, row.held_micros) if row else Spend(0, 0)
