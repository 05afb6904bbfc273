"""Webhook deliveries: the outbox in the database, its retries with exponential backoff, and its log.

An event to send is a row of ``alert_deliveries`` (``pending``), so a delivery outlives the process
that made it and any gateway process may send it. A process claims a due delivery by moving its
``next_attempt_at`` forward by ``CLAIM_SECONDS`` in one conditional UPDATE, so two processes never
send the same attempt. Each attempt is logged (``alert_delivery_attempts``) with the receiver's
status code and at most ``EXCERPT_CHARS_MAX`` characters of its answer. A 2xx answer delivers; any
other answer or a network failure is retried after ``retry_base_seconds * 2 ** (attempt - 1)``,
up to ``attempts_max`` attempts, then the delivery is ``failed``. A URL the address policy refuses
fails at once: retrying cannot change the policy's verdict.

Every buffer has a bound: an org holds at most ``pending_per_org_max`` pending deliveries (the
oldest is ``dropped`` to make room), the log keeps the newest ``log_per_org_max`` deliveries of an
org, and a round sends at most ``due_per_round_max``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from glasskey.alerts.tables import alert_deliveries, alert_delivery_attempts
from glasskey.alerts.webhooks import get_webhook
from glasskey.errors import storable
from glasskey.ids import new_id
from glasskey.routing.credentials import CredentialUnopenable, CredentialVault

EXCERPT_CHARS_MAX = 512
CLAIM_SECONDS = 60

PENDING, DELIVERED, FAILED, DROPPED = "pending", "delivered", "failed", "dropped"


@dataclass(frozen=True)
class DeliveryLimits:
    attempts_max: int = 8
    retry_base_seconds: float = 10.0
    timeout_seconds: float = 5.0
    pending_per_org_max: int = 100
    log_per_org_max: int = 500
    due_per_round_max: int = 20


def backoff_seconds(attempt: int, limits: DeliveryLimits) -> float:
    """How long after failed attempt number ``attempt`` (1-based) the next one is due."""
    return float(limits.retry_base_seconds * 2 ** (attempt - 1))


def excerpt(text: str) -> str:
    """What the log keeps of a receiver's answer: bounded, and storable (no NUL)."""
    return storable(text, EXCERPT_CHARS_MAX)


def enqueue(
    conn: Connection,
    org_id: str,
    event: str,
    payload: dict[str, Any],
    now: datetime,
    limits: DeliveryLimits,
    *,
    due: bool = True,
) -> str:
    """Queue one event for the org's webhook; returns the delivery id (also the event id).

    A delivery not ``due`` is never picked up by the sweep: its caller sends it (a test event).
    """
    return enqueue_many(conn, org_id, event, [payload], now, limits, due=due)[0]


def enqueue_many(
    conn: Connection,
    org_id: str,
    event: str,
    payloads: list[dict[str, Any]],
    now: datetime,
    limits: DeliveryLimits,
    *,
    due: bool = True,
) -> list[str]:
    """Queue events for the org's webhook in a few statements, whatever their number; returns their ids.

    The queue has a bound: the oldest pending events make room for the new ones, and when one
    evaluation alone brings more than the bound (a webhook set on an org of many keys already past
    their thresholds), the ones past it are logged as ``dropped`` at once.
    """
    if not payloads:
        return []
    pending = (alert_deliveries.c.org_id == org_id) & (alert_deliveries.c.status == PENDING)
    waiting = conn.execute(select(func.count()).select_from(alert_deliveries).where(pending)).scalar_one()
    room = max(limits.pending_per_org_max - len(payloads), 0)
    if waiting > room:
        oldest = select(alert_deliveries.c.id).where(pending).order_by(alert_deliveries.c.created_at)
        overflow = list(conn.scalars(oldest.limit(waiting - room)))
        conn.execute(
            update(alert_deliveries)
            .where(alert_deliveries.c.id.in_(overflow))
            .values(status=DROPPED, next_attempt_at=None, updated_at=now)
        )
    rows: list[dict[str, Any]] = []
    for index, payload in enumerate(payloads):
        kept = index < limits.pending_per_org_max
        rows.append(
            {
                "id": str(payload.get("id") or new_id("evt")),
                "org_id": org_id,
                "event": event,
                "body": json.dumps(payload, separators=(",", ":"), sort_keys=True),
                "status": PENDING if kept else DROPPED,
                "attempts": 0,
                "next_attempt_at": now if due and kept else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    conn.execute(alert_deliveries.insert(), rows)
    _prune(conn, org_id, limits)
    return [row["id"] for row in rows]


def _prune(conn: Connection, org_id: str, limits: DeliveryLimits) -> None:
    """Keep the newest ``log_per_org_max`` deliveries of the org (and their attempts)."""
    old = list(
        conn.scalars(
            select(alert_deliveries.c.id)
            .where(alert_deliveries.c.org_id == org_id)
            .order_by(alert_deliveries.c.created_at.desc(), alert_deliveries.c.id.desc())
            .offset(limits.log_per_org_max)
        )
    )
    if old:
        conn.execute(delete(alert_delivery_attempts).where(alert_delivery_attempts.c.delivery_id.in_(old)))
        conn.execute(delete(alert_deliveries).where(alert_deliveries.c.id.in_(old)))


@dataclass(frozen=True)
class Claimed:
    """One attempt this process has claimed: where it goes, what it says, and the secret to sign it."""

    delivery_id: str
    org_id: str
    body: bytes
    attempt: int
    url: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    # True when retrying cannot help (the address policy refused the URL).
    final: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim(conn: Connection, vault: CredentialVault, delivery_id: str, now: datetime) -> Claimed | None:
    """Claim the next attempt of one pending delivery, if no other process has; None otherwise."""
    row = conn.execute(select(alert_deliveries).where(alert_deliveries.c.id == delivery_id)).first()
    if row is None or row.status != PENDING:
        return None
    webhook = get_webhook(conn, row.org_id)
    if webhook is None:  # the webhook was removed: nowhere to send it
        conn.execute(
            update(alert_deliveries)
            .where(alert_deliveries.c.id == delivery_id)
            .values(status=DROPPED, next_attempt_at=None, updated_at=now)
        )
        return None
    claimed = conn.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.id == delivery_id)
        .where(alert_deliveries.c.status == PENDING)
        .where(alert_deliveries.c.attempts == row.attempts)
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS), attempts=row.attempts + 1, updated_at=now)
    )
    if claimed.rowcount != 1:
        return None
    attempt = Claimed(delivery_id, row.org_id, row.body.encode(), row.attempts + 1, webhook.url, "")
    try:
        secret = vault.open(webhook.secret_sealed) or ""
    except CredentialUnopenable as unopenable:
        # An old encryption key was removed before the secret was re-sealed: this delivery cannot be
        # signed. It fails alone, logged, instead of failing every round of the sweep.
        record(
            conn,
            attempt,
            Outcome(error=f"{unopenable.message}; rotate the webhook secret", final=True),
            now,
            DeliveryLimits(),
        )
        return None
    return replace(attempt, secret=secret)


def due_ids(conn: Connection, now: datetime, limits: DeliveryLimits) -> list[str]:
    """Up to ``due_per_round_max`` deliveries whose next attempt is due, the longest waiting first."""
    return list(
        conn.scalars(
            select(alert_deliveries.c.id)
            .where(alert_deliveries.c.status == PENDING)
            .where(alert_deliveries.c.next_attempt_at <= now)
            .order_by(alert_deliveries.c.next_attempt_at)
            .limit(limits.due_per_round_max)
        )
    )


def claim_due(conn: Connection, vault: CredentialVault, now: datetime, limits: DeliveryLimits) -> list[Claimed]:
    """Claim up to ``due_per_round_max`` deliveries whose next attempt is due."""
    found = [claim(conn, vault, delivery_id, now) for delivery_id in due_ids(conn, now, limits)]
    return [claimed for claimed in found if claimed is not None]


def record(
    conn: Connection, claimed: Claimed, outcome: Outcome, now: datetime, limits: DeliveryLimits, *, retry: bool = True
) -> str:
    """Log one attempt and move its delivery on: delivered, due again after its backoff, or failed."""
    conn.execute(
        alert_delivery_attempts.insert().values(
            delivery_id=claimed.delivery_id,
            attempt=claimed.attempt,
            at=now,
            url=claimed.url,
            status_code=outcome.status_code,
            excerpt=excerpt(outcome.excerpt) if outcome.excerpt is not None else None,
            error=excerpt(outcome.error) if outcome.error is not None else None,
        )
    )
    if outcome.delivered:
        status, next_at = DELIVERED, None
    elif outcome.final or not retry or claimed.attempt >= limits.attempts_max:
        status, next_at = FAILED, None
    else:
        status, next_at = PENDING, now + timedelta(seconds=backoff_seconds(claimed.attempt, limits))
    conn.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.id == claimed.delivery_id)
        .values(status=status, next_attempt_at=next_at, last_status_code=outcome.status_code, updated_at=now)
    )
    return status


def list_deliveries(
    conn: Connection, org_id: str, limit: int = 50, *, delivery_id: str | None = None
) -> list[dict[str, Any]]:
    """The org's newest deliveries, each with its attempts (the receiver's answers), newest first."""
    query = select(alert_deliveries).where(alert_deliveries.c.org_id == org_id)
    if delivery_id is not None:
        query = query.where(alert_deliveries.c.id == delivery_id)
    rows = conn.execute(
        query.order_by(alert_deliveries.c.created_at.desc(), alert_deliveries.c.id.desc()).limit(limit)
    ).all()
    attempts: dict[str, list[dict[str, Any]]] = {}
    if rows:
        for attempt in conn.execute(
            select(alert_delivery_attempts)
            .where(alert_delivery_attempts.c.delivery_id.in_([row.id for row in rows]))
            .order_by(alert_delivery_attempts.c.id)
        ):
            attempts.setdefault(attempt.delivery_id, []).append(
                {
                    "attempt": attempt.attempt,
                    "at": attempt.at.isoformat(),
                    "url": attempt.url,
                    "status_code": attempt.status_code,
                    "excerpt": attempt.excerpt,
                    "error": attempt.error,
                }
            )
    return [
        {
            "object": "alerts.delivery",
            "id": row.id,
            "event": row.event,
            "status": row.status,
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "last_status_code": row.last_status_code,
            "created_at": row.created_at.isoformat(),
            "body": json.loads(row.body),
            "answers": attempts.get(row.id, []),
        }
        for row in rows
    ]


def get_delivery(conn: Connection, org_id: str, delivery_id: str) -> dict[str, Any] | None:
    found = list_deliveries(conn, org_id, delivery_id=delivery_id)
    return found[0] if found else None
