"""Notices computed from the ledger, the key budgets and the receipts as they stand now.

Nothing is stored: a notice is true when it is read, and gone when its cause is. For each key:
50%, 80% and 100% of its total or daily budget used (spent plus held, since a hold is money the key
has already committed); a failure rate of ``FAILURE_RATE_PERCENT`` or more over the last
``FAILURE_WINDOW_MINUTES`` (with at least ``FAILURE_MIN_REQUESTS`` requests, so one failure of two is
not an alarm). For each wallet: nothing left to spend. Percentages are integer arithmetic on micros.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from glasskey.keys.budget import TOTAL, day_period, get_spend
from glasskey.keys.service import KeyRecord
from glasskey.orgs.service import list_wallets
from glasskey.store.tables import receipts

BUDGET_THRESHOLDS_PERCENT = (100, 80, 50)
FAILURE_RATE_PERCENT = 50
FAILURE_WINDOW_MINUTES = 15
FAILURE_MIN_REQUESTS = 10


def _budget_notice(key: KeyRecord, kind: str, used_micros: int, budget_micros: int | None) -> dict[str, Any] | None:
    if not budget_micros:
        return None
    used_percent = used_micros * 100 // budget_micros
    for threshold in BUDGET_THRESHOLDS_PERCENT:
        if used_percent >= threshold:
            return {
                "kind": f"key_budget_{kind}",
                "level": "critical" if threshold == 100 else "warning",
                "key": key.prefix,
                "key_id": key.id,
                "threshold_percent": threshold,
                "used_micros": used_micros,
                "budget_micros": budget_micros,
                "message": f"Key {key.name} ({key.prefix}) has used {used_percent}% of its {kind} budget",
            }
    return None


def _failure_rates(conn: Connection, key_ids: Sequence[str], since: datetime) -> dict[str, tuple[int, int]]:
    if not key_ids:
        return {}
    failed = func.sum(case((receipts.c.status != "succeeded", 1), else_=0))
    rows = conn.execute(
        select(receipts.c.key_id, func.count(), failed)
        .where(receipts.c.key_id.in_(key_ids))
        .where(receipts.c.created_at >= since)
        .group_by(receipts.c.key_id)
    )
    return {row[0]: (int(row[1]), int(row[2] or 0)) for row in rows}


def notices(conn: Connection, org_id: str, keys: Sequence[KeyRecord], now: datetime) -> list[dict[str, Any]]:
    """Every notice about ``keys`` (active ones) and the org's wallets, the most urgent first."""
    found: list[dict[str, Any]] = []
    for wallet in list_wallets(conn, org_id):
        if wallet.balance.available_micros <= 0:
            found.append(
                {
                    "kind": "wallet_empty",
                    "level": "critical",
                    "wallet": wallet.kind,
                    "available_micros": wallet.balance.available_micros,
                    "message": f"The {wallet.kind} wallet has nothing left to spend: keys paying from it are refused",
                }
            )
    active = [key for key in keys if key.status == "active"]
    for key in active:
        total, today = get_spend(conn, key.id, TOTAL), get_spend(conn, key.id, day_period(now))
        for notice in (
            _budget_notice(key, "total", total.spent_micros + total.held_micros, key.policy.budget_total_micros),
            _budget_notice(key, "daily", today.spent_micros + today.held_micros, key.policy.budget_daily_micros),
        ):
            if notice is not None:
                found.append(notice)
    rates = _failure_rates(conn, [key.id for key in active], now - timedelta(minutes=FAILURE_WINDOW_MINUTES))
    for key in active:
        requests, failures = rates.get(key.id, (0, 0))
        if requests >= FAILURE_MIN_REQUESTS and failures * 100 >= FAILURE_RATE_PERCENT * requests:
            found.append(
                {
                    "kind": "key_failures",
                    "level": "warning",
                    "key": key.prefix,
                    "key_id": key.id,
                    "requests": requests,
                    "failed": failures,
                    "message": (
                        f"Key {key.name} ({key.prefix}): {failures} of its {requests} requests in the last "
                        f"{FAILURE_WINDOW_MINUTES} minutes failed"
                    ),
                }
            )
    found.sort(key=lambda notice: notice["level"] != "critical")
    return found
