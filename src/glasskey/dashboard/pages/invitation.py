"""The page an invitation link opens: the invitee sets a password (or proves theirs) and joins the org.

Reachable without signing in (the link's secret is the credential). A wrong, used or expired link
counts in the sign-in throttle like a wrong password; a weak new password does not (it is no guess).
"""

from __future__ import annotations

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.forms import form_text
from glasskey.dashboard.web import Dashboard, flash, read_form, redirect, request_id_of
from glasskey.errors import AdminAuthError, ClientError
from glasskey.people import invitations
from glasskey.people.audit import Actor, record
from glasskey.people.throttle import scopes


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services
    throttle = services.signin_throttle

    def form(request: Request, token: str, error: str = "", status_code: int = 200) -> Response:
        return dash.render(
            request, "invitation.html", {"token": token, "error": error, "signed_in": False}, status_code=status_code
        )

    async def invitation_form(request: Request) -> Response:
        return form(request, request.query_params.get("token", "")[:200])

    async def accept(request: Request) -> Response:
        sent = await read_form(request)
        token, password = form_text(sent, "token")[:200], form_text(sent, "password")
        address = request.client.host if request.client is not None else ""
        attempt = scopes(address)
        try:
            await throttle.check(attempt)
        except AdminAuthError as throttled:
            response = form(request, token, throttled.message, 429)
            response.headers.update(throttled.headers)
            return response
        now = services.clock()

        def work(conn: Connection) -> None:
            user, invitation = invitations.accept(
                conn, pepper=services.pepper, secret=token, password=password, now=now
            )
            actor = Actor(user.id, user.email, address, request_id_of(request))
            record(conn, actor, "invitation.accept", now, org_id=invitation.org_id, target=user.email)

        try:
            await dash.write(work)
        except AdminAuthError as refused:
            await throttle.fail(attempt)
            return form(request, token, refused.message, 401)
        except ClientError as weak:
            return form(request, token, weak.message, 400)
        flash(request, "You joined the org: sign in with your email and password.")
        return redirect("/signin")

    return [
        Route("/invitation", invitation_form, methods=["GET"]),
        Route("/invitation", accept, methods=["POST"]),
    ]
