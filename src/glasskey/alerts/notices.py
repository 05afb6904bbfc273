"""Notices computed from the ledger, the key budgets and the receipts as they stand now, under the org's rules.

Nothing is stored here: a notice is true when it is read, and gone when its cause is. Which
thresholds apply is the org's rule book (``alerts.rules``: its own rules, else the defaults: 50, 80
and 100% of a key's total or daily budget, spent plus held since a hold is money the key has
already committed; half of a key's requests failed over the last 15 minutes, with at least 10 of
them, so one failure of two is not an alarm; a wallet with nothing left). Percentages are integer
arithmetic on micros.

``conditions`` lists every threshold crossed, each with an ``alert`` name (kind, subject and
threshold) that ``alerts.firing`` uses to send each crossing once; ``notices`` shows the highest
budget threshold of each key only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from glasskey.alerts.rules import KEY_BUDGET, KEY_FAILURE_RATE, RuleBook, rule_book
from glasskey.keys.budget import TOTAL, day_period
from glasskey.keys.service import KeyRecord
from glasskey.orgs.service import list_wallets
from glasskey.store.tables import key_spend, receipts

# Ids in one IN list: a bound on a statement's size, whatever the org's number of keys.
IDS_PER_QUERY_MAX = 500


def _budget_conditions(
    key: KeyRecord, kind: str, used_micros: int, budget_micros: int | None, percents: Sequence[int]
) -> list[dict[str, Any]]:
    if not budget_micros:
        return []
    used_percent = used_micros * 100 // budget_micros
    return [
        {
            "alert": f"key_budget_{kind}:{key.id}:{threshold}",
            "kind": f"key_budget_{kind}",
            "level": "critical" if threshold == 100 else "warning",
            "key": key.prefix,
            "key_id": key.id,
            "threshold_percent": threshold,
            "used_micros": used_micros,
            "budget_micros": budget_micros,
            "message": f"Key {key.name} ({key.prefix}) has used {used_percent}% of its {kind} budget",
        }
        for threshold in sorted(percents, reverse=True)
        if used_percent >= threshold
    ]


def _used(conn: Connection, key_ids: Sequence[str], periods: Sequence[str]) -> dict[tuple[str, str], int]:
    """Spent plus held per (key, period), read for many keys at once (a sweep reads a whole org)."""
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(key_ids), IDS_PER_QUERY_MAX):
        rows = conn.execute(
            select(key_spend.c.key_id, key_spend.c.period, key_spend.c.spent_micros, key_spend.c.held_micros)
            .where(key_spend.c.key_id.in_(key_ids[start : start + IDS_PER_QUERY_MAX]))
            .where(key_spend.c.period.in_(periods))
        )
        for row in rows:
            found[(row.key_id, row.period)] = row.spent_micros + row.held_micros
    return found


def _failure_rates(conn: Connection, key_ids: Sequence[str], since: datetime) -> dict[str, tuple[int, int]]:
    failed = func.sum(case((receipts.c.status != "succeeded", 1), else_=0))
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(key_ids), IDS_PER_QUERY_MAX):
        rows = conn.execute(
            select(receipts.c.key_id, func.count(), failed)
            .where(receipts.c.key_id.in_(key_ids[start : start + IDS_PER_QUERY_MAX]))
            .where(receipts.c.created_at >= since)
            .group_by(receipts.c.key_id)
        )
        found.update({row[0]: (int(row[1]), int(row[2] or 0)) for row in rows})
    return found


def _wallet_conditions(conn: Connection, org_id: str, book: RuleBook) -> list[dict[str, Any]]:
    found = []
    for wallet in list_wallets(conn, org_id):
        rule = book.wallet(wallet.kind)
        below = rule.balance_below_micros or 0
        available = wallet.balance.available_micros
        if not rule.enabled or available >= below:
            continue
        empty = available <= 0
        found.append(
            {
                "alert": f"wallet_balance:{wallet.kind}:{below}",
                "kind": "wallet_empty" if empty else "wallet_low",
                "level": "critical" if empty else "warning",
                "wallet": wallet.kind,
                "available_micros": available,
                "below_micros": below,
                "message": (
                    f"The {wallet.kind} wallet has nothing left to spend: keys paying from it are refused"
                    if empty
                    else f"The {wallet.kind} wallet has {available} micros left, below its alert threshold of {below}"
                ),
            }
        )
    return found


def conditions(
    conn: Connection, org_id: str, keys: Sequence[KeyRecord], now: datetime, book: RuleBook
) -> list[dict[str, Any]]:
    """Every threshold crossed now by ``keys`` (active ones) and the org's wallets, under ``book``."""
    found = _wallet_conditions(conn, org_id, book)
    active = [key for key in keys if key.status == "active"]
    budgeted = [
        key
        for key in active
        if (key.policy.budget_total_micros or key.policy.budget_daily_micros) and book.key(KEY_BUDGET, key.id).enabled
    ]
    today = day_period(now)
    used = _used(conn, [key.id for key in budgeted], (TOTAL, today))
    for key in budgeted:
        percents = book.key(KEY_BUDGET, key.id).budget_percents or ()
        used_total, used_today = used.get((key.id, TOTAL), 0), used.get((key.id, today), 0)
        found += _budget_conditions(key, "total", used_total, key.policy.budget_total_micros, percents)
        found += _budget_conditions(key, "daily", used_today, key.policy.budget_daily_micros, percents)
    # One query per distinct window: an org has few of them (the default, and what its owner set).
    windows: dict[int, list[KeyRecord]] = {}
    for key in active:
        rule = book.key(KEY_FAILURE_RATE, key.id)
        if rule.enabled and rule.failure_window_minutes:
            windows.setdefault(rule.failure_window_minutes, []).append(key)
    for minutes, window_keys in windows.items():
        rates = _failure_rates(conn, [key.id for key in window_keys], now - timedelta(minutes=minutes))
        for key in window_keys:
            rule = book.key(KEY_FAILURE_RATE, key.id)
            requests, failures = rates.get(key.id, (0, 0))
            rate, least = rule.failure_rate_percent or 0, rule.failure_min_requests or 0
            if requests >= least and requests > 0 and failures * 100 >= rate * requests:
                found.append(
                    {
                        "alert": f"key_failures:{key.id}",
                        "kind": "key_failures",
                        "level": "warning",
                        "key": key.prefix,
                        "key_id": key.id,
                        "requests": requests,
                        "failed": failures,
                        "failure_rate_percent": rate,
                        "window_minutes": minutes,
                        "message": (
                            f"Key {key.name} ({key.prefix}): {failures} of its {requests} requests in the last "
                            f"{minutes} minutes failed"
                        ),
                    }
                )
    return found


def highest_only(found: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions with only the highest budget threshold of each key and budget kept."""
    kept: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for notice in found:  # budget thresholds come highest first
        if notice["kind"].startswith("key_budget_"):
            name = (notice["kind"], notice["key_id"])
            if name in seen:
                continue
            seen.add(name)
        kept.append(notice)
    return kept


def notices(conn: Connection, org_id: str, keys: Sequence[KeyRecord], now: datetime) -> list[dict[str, Any]]:
    """Every notice about ``keys`` (active ones) and the org's wallets, the most urgent first."""
    found = highest_only(conditions(conn, org_id, keys, now, rule_book(conn, org_id)))
    found.sort(key=lambda notice: notice["level"] != "critical")
    return found
