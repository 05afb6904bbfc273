"""A person's own page (``/me``): their org's wallets, notices, and the keys and receipts their role may read.

An owner, billing person or viewer reads every key of the org and its receipts; a member reads the
keys they hold or answer for, and those keys' receipts. The org and the person come from the
session, never from the query. The session ends here once the person's password changed (their
credential version moved), their role changed or they left the org. A person in several orgs switches
between them (``POST /me/org``): the session then names the other org and their role in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.alerts.notices import notices
from glasskey.dashboard.acting import Acting, org_choices, session_still_valid
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.forms import form_text
from glasskey.dashboard.web import Dashboard, read_form, redirect
from glasskey.errors import NotFound, shown
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org, list_wallets
from glasskey.people.holders import holder_view, keys_of
from glasskey.people.members import role_in
from glasskey.people.principal import Principal
from glasskey.store.tables import receipts

RECEIPTS_SHOWN = 50
READS_WHOLE_ORG = ("owner", "billing", "viewer")


def my_view(conn: Connection, person: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """What the person's role lets them read in their org; None once their session is no longer good."""
    if session_still_valid(conn, person) != person["role"]:
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
    principal = Principal(role=person["role"], user_id=person["user_id"], email=person["email"], org_id=org_id)
    return {
        "acting": Acting(principal, get_org(conn, org_id), org_choices(conn, person["user_id"])),
        "tab": "me",
        "org_query": "",
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

    async def switch_org(request: Request) -> Response:
        """The org switcher: the same person, now in another org they belong to, with their role there."""
        form = await read_form(request)
        person = person_of(request.session)
        if person is None:
            return redirect("/")
        org_id = form_text(form, "org_id")

        def work(conn: Connection) -> str | None:
            if session_still_valid(conn, person) is None:
                return None
            role = role_in(conn, org_id, person["user_id"]) if org_id else None
            if role is None:  # not one of the person's orgs: as unknown as one that does not exist
                raise NotFound(f"org {shown(org_id)} does not exist")
            return role

        role = await dash.read(work)
        if role is None:
            end_session(request.session)
            return redirect("/signin")
        request.session["person"] = {**person, "org_id": org_id, "role": role}
        return redirect("/me")

    return [Route("/me", me, methods=["GET"]), Route("/me/org", switch_org, methods=["POST"])]
