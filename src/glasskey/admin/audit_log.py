"""Admin endpoints for the audit log: an org's events for its owners, all of them for the operator, a
summary of key use (every key's for owners and billing, a member's own keys' for a member), CSV
export, and the hash chain's verification.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime
from sqlalchemy import Connection, case, func, select

from glasskey.admin.access import ADMIN_ACCESS, error_responses, principal_of
from glasskey.admin.common import list_body
from glasskey.limits import COUNTER_MAX
from glasskey.orgs.service import get_org
from glasskey.people.audit import PAGE_MAX, list_events, verify
from glasskey.people.holders import keys_of
from glasskey.people.principal import Principal
from glasskey.services import Services
from glasskey.store.tables import receipts

KEY_USE_DAYS_MAX = 90
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]
Before = Annotated[int | None, Query(ge=0, le=COUNTER_MAX, description="only events before this `seq` (the next page)")]
Format = Annotated[Literal["json", "csv"], Query(alias="format")]
Actor = Annotated[str | None, Query(max_length=80, description="a user id, or `operator`")]
Since = Annotated[AwareDatetime | None, Query(description="only events at or after this time")]
_CSV_COLUMNS = (
    "seq",
    "at",
    "actor",
    "org_id",
    "action",
    "target",
    "outcome",
    "address",
    "request_id",
    "before",
    "after",
)


def key_use(
    conn: Connection, org_id: str, since: Any, only_keys: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Requests, failures and charges per key of the org since ``since``, from the receipts themselves.

    ``only_keys`` (public ids) narrows it to those keys; None is every key of the org.
    """
    failed = func.sum(case((receipts.c.status != "succeeded", 1), else_=0))
    query = (
        select(
            receipts.c.key_public_id,
            func.count().label("requests"),
            failed.label("failed"),
            func.sum(receipts.c.charge_micros).label("charge_micros"),
            func.max(receipts.c.created_at).label("last_used_at"),
        )
        .where(receipts.c.org_id == org_id)
        .where(receipts.c.created_at >= since)
        .group_by(receipts.c.key_public_id)
        .order_by(receipts.c.key_public_id)
    )
    if only_keys is not None:
        query = query.where(receipts.c.key_public_id.in_(sorted(only_keys)))
    rows = conn.execute(query)
    return [
        {
            "key": f"gk-{row.key_public_id}" if row.key_public_id else None,
            "requests": int(row.requests),
            "failed": int(row.failed or 0),
            "charge_micros": int(row.charge_micros or 0),
            "last_used_at": str(row.last_used_at),
        }
        for row in rows
    ]


def keys_seen_by(conn: Connection, principal: Principal, org_id: str) -> set[str] | None:
    """The public ids of the keys whose use ``principal`` may read in the org; None is every key.

    The guard let the caller in (``ADMIN_ACCESS``); a role allowed only its own keys there (a member)
    reads the keys they hold and their services' keys, nothing of a colleague's.
    """
    if principal.is_operator or principal.role in ADMIN_ACCESS[("GET", "/orgs/{org_id}/audit/key-use")].roles:
        return None
    if principal.user_id is None:
        return set()
    return {key.public_id for key, _holder in keys_of(conn, org_id, principal.user_id)}


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite compares stored times as UTC text, so the bound must be in UTC too.
    return moment.astimezone(UTC) if moment is not None else None


def _csv(events: list[dict[str, Any]]) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for event in events:
        writer.writerow(event)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


def audit_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["audit log"])

    @router.get(
        "/orgs/{org_id}/audit",
        summary="An org's audit log",
        description=(
            "Changes, sign-ins and denials in the org, newest first: who, when, what, before → after, from which "
            "address and request. Filter by `action`, `actor` and `since`; page with `before`; `format=csv` for a "
            "spreadsheet. The org's owners and the operator only."
        ),
        responses=error_responses(403, 404),
    )
    def read_org_audit(
        org_id: str,
        limit: Limit = 100,
        before: Before = None,
        action: str | None = None,
        actor: Actor = None,
        since: Since = None,
        output: Format = "json",
    ) -> Any:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            events = list_events(
                conn, org_id=org.id, action=action, actor=actor, since=_utc(since), before_seq=before, limit=limit
            )
        return _csv(events) if output == "csv" else list_body(events)

    @router.get(
        "/orgs/{org_id}/audit/key-use",
        summary="Key use in an org",
        description=(
            "Requests, failures and charges per key over the last `days`, counted from the receipts. Owners, billing "
            "and the operator see every key of the org; a member only the keys they hold and their services' keys."
        ),
        responses=error_responses(403, 404),
    )
    def read_key_use(
        org_id: str, request: Request, days: Annotated[int, Query(ge=1, le=KEY_USE_DAYS_MAX)] = 7
    ) -> dict[str, Any]:
        principal = principal_of(request)
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            only = keys_seen_by(conn, principal, org.id)
            return list_body(key_use(conn, org.id, services.clock() - timedelta(days=days), only), days=days)

    @router.get("/audit", summary="The whole audit log", description="Every org's events and the operator's.")
    def read_audit(
        limit: Limit = 100,
        before: Before = None,
        action: str | None = None,
        actor: Actor = None,
        since: Since = None,
        org_id: str | None = None,
        output: Format = "json",
    ) -> Any:
        with services.db.read() as conn:
            events = list_events(
                conn, org_id=org_id, action=action, actor=actor, since=_utc(since), before_seq=before, limit=limit
            )
        return _csv(events) if output == "csv" else list_body(events)

    @router.get(
        "/audit/verify",
        summary="Verify the audit log's hash chain",
        description="Walks every event; `ok` is false when one was edited or removed.",
    )
    def read_verify() -> dict[str, Any]:
        with services.db.read() as conn:
            problems = verify(conn)
        return {"object": "audit.verify", "ok": not problems, "problems": problems[:PAGE_MAX]}

    return router
