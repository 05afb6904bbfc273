"""What every dashboard page shares: rendering, database work off the event loop, forms and refusals.

A page handler parses the request, calls domain functions through ``Dashboard.read`` or
``Dashboard.write`` (which run them in a worker thread with one connection), and renders one
template. Every POST reads its form through ``read_form``, which refuses a form without the
session's CSRF token, so no handler can forget the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from glasskey.dashboard import filters
from glasskey.dashboard.auth import check_csrf, csrf_token, session_principal
from glasskey.dashboard.refusals import FormTooLarge, NotAForm
from glasskey.people.audit import Actor
from glasskey.people.principal import ADMIN_TOKEN
from glasskey.services import Services

T = TypeVar("T")

# A dashboard form is a few fields; anything larger is not one of ours.
FORM_BODY_MAX_BYTES = 64 * 1024
FORM_FIELDS_MAX = 500
FLASH_MAX = 5


def request_id_of(request: Request) -> str:
    """The id ``RequestIdMiddleware`` gave this request (the gateway mounts the dashboard inside it),
    so a page's audit event names the same request as its ``x-request-id``."""
    return str(request.scope.get("state", {}).get("request_id", ""))


def actor_of(request: Request) -> Actor:
    """Who a signed-in session acts as in the audit log, with the address and request id."""
    principal = session_principal(request.scope) or ADMIN_TOKEN  # the gate let only a signed-in session here
    return principal.actor(request.client.host if request.client else "", request_id_of(request))


def template_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("glasskey.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a misspelt variable fails a test instead of rendering blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return env


class Dashboard:
    """The dashboard's services and templates, built once per app."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.templates = Jinja2Templates(env=template_environment())

    async def read(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.services.db.read() as conn:
                return work(conn)

        return await anyio.to_thread.run_sync(run)

    async def write(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.services.db.write() as conn:
                return work(conn)

        return await anyio.to_thread.run_sync(run)

    def render(
        self, request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
    ) -> Response:
        session = request.session
        values: dict[str, Any] = {
            "csrf_token": csrf_token(session),
            "flashes": session.pop("flash", []),
            "signed_in": bool(session.get("signed_in")),
            "nav": "",
            "replace_url": "",
            "now": self.services.clock(),
            **(context or {}),
        }
        return self.templates.TemplateResponse(request, name, values, status_code=status_code)


def flash(request: Request, message: str) -> None:
    """A one-line notice shown on the next page rendered for this session."""
    messages = [*request.session.get("flash", []), message]
    request.session["flash"] = messages[-FLASH_MAX:]


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def read_form(request: Request) -> FormData:
    """The POSTed form, after checking its CSRF token against the session's.

    Forms are ``application/x-www-form-urlencoded`` and small: the body is read up to
    ``FORM_BODY_MAX_BYTES`` and parsed by the standard library, so no multipart parser is needed.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise NotAForm("Dashboard forms are sent as application/x-www-form-urlencoded.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > FORM_BODY_MAX_BYTES:
            raise FormTooLarge(f"A dashboard form is at most {FORM_BODY_MAX_BYTES // 1024} KiB.")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=FORM_FIELDS_MAX
        )
    except (UnicodeDecodeError, ValueError):
        raise NotAForm("The form could not be read.") from None
    form = FormData([(name, value) for name, value in pairs])
    check_csrf(request.session, form.get("csrf_token"))
    return form
