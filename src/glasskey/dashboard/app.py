"""The dashboard application: its pages, the sign-in gate, the session and the error pages.

``build_dashboard(services)`` returns an ASGI app that the gateway mounts at ``/`` after every
other route, so ``/v1``, ``/admin/api``, ``/metrics`` and ``/healthz`` are untouched. From the
outside in: security headers, the signed session cookie, the sign-in gate, then the pages.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.admin.change_log import ChangeLog, records_itself
from glasskey.admin.docs import SWAGGER_UI_ASSETS, SWAGGER_UI_DIRECTORY
from glasskey.dashboard.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_SECONDS,
    SignInGate,
    is_sign_in_form,
    session_principal,
    session_secret,
)
from glasskey.dashboard.pages import (
    account,
    alerts,
    audit,
    failures,
    invitation,
    keys,
    limits,
    me,
    members,
    my_keys,
    org_invitations,
    overview,
    receipts,
    research,
    routes,
    signin,
    wallets,
)
from glasskey.dashboard.refusals import PageNotFound, Refusal
from glasskey.dashboard.web import Dashboard
from glasskey.errors import GlasskeyError, NotFound
from glasskey.request_ids import RequestIdMiddleware
from glasskey.services import Services

# Everything the pages load comes from this server: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

# What to do next after a domain error, by its source.
NEXT_STEP = {
    "client": "Go back, correct what the message names, and send it again.",
    "key": "Check the key on the Keys page.",
    "model": "Check the model on the Models & prices page.",
    "wallet": "Top up the wallet on the Wallets page.",
    "budget": "Check the key's budgets on its page.",
    "route": "Check the Routes page.",
    "upstream": "Check the Routes page for the provider's recent errors.",
    "gateway": "Try again shortly: the gateway's own database or Redis failed.",
}

SERVER_ERROR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Server error · glasskey</title>
<link rel="stylesheet" href="/static/dashboard.css"></head><body><main class="page narrow"><h1>Something broke</h1>
<p>The gateway failed while drawing this page; the error is in its log.</p><p><a href="/">Back to the overview</a></p>
</main></body></html>"""


class SecurityHeaders:
    """Headers every dashboard response carries; pages are never cached (they show balances and secrets)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                if not headers.get("content-type", "").startswith(
                    ("text/css", "text/javascript", "application/javascript", "image/")
                ):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def not_logged_here(scope: Scope) -> bool:
    """Sign-in forms and pages that record their own events are not recorded again by ``ChangeLog``."""
    return is_sign_in_form(scope) or records_itself(scope)


def build_dashboard(services: Services) -> Starlette:
    dash = Dashboard(services)

    def error_page(request: Request, status: int, title: str, message: str, hint: str, source: str = "") -> Response:
        context = {"title": title, "message": message, "hint": hint, "status": status, "source": source}
        return dash.render(request, "error.html", context, status_code=status)

    async def on_refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return error_page(request, exc.status_code, exc.title, exc.message, exc.hint)

    async def on_glasskey_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GlasskeyError)
        if isinstance(exc, NotFound):
            return error_page(request, 404, "Nothing here", exc.message, "Check the link, or start from the overview.")
        title = "That did not work"
        return error_page(request, exc.status_code, title, exc.message, NEXT_STEP.get(exc.source, ""), exc.source)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await on_refusal(request, PageNotFound(f"There is no page at {request.url.path}."))
        return error_page(request, exc.status_code, "That did not work", str(exc.detail), "")

    async def on_server_error(request: Request, exc: Exception) -> Response:
        return HTMLResponse(SERVER_ERROR_PAGE, status_code=500)

    page_routes: list[BaseRoute] = []
    people_pages = (my_keys, members, org_invitations, limits, audit)
    for area in (signin, invitation, me, *people_pages, overview, keys, wallets, receipts, failures, routes, research):
        page_routes.extend(area.routes(dash))
    page_routes.extend(alerts.routes(dash))
    page_routes.extend(account.routes(dash))
    static = StaticFiles(packages=[("glasskey.dashboard", "static")])
    # Swagger UI for /admin/api/docs, from its wheel: every page works offline.
    swagger_ui = StaticFiles(directory=SWAGGER_UI_DIRECTORY)
    app = Starlette(
        routes=[
            *page_routes,
            Mount(SWAGGER_UI_ASSETS, app=swagger_ui, name="swagger-ui"),
            Mount("/static", app=static, name="static"),
        ],
        exception_handlers={
            Refusal: on_refusal,
            GlasskeyError: on_glasskey_error,
            HTTPException: on_http_error,
            Exception: on_server_error,
        },
    )
    # The last middleware added runs first: headers, then the session, then the gate, then the log of changes.
    app.add_middleware(ChangeLog, services=services, principal_of=session_principal, skip=not_logged_here)
    app.add_middleware(SignInGate)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(services.settings),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_SECONDS,
        same_site="lax",
        https_only=services.settings.effective_public_url.startswith("https://"),
    )
    app.add_middleware(SecurityHeaders)
    # The gateway's id when mounted in it (one per response); its own when served alone.
    app.add_middleware(RequestIdMiddleware)
    app.state.dashboard = dash
    return app
