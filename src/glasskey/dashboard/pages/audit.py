"""The audit log as a page: an org's events for its owners, every event for the operator.

Filters are the admin API's (``GET /orgs/{org}/audit``): action, actor (an email, a user id or
``operator``) and a first UTC day; 100 events a page, older ones by ``before``. ``/audit.csv`` exports
the same filter (at most ``EXPORT_EVENTS_MAX`` events). The org is the session's for a person; the
operator sees every org, or the one ``?org=`` names. The gate lets only an owner's session in; the
page checks the role in the database again, so an owner demoted since signing in reads nothing.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, select
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.admin.access import page_allowed
from glasskey.dashboard.acting import Acting, acting, page_context
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.pages.receipts import csv_cell
from glasskey.dashboard.web import Dashboard, redirect
from glasskey.errors import ClientError
from glasskey.orgs.service import get_org, list_orgs
from glasskey.people.audit import PAGE_MAX, list_events
from glasskey.people.tables import users
from glasskey.people.users import normalize_email

PAGE = 100
EXPORT_EVENTS_MAX = 10_000
FILTERS = ("action", "actor", "since")
CSV_COLUMNS = (
    "seq",
    "at",
    "actor",
    "actor_email",
    "org_id",
    "action",
    "target",
    "outcome",
    "address",
    "request_id",
    "before",
    "after",
)


class Filter:
    """The events a URL asks for, read against the database (an actor given by email is looked up)."""

    def __init__(self, conn: Connection, found: Acting, params: QueryParams) -> None:
        self.errors: dict[str, str] = {}
        self.values = {name: params.get(name, "").strip() for name in FILTERS}
        if found.is_operator:
            self.org_id = get_org(conn, params["org"]).id if params.get("org") else None
        else:
            assert found.org is not None
            self.org_id = found.org.id
        self.action = self.values["action"][:64] or None
        self.actor = self._actor(conn, self.values["actor"])
        self.since: datetime | None = None
        if self.values["since"]:
            try:
                self.since = datetime.combine(date.fromisoformat(self.values["since"]), time(), UTC)
            except ValueError:
                self.errors["since"] = "write the day as YYYY-MM-DD (UTC)"

    def _actor(self, conn: Connection, text: str) -> str | None:
        if not text:
            return None
        if "@" not in text:
            return text[:80]
        try:
            found = conn.scalar(select(users.c.id).where(users.c.email == normalize_email(text)))
        except ClientError:
            found = None
        if found is None:
            self.errors["actor"] = "no account has this email"
        return found

    def events(self, conn: Connection, before: int | None, limit: int) -> list[dict[str, Any]]:
        if self.errors:
            return []
        return list_events(
            conn,
            org_id=self.org_id,
            action=self.action,
            actor=self.actor,
            since=self.since,
            before_seq=before,
            limit=limit,
        )


def with_emails(conn: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with its actor's email (one query for the page), and before/after as short JSON."""
    ids = {event["actor"] for event in events}
    emails = dict(conn.execute(select(users.c.id, users.c.email).where(users.c.id.in_(ids))).all()) if ids else {}
    return [
        {
            **event,
            "actor_email": emails.get(event["actor"], "admin token" if event["actor"] == "operator" else ""),
            "before_text": json.dumps(event["before"], sort_keys=True) if event["before"] is not None else "",
            "after_text": json.dumps(event["after"], sort_keys=True) if event["after"] is not None else "",
        }
        for event in events
    ]


def _before(params: QueryParams) -> int | None:
    text = params.get("before")
    if text and not text.isdigit():
        raise ClientError("`before` is not a page this log made", param="before")
    return int(text) if text else None


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        org = request.query_params.get("org")

        def work(conn: Connection) -> Acting | None:
            found = acting(conn, person, org)
            if found is not None and found.is_operator and not org:
                return Acting(found.principal, None)  # the operator's log is every org's unless ?org= names one
            return found

        return await dash.read(work)

    def refused(request: Request, found: Acting | None) -> Response | None:
        """Sign-in again when the session ended; ``/me`` when the role in the database may not read the log."""
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        if not found.is_operator and not page_allowed("GET", "/audit", found.role):
            return redirect("/me")
        return None

    async def audit_page(request: Request) -> Response:
        found = await current(request)
        if (refusal := refused(request, found)) is not None:
            return refusal
        assert found is not None
        params = request.query_params
        before = _before(params)

        def work(conn: Connection) -> dict[str, Any]:
            where = Filter(conn, found, params)
            events = with_emails(conn, where.events(conn, before, PAGE + 1))
            query = urlencode([(name, value) for name, value in params.multi_items() if name != "before" and value])
            return {
                **page_context(found, "audit"),
                "events": events[:PAGE],
                "next_before": events[PAGE - 1]["seq"] if len(events) > PAGE else None,
                "paged": before is not None,
                "filters": where.values,
                "errors": where.errors,
                "query": query,
                "orgs": list_orgs(conn) if found.is_operator else [],
                "org_filter": params.get("org", "") if found.is_operator else "",
            }

        view = await dash.read(work)
        return dash.render(request, "audit.html", view, status_code=400 if view["errors"] else 200)

    async def audit_csv(request: Request) -> Response:
        found = await current(request)
        if (refusal := refused(request, found)) is not None:
            return refusal
        assert found is not None

        def work(conn: Connection) -> str:
            where = Filter(conn, found, request.query_params)
            if where.errors:
                raise ClientError("; ".join(f"{name}: {message}" for name, message in where.errors.items()))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
            writer.writeheader()
            before, written = None, 0
            while written < EXPORT_EVENTS_MAX:
                events = with_emails(conn, where.events(conn, before, PAGE_MAX))
                for event in events:
                    writer.writerow(
                        {name: csv_cell(event.get(name)) for name in CSV_COLUMNS}
                        | {"before": csv_cell(event["before_text"]), "after": csv_cell(event["after_text"])}
                    )
                written += len(events)
                if len(events) < PAGE_MAX:
                    break
                before = events[-1]["seq"]
            return buffer.getvalue()

        body = await dash.read(work)
        stamp = services.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Content-Disposition": f'attachment; filename="glasskey-audit-{stamp}.csv"'}
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)

    return [
        Route("/audit", audit_page, methods=["GET"]),
        Route("/audit.csv", audit_csv, methods=["GET"]),
    ]
