"""Signing in with the admin token or as a person (email, password, one-time code), and signing out.

Wrong tokens count in the sign-in throttle (``people.throttle``): once an address, or the gateway
as a whole, has too many failures, the form answers 429 with ``retry-after`` until the window
passes, whatever token it carries. Sign-ins and failures are written to the audit log.
"""

from __future__ import annotations

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.auth import (
    admin_token_matches,
    end_session,
    is_signed_in,
    safe_next,
    start_person_session,
    start_session,
)
from glasskey.dashboard.forms import form_text
from glasskey.dashboard.web import Dashboard, read_form, redirect, request_id_of
from glasskey.errors import AdminAuthError
from glasskey.people.audit import Actor, record
from glasskey.people.members import Membership, memberships_of
from glasskey.people.roles import OPERATOR
from glasskey.people.signin import record_failed_sign_in, sign_in
from glasskey.people.throttle import scopes
from glasskey.people.users import User


def routes(dash: Dashboard) -> list[Route]:
    settings = dash.services.settings
    throttle = dash.services.signin_throttle

    async def signin_form(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if is_signed_in(request.session):
            return redirect(target)
        signed_out = request.query_params.get("signed_out") == "1"
        return dash.render(request, "signin.html", {"next": target, "error": "", "signed_out": signed_out})

    async def signin(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(form_text(form, "next"))
        address = request.client.host if request.client is not None else ""
        attempt = scopes(address)
        try:
            await throttle.check(attempt)
        except AdminAuthError as throttled:
            context = {"next": target, "error": throttled.message, "signed_out": False}
            response = dash.render(request, "signin.html", context, status_code=429)
            response.headers.update(throttled.headers)
            return response
        if form_text(form, "email"):
            return await person_signin(request, form_text(form, "email"), form, target, address)
        token = form_text(form, "admin_token")
        matched = bool(token) and admin_token_matches(settings, token)
        actor = Actor(OPERATOR, "dashboard", address=address, request_id=request_id_of(request))
        await dash.write(
            lambda conn: record(
                conn, actor, "signin", dash.services.clock(), target="dashboard", outcome="ok" if matched else "failed"
            )
        )
        if not matched:
            await throttle.fail(attempt)
            context = {"next": target, "error": "That is not this gateway's admin token.", "signed_out": False}
            return dash.render(request, "signin.html", context, status_code=401)
        start_session(request.session)
        return redirect(target)

    async def person_signin(request: Request, email: str, form: FormData, target: str, address: str) -> Response:
        attempt = scopes(address, email)
        try:
            await throttle.check(attempt)  # the account's own window (the address's was checked already)
        except AdminAuthError as throttled:
            context = {"next": target, "error": throttled.message, "signed_out": False}
            response = dash.render(request, "signin.html", context, status_code=429)
            response.headers.update(throttled.headers)
            return response
        actor = Actor("anonymous", address=address, request_id=request_id_of(request))
        now = dash.services.clock()

        def work(conn: Connection) -> tuple[User, Membership | None]:
            user = sign_in(
                conn,
                pepper=dash.services.pepper,
                email=email,
                password=form_text(form, "password"),
                code=form_text(form, "code") or None,
                now=now,
                actor=actor,
            )
            joined = memberships_of(conn, user.id)
            return user, joined[0] if joined else None

        try:
            user, membership = await dash.write(work)
        except AdminAuthError as refusal:
            await throttle.fail(attempt)
            reason, message = refusal.code or "", refusal.message
            await dash.write(lambda conn: record_failed_sign_in(conn, email=email, reason=reason, now=now, actor=actor))
            context = {"next": target, "error": message, "signed_out": False}
            return dash.render(request, "signin.html", context, status_code=401)
        if user.is_operator:
            start_session(request.session)
            return redirect(target)
        if membership is None:
            context = {"next": target, "error": "This account is not a member of any org yet.", "signed_out": False}
            return dash.render(request, "signin.html", context, status_code=403)
        start_person_session(
            request.session,
            user_id=user.id,
            email=user.email,
            org_id=membership.org_id,
            role=membership.role,
            credential_version=user.credential_version,
        )
        return redirect("/me")

    async def signout(request: Request) -> Response:
        await read_form(request)
        end_session(request.session)
        return redirect("/signin?signed_out=1")

    return [
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
    ]
