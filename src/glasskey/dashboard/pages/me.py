"""A person's own page (``/me``): their org's wallets, notices, and the keys and receipts their role may read.

An owner, billing person or viewer reads every key of the org and its receipts; a member reads the
keys they hold or answer for, and those keys' receipts. The org and the person come from the
session, never from the query. The session ends here once the person's password changed (their
credential version moved) or they left the org.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.alerts.notices import notices
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.web import Dashboard, redirect
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org, list_wallets
from glasskey.people.holders import holder_view, keys_of
from glasskey.people.members import role_in
from glasskey.people.users import get_user
from glasskey.store.tables import receipts

RECEIPTS_SHOWN = 50
READS_WHOLE_ORG = ("owner", "billing", "viewer")


def _still_valid(conn: Connection, person: dict[str, Any]) -> bool:
    user = get_user(conn, person["user_id"])
    return (
        user.status == "active"
        and user.credential_version == person["credential_version"]
        and role_in(conn, person["org_id"], user.id) == person["role"]
    )


def my_view(conn: Connection, person: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """What the person's role lets them read in their org; None once their session is no longer good."""
    if not _still_valid(conn, person):
        return None
    org_id = person["org_id"]
    if person["role"] in READS_WHOLE_ORG:
        keys = list_keys(conn, org_id)
    else:
        keys = [key for key, _holder in keys_of(conn, org_id, person["user_id"])]
    key_ids = [key.id for key in keys]
    rows = conn.execute(
        select(receipts)
        .where(receipts.c.org_id == org_id)
        .where(receipts.c.key_id.in_(key_ids))
        .order_by(receipts.c.seq.desc())
        .limit(RECEIPTS_SHOWN)
    )
    prefixes = {key.id: key.prefix for key in keys}
    return {
        "org": get_org(conn, org_id),
        "wallets": list_wallets(conn, org_id),
        "notices": notices(conn, org_id, keys, now),
        "keys": [(key, holder_view(conn, key)) for key in keys],
        "receipts": [{**row._mapping, "key_prefix": prefixes.get(row.key_id, "")} for row in rows],
    }


def routes(dash: Dashboard) -> list[Route]:
    async def me(request: Request) -> Response:
        person = person_of(request.session)
        if person is None:  # the operator has the whole dashboard
            return redirect("/")
        now = dash.services.clock()
        view = await dash.read(lambda conn: my_view(conn, person, now))
        if view is None:
            end_session(request.session)
            return redirect("/signin")
        # ``signed_in`` off: the operator's navigation is not drawn for a person (this page has its own).
        context = {"person": person, **view, "signed_in": False}
        return dash.render(request, "me.html", context)

    return [Route("/me", me, methods=["GET"])]
