"""An org's members: the list (everyone in the org reads it), and for owners a role change and removal.

Removal is offboarding (``people.offboarding``): the page shows the plan first — the person's own keys
revoked, each service key they answer for handed to another member or revoked, their tokens revoked —
and carries it out only as shown (the plan's fingerprint), so nothing happens that the owner did not see.
No role acts on an equal or higher role; the acting role is the one in the database now, not the session's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.acting import Acting, acting, page_context, require_org
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.forms import form_text
from glasskey.dashboard.web import Dashboard, flash, read_form, redirect, request_id_of
from glasskey.errors import ClientError, GlasskeyError
from glasskey.people import changes as audited
from glasskey.people import offboarding
from glasskey.people.members import list_members
from glasskey.people.roles import ROLES, can_act_on, rank

SERVICE_CHOICE_PREFIX = "service."


def members_view(conn: Connection, found: Acting) -> dict[str, Any]:
    org = require_org(found)
    members = list_members(conn, org.id)
    grantable = [role for role in ROLES if can_act_on(found.role, role)]
    return {
        **page_context(found, "members"),
        "members": members,
        "manageable": {
            m.user_id for m in members if can_act_on(found.role, m.role) and m.user_id != found.principal.user_id
        },
        "grantable": grantable,
        "errors": {},
    }


def decisions_of(params: Any) -> dict[str, str]:
    """The owner's choice for each service key (``service.<key id>`` = a user id or ``revoke``)."""
    return {
        name.removeprefix(SERVICE_CHOICE_PREFIX): str(value)
        for name, value in params.items()
        if name.startswith(SERVICE_CHOICE_PREFIX) and value
    }


def removal_view(conn: Connection, found: Acting, user_id: str, decisions: dict[str, str]) -> dict[str, Any]:
    org = require_org(found)
    plan = offboarding.preview(conn, found.role, org.id, user_id, decisions)
    receivers = [m for m in list_members(conn, org.id) if m.user_id != user_id and rank(m.role) >= rank("member")]
    return {
        **page_context(found, "members"),
        "plan": plan,
        "receivers": receivers,
        "decisions": {item["key_id"]: item["to_user_id"] or "revoke" for item in plan.service_keys},
        "error": "",
    }


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        return await dash.read(lambda conn: acting(conn, person, request.query_params.get("org")))

    async def members_page(request: Request) -> Response:
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        return dash.render(request, "members.html", await dash.read(lambda conn: members_view(conn, found)))

    async def change(request: Request) -> Response:
        form = await read_form(request)
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        user_id = request.path_params["user_id"]
        role = form_text(form, "role")
        now = services.clock()

        def work(conn: Connection) -> str:
            org = require_org(found)
            after = audited.change_role(
                conn,
                found.principal.actor(request.client.host if request.client else "", request_id_of(request)),
                now,
                found.role,
                org.id,
                user_id,
                role,
            )
            return after.email

        try:
            email = await dash.write(work)
        except GlasskeyError as refused:
            if refused.status_code == 404:
                raise
            view = await dash.read(lambda conn: members_view(conn, found))
            view["errors"] = {user_id: refused.message}
            return dash.render(request, "members.html", view, status_code=refused.status_code)
        flash(request, f"{email} is now {role}.")
        return redirect(f"/members{page_context(found, 'members')['org_query']}")

    async def removal_page(request: Request) -> Response:
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        user_id = request.path_params["user_id"]
        decisions = decisions_of(request.query_params)
        view = await dash.read(lambda conn: removal_view(conn, found, user_id, decisions))
        return dash.render(request, "member_remove.html", view)

    async def remove(request: Request) -> Response:
        form = await read_form(request)
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        user_id = request.path_params["user_id"]
        decisions = decisions_of(form)
        fingerprint = form_text(form, "fingerprint")
        actor = found.principal.actor(request.client.host if request.client else "", request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> str:
            org = require_org(found)
            plan = offboarding.confirm(conn, actor, found.role, org.id, user_id, decisions, fingerprint, now)
            return plan.email

        try:
            email = await dash.write(work)
        except ClientError as changed:
            if changed.code != "plan_changed":
                raise
            view = await dash.read(lambda conn: removal_view(conn, found, user_id, decisions))
            view["error"] = changed.message
            return dash.render(request, "member_remove.html", view, status_code=409)
        flash(request, f"{email} left the org: their keys and tokens were dealt with as shown.")
        return redirect(f"/members{page_context(found, 'members')['org_query']}")

    return [
        Route("/members", members_page, methods=["GET"]),
        Route("/members/{user_id}/role", change, methods=["POST"]),
        Route("/members/{user_id}/remove", removal_page, methods=["GET"]),
        Route("/members/{user_id}/remove", remove, methods=["POST"]),
    ]
