"""Signing in with the admin token, and signing out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.auth import admin_token_matches, end_session, is_signed_in, safe_next, start_session
from glasskey.dashboard.forms import form_text
from glasskey.dashboard.web import Dashboard, read_form, redirect


def routes(dash: Dashboard) -> list[Route]:
    settings = dash.services.settings

    async def signin_form(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if is_signed_in(request.session):
            return redirect(target)
        signed_out = request.query_params.get("signed_out") == "1"
        return dash.render(request, "signin.html", {"next": target, "error": "", "signed_out": signed_out})

    async def signin(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(form_text(form, "next"))
        token = form_text(form, "admin_token")
        if not token or not admin_token_matches(settings, token):
            context = {"next": target, "error": "That is not this gateway's admin token.", "signed_out": False}
            return dash.render(request, "signin.html", context, status_code=401)
        start_session(request.session)
        return redirect(target)

    async def signout(request: Request) -> Response:
        await read_form(request)
        end_session(request.session)
        return redirect("/signin?signed_out=1")

    return [
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
    ]
