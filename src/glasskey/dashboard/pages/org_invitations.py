"""An org's invitations, for its owners: invite an email with a role, see the one-time link once, revoke.

The link is the answer to the form's POST (never a URL that can be fetched again), as a key's secret
is: glasskey keeps only its hash. With ``GLASSKEY_SMTP_URL`` set it is mailed to the invitee instead,
and the page says so. (The page the link opens is ``pages/invitation.py``.)
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
from glasskey.errors import GlasskeyError
from glasskey.people import invitations
from glasskey.people.audit import record
from glasskey.people.mail import send_invitation
from glasskey.people.roles import ROLES, can_act_on


def invitations_view(conn: Connection, found: Acting, now: Any) -> dict[str, Any]:
    org = require_org(found)
    listed = invitations.list_invitations(conn, org.id)
    return {
        **page_context(found, "invitations"),
        "invitations": [(item, invitations.invitation_status(item, now)) for item in reversed(listed)],
        "grantable": [role for role in ROLES if can_act_on(found.role, role)],
        "errors": {},
        "values": {},
    }


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        return await dash.read(lambda conn: acting(conn, person, request.query_params.get("org")))

    async def invitations_page(request: Request) -> Response:
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        now = services.clock()
        return dash.render(
            request, "invitations.html", await dash.read(lambda conn: invitations_view(conn, found, now))
        )

    async def invite(request: Request) -> Response:
        form = await read_form(request)
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        email, role = form_text(form, "email"), form_text(form, "role")
        actor = found.principal.actor(request.client.host if request.client else "", request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> tuple[invitations.Invitation, str]:
            org = require_org(found)
            invitation, secret = invitations.invite(
                conn,
                pepper=services.pepper,
                actor_id=found.principal.user_id or "operator",
                actor_role=found.role,
                org_id=org.id,
                email=email,
                role=role,
                now=now,
            )
            record(
                conn, actor, "invitation.create", now, org_id=org.id, target=invitation.email, after=invitation.public()
            )
            return invitation, secret

        try:
            invitation, secret = await dash.write(work)
        except GlasskeyError as refused:
            if refused.status_code == 404:
                raise
            view = await dash.read(lambda conn: invitations_view(conn, found, now))
            field = refused.param if refused.param in ("email", "role") else "email"
            view["errors"] = {"role" if refused.code == "role_too_low" else field: refused.message}
            view["values"] = {"email": email, "role": role}
            return dash.render(request, "invitations.html", view, status_code=refused.status_code)
        link = f"{services.settings.effective_public_url}/invitation?token={secret}"
        smtp_url = services.settings.smtp_url.get_secret_value()
        mail_error = None
        if smtp_url:
            org = require_org(found)
            mail_error = send_invitation(
                smtp_url,
                to=invitation.email,
                org_name=org.name,
                role=invitation.role,
                link=link,
                expires_at=invitation.expires_at,
            )
            if mail_error is None:
                flash(request, f"The invitation was mailed to {invitation.email}; its link works once, for 72 hours.")
                return redirect(f"/invitations{page_context(found, 'invitations')['org_query']}")
        context = {
            **page_context(found, "invitations"),
            "invitation": invitation,
            "link": link,
            "mail_error": mail_error,
        }
        # Reloading shows the list, never the link again (the page's script replaces the URL).
        context["replace_url"] = f"/invitations{context['org_query']}"
        return dash.render(request, "invitation_created.html", context, status_code=201)

    async def revoke(request: Request) -> Response:
        await read_form(request)
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        invitation_id = request.path_params["invitation_id"]
        actor = found.principal.actor(request.client.host if request.client else "", request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> str:
            org = require_org(found)
            ended = invitations.revoke_invitation(conn, org.id, invitation_id, now)
            record(conn, actor, "invitation.revoke", now, org_id=org.id, target=ended.email, after=ended.public())
            return ended.email

        email = await dash.write(work)
        flash(request, f"The invitation of {email} was revoked: its link no longer works.")
        return redirect(f"/invitations{page_context(found, 'invitations')['org_query']}")

    return [
        Route("/invitations", invitations_page, methods=["GET"]),
        Route("/invitations", invite, methods=["POST"]),
        Route("/invitations/{invitation_id}/revoke", revoke, methods=["POST"]),
    ]
