"""Read-only questions the dashboard asks of receipts, beyond what the domain functions answer.

Receipts record what every request did, and their charges sum to the posted ledger charges
(``glasskey.ledger.audit`` proves it), so spend here is a sum of receipt charges. Every query
filters and aggregates in SQL and reads at most a bounded number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from glasskey.keys.secret import PREFIX as KEY_PREFIX
from glasskey.receipts.records import list_receipts
from glasskey.store.tables import receipts

PAGE_MAX = 200
ROUTE_ERRORS_SCAN = PAGE_MAX  # recent receipts read to find each route's latest failed attempts
ROUTE_ERRORS_KEPT = 3


@dataclass(frozen=True)
class ReceiptFilter:
    """The receipts page's filters; ``since`` is inclusive and ``until`` exclusive."""

    key_id: str | None = None
    org_id: str | None = None
    model: str | None = None
    status: str | None = None
    error_source: str | None = None
    settlement: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (receipts.c.key_id, self.key_id),
            (receipts.c.org_id, self.org_id),
            (receipts.c.requested_model, self.model),
            (receipts.c.status, self.status),
            (receipts.c.error_source, self.error_source),
            (receipts.c.settlement, self.settlement),
        ):
            if value is not None:
                found.append(column == value)
        # SQLite compares stored times as UTC text, so bounds are given in UTC too.
        if self.since is not None:
            found.append(receipts.c.created_at >= self.since.astimezone(UTC))
        if self.until is not None:
            found.append(receipts.c.created_at < self.until.astimezone(UTC))
        return found


def receipt_row(row: Any) -> dict[str, Any]:
    """A receipts row for a table: its columns, plus the key's prefix as receipts show it."""
    values = {str(name): value for name, value in row._mapping.items()}
    values["key"] = f"{KEY_PREFIX}-{values['key_public_id']}" if values.get("key_public_id") else None
    return values


@dataclass(frozen=True)
class ReceiptPage:
    rows: list[dict[str, Any]]
    next_before: int | None  # pass as ``before`` for the next (older) page


def search_receipts(
    conn: Connection, where: ReceiptFilter, *, before: int | None = None, limit: int = 50
) -> ReceiptPage:
    """Receipts matching ``where``, newest first, ``limit`` at a time."""
    limit = max(1, min(limit, PAGE_MAX))
    query = select(receipts).where(*where.conditions())
    if before is not None:
        query = query.where(receipts.c.seq < before)
    rows = list(conn.execute(query.order_by(receipts.c.seq.desc()).limit(limit + 1)))
    next_before = int(rows[limit - 1].seq) if len(rows) > limit else None
    return ReceiptPage([receipt_row(row) for row in rows[:limit]], next_before)


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    failed: int = 0
    charge_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def succeeded(self) -> int:
        return self.requests - self.failed


def receipt_totals(conn: Connection, where: ReceiptFilter) -> Totals:
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((receipts.c.status == "failed", 1), else_=0)), 0),
            func.coalesce(func.sum(receipts.c.charge_micros), 0),
            func.coalesce(func.sum(receipts.c.input_tokens), 0),
            func.coalesce(func.sum(receipts.c.output_tokens), 0),
            func.coalesce(func.sum(receipts.c.cached_tokens), 0),
        ).where(*where.conditions())
    ).one()
    return Totals(*(int(value) for value in row))


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: "today" means the UTC day, as key budgets do."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Window:
    label: str
    since: datetime
    totals: Totals


def spend_windows(conn: Connection, now: datetime, *, org_id: str | None = None) -> list[Window]:
    """Requests, failures and spend today (UTC), over the last 7 days and over the last 30 days."""
    spans = (
        ("Today (UTC)", day_start(now)),
        ("Last 7 days", now - timedelta(days=7)),
        ("Last 30 days", now - timedelta(days=30)),
    )
    return [
        Window(label, since, receipt_totals(conn, ReceiptFilter(org_id=org_id, since=since))) for label, since in spans
    ]


def _utc_day(conn: Connection) -> ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", receipts.c.created_at), "YYYY-MM-DD")
    # SQLite stores UTC as "YYYY-MM-DD HH:MM:SS.ffffff" text.
    return func.substr(receipts.c.created_at, 1, 10)


def chart_days(now: datetime, days: int) -> list[str]:
    first = day_start(now).date() - timedelta(days=days - 1)
    return [(first + timedelta(days=i)).isoformat() for i in range(days)]


def spend_by_day(
    conn: Connection, now: datetime, *, days: int, by: str, org_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Charges per UTC day over the last ``days`` days, grouped ``by`` ``"model"`` or ``"key"``.

    Answers ``{group: {"YYYY-MM-DD": micros}}``; a key is named by its id.
    """
    group = receipts.c.requested_model if by == "model" else receipts.c.key_id
    bucket = _utc_day(conn).label("day")
    since = datetime.combine(date.fromisoformat(chart_days(now, days)[0]), datetime.min.time(), UTC)
    where = ReceiptFilter(org_id=org_id, since=since).conditions()
    query = (
        select(group.label("name"), bucket, func.sum(receipts.c.charge_micros).label("micros"))
        .where(*where, receipts.c.charge_micros > 0)
        .group_by(group, bucket)
    )
    found: dict[str, dict[str, int]] = {}
    for row in conn.execute(query):
        found.setdefault(str(row.name or "(none)"), {})[str(row.day)] = int(row.micros)
    return found


@dataclass(frozen=True)
class FailureGroup:
    name: str | None  # the error source, or the route id (None: no route was reached)
    count: int
    by_source: dict[str, int]
    latest: dict[str, Any]  # the newest failed receipt of the group


def _latest_by_seq(conn: Connection, seqs: list[int]) -> dict[int, dict[str, Any]]:
    if not seqs:
        return {}
    rows = conn.execute(select(receipts).where(receipts.c.seq.in_(seqs)))
    return {int(row.seq): receipt_row(row) for row in rows}


def failures_grouped(conn: Connection, since: datetime | None, *, by: str) -> list[FailureGroup]:
    """Failed receipts since ``since``, grouped ``by`` ``"source"`` or ``"route"``, most failures first."""
    group = receipts.c.error_source if by == "source" else receipts.c.route_id
    where = ReceiptFilter(status="failed", since=since).conditions()
    rows = list(
        conn.execute(
            select(group.label("name"), receipts.c.error_source, func.count(), func.max(receipts.c.seq))
            .where(*where)
            .group_by(group, receipts.c.error_source)
        )
    )
    groups: dict[str | None, dict[str, Any]] = {}
    for name, source, number, newest in rows:
        entry = groups.setdefault(name, {"count": 0, "by_source": {}, "newest": 0})
        entry["count"] += int(number)
        entry["by_source"][source or "unknown"] = int(number)
        entry["newest"] = max(entry["newest"], int(newest))
    latest = _latest_by_seq(conn, [entry["newest"] for entry in groups.values()])
    found = [
        FailureGroup(name, entry["count"], entry["by_source"], latest[entry["newest"]])
        for name, entry in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.count, g.name or ""))


def recent_route_errors(conn: Connection, *, scan: int = ROUTE_ERRORS_SCAN) -> dict[str, list[dict[str, Any]]]:
    """The newest failed attempts of each route, found in the latest ``scan`` receipts.

    A failed attempt may sit inside a request that a backup route saved, so attempts are read,
    not only failed receipts.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for receipt in list_receipts(conn, limit=min(scan, PAGE_MAX)).data:
        for attempt in receipt["attempts"]:
            if attempt.get("status") != "failed":
                continue
            kept = found.setdefault(attempt["route_id"], [])
            if len(kept) < ROUTE_ERRORS_KEPT:
                kept.append({**attempt, "request_id": receipt["request_id"], "created_at": receipt["created_at"]})
    return found
