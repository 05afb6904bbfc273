"""Which alerts fire: a threshold crossed is sent once, and again only after it cleared.

``evaluate`` compares the conditions of an org now (``alerts.notices.conditions``) with the alerts
recorded as firing (``alert_firing``): a condition not yet recorded is recorded and queued for the
webhook; a recorded alert whose condition no longer holds is forgotten, so it fires again the next
time it is crossed. Recording is an ``INSERT … ON CONFLICT DO NOTHING`` on the alert's name, so of
two gateway processes evaluating one org at once, only the one whose row went in sends it.

When a key crosses several budget thresholds between two evaluations (50 and 80 at once), each is
recorded but only the highest is sent. An alert that cleared is sent too (``alert.cleared``): one
event per alert, except a key's budget thresholds that cleared together (50 and 80 when the budget
was raised), which send one event for the highest, naming them all. Evaluation runs off the request
path, in the periodic sweep of ``alerts.runner``, and only for orgs with a webhook; the notices shown
in the dashboard, the admin API and the CLI are computed when read and need no sweep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from glasskey.alerts.delivery import DeliveryLimits, enqueue, enqueue_many
from glasskey.alerts.notices import conditions, highest_only
from glasskey.alerts.rules import rule_book
from glasskey.alerts.tables import alert_firing
from glasskey.ids import new_id
from glasskey.keys.service import KeyRecord, list_keys
from glasskey.orgs.service import Org, get_org

# Rows in one INSERT: three parameters each, well under SQLite's 32,766 per statement.
RECORDED_PER_STATEMENT_MAX = 500
FIRED = "alert.fired"
CLEARED = "alert.cleared"
TEST = "alert.test"


def _record_firing(conn: Connection, org_id: str, alerts: list[str], now: datetime) -> set[str]:
    """Record ``alerts`` as firing; returns those this call recorded (not already, here or in another process)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    recorded: set[str] = set()
    for start in range(0, len(alerts), RECORDED_PER_STATEMENT_MAX):
        rows = [
            {"org_id": org_id, "alert": alert, "since": now}
            for alert in alerts[start : start + RECORDED_PER_STATEMENT_MAX]
        ]
        statement = insert(alert_firing).values(rows).on_conflict_do_nothing()
        # RETURNING, not rowcount: a row comes back only if this statement inserted it.
        recorded.update(conn.scalars(statement.returning(alert_firing.c.alert)))
    return recorded


def payload(org: Org, event: str, alert: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("evt"),
        "type": event,
        "created_at": now.isoformat(),
        "org": {"id": org.id, "name": org.name},
        "alert": alert,
    }


def _now_and_recorded(conn: Connection, org_id: str, now: datetime) -> tuple[list[dict[str, Any]], dict[str, datetime]]:
    """The conditions crossed now, and the alerts recorded as firing with the time each began."""
    found = conditions(conn, org_id, list_keys(conn, org_id), now, rule_book(conn, org_id))
    rows = conn.execute(select(alert_firing.c.alert, alert_firing.c.since).where(alert_firing.c.org_id == org_id))
    return found, {row.alert: row.since for row in rows}


def cleared_alerts(cleared: dict[str, datetime], keys: dict[str, KeyRecord], now: datetime) -> list[dict[str, Any]]:
    """What an ``alert.cleared`` event says of each alert that no longer holds, read from its name (its
    condition is gone) and the org's ``keys`` by id: a key's budget thresholds that cleared together
    make one event, for the highest."""

    def named(key_id: str) -> tuple[dict[str, Any], str]:
        key = keys.get(key_id)
        if key is None:
            return {"key_id": key_id}, f"Key {key_id}"
        return {"key": key.prefix, "key_id": key_id}, f"Key {key.name} ({key.prefix})"

    budgets: dict[tuple[str, str], list[tuple[int, datetime]]] = {}
    found: list[dict[str, Any]] = []
    for name in sorted(cleared):
        kind, _, rest = name.partition(":")
        since = cleared[name]
        if kind.startswith("key_budget_"):
            key_id, _, threshold = rest.rpartition(":")
            budgets.setdefault((kind, key_id), []).append((int(threshold), since))
            continue
        alert: dict[str, Any] = {"alert": name, "kind": kind, "level": "info"}
        if kind == "wallet_balance":
            wallet, _, below = rest.partition(":")
            alert |= {"wallet": wallet, "below_micros": int(below)}
            alert["message"] = f"The {wallet} wallet is back at or above its alert threshold of {below} micros"
        else:  # key_failures
            fields, who = named(rest)
            alert |= fields
            alert["message"] = f"{who}: its requests no longer fail past the alert's rate"
        found.append(alert | {"since": since.isoformat(), "cleared_at": now.isoformat()})
    for (kind, key_id), thresholds in sorted(budgets.items()):
        thresholds.sort(reverse=True)
        highest, since = thresholds[0]
        budget = kind.removeprefix("key_budget_")
        fields, who = named(key_id)
        found.append(
            {
                "alert": f"{kind}:{key_id}:{highest}",
                "kind": kind,
                "level": "info",
                **fields,
                "threshold_percent": highest,
                "thresholds_percent": [threshold for threshold, _ in thresholds],
                "message": f"{who} is back below {highest}% of its {budget} budget",
                "since": since.isoformat(),
                "cleared_at": now.isoformat(),
            }
        )
    return found


def changed(conn: Connection, org_id: str, now: datetime) -> bool:
    """Whether anything crossed or cleared since the last evaluation: a read, so that the sweep
    takes the database's write lock (SQLite has one for the whole file) only when it must write."""
    found, firing = _now_and_recorded(conn, org_id, now)
    return {condition["alert"] for condition in found} != set(firing)


def evaluate(conn: Connection, org_id: str, now: datetime, limits: DeliveryLimits) -> list[dict[str, Any]]:
    """Record the org's newly crossed thresholds, forget the cleared ones; returns the events queued
    (``alert.cleared`` ones first, then ``alert.fired``)."""
    found, firing = _now_and_recorded(conn, org_id, now)
    current = {condition["alert"] for condition in found}
    cleared = sorted(set(firing) - current)
    forgotten: set[str] = set()
    if cleared:
        # RETURNING, like the record: of two processes forgetting one alert, only one sends its clearing.
        forgotten = set(
            conn.scalars(
                delete(alert_firing)
                .where(alert_firing.c.org_id == org_id)
                .where(alert_firing.c.alert.in_(cleared))
                .returning(alert_firing.c.alert)
            )
        )
    recorded = _record_firing(conn, org_id, [c["alert"] for c in found if c["alert"] not in firing], now)
    crossed = [condition for condition in found if condition["alert"] in recorded]
    org = get_org(conn, org_id)
    clearings = []
    if forgotten:
        keys = {key.id: key for key in list_keys(conn, org_id)}
        clearings = cleared_alerts({name: firing[name] for name in forgotten}, keys, now)
    cleared_events = [payload(org, CLEARED, alert, now) for alert in clearings]
    fired_events = [payload(org, FIRED, alert, now) for alert in highest_only(crossed)]
    enqueue_many(conn, org_id, CLEARED, cleared_events, now, limits)
    enqueue_many(conn, org_id, FIRED, fired_events, now, limits)
    return cleared_events + fired_events


def queue_test_event(conn: Connection, org_id: str, now: datetime, limits: DeliveryLimits) -> str:
    """Queue a test event for the org's webhook (the "send test" button); returns its delivery id."""
    alert = {"kind": "test", "level": "info", "message": "A test delivery from glasskey: your webhook works."}
    # Not due: the request that asked for it sends it, once; the sweep never picks it up.
    return enqueue(conn, org_id, TEST, payload(get_org(conn, org_id), TEST, alert, now), now, limits, due=False)
