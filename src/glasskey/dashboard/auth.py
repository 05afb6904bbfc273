"""Signing in (the admin token, or a person's email and password), the session it opens, and the
CSRF token of every form.

The session is Starlette's signed cookie: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the
public URL is https, and valid for ``SESSION_MAX_AGE_SECONDS``. Its signing secret is an HMAC of
the admin token keyed by the key pepper, so the cookie never carries the token, and changing
either setting signs everyone out. Each session holds a random CSRF token; every form carries it
and every POST is checked against it (see ``web.read_form``).

A person's session also names the person, their org, their role and their account's credential
version: the gate lets it open only the pages its role may (``admin.access.DASHBOARD_ACCESS``),
sending it to ``/me`` otherwise, and ``/me`` ends it once the password changed or the person left.
A new session is started at every sign-in, so nothing from before sign-in carries over.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from glasskey.admin.access import page_allowed
from glasskey.dashboard.refusals import CsrfRefused
from glasskey.people.principal import ADMIN_TOKEN, Principal
from glasskey.settings import Settings, secret_matches

SESSION_COOKIE = "glasskey_session"
SESSION_MAX_AGE_SECONDS = 12 * 60 * 60
CSRF_FIELD = "csrf_token"
_SESSION_CONTEXT = b"glasskey dashboard session v1\x00"
# Paths a visitor may reach before signing in: the sign-in form, an invitation link's page, the stylesheet.
# Exact paths, not prefixes: ``/invitations`` (an owner's page) must never pass for ``/invitation``.
PUBLIC_PATHS = frozenset({"/signin", "/invitation"})
PUBLIC_PREFIXES = ("/static/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


Session = MutableMapping[str, Any]


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies, derived from the admin token; never the token itself."""
    pepper = settings.key_pepper.get_secret_value().encode()
    token = settings.admin_token.get_secret_value().encode()
    return hmac.new(pepper, _SESSION_CONTEXT + token, hashlib.sha256).hexdigest()


def admin_token_matches(settings: Settings, sent: str) -> bool:
    return secret_matches(settings.admin_token, sent)


def csrf_token(session: Session) -> str:
    """This session's CSRF token, made on first use (a visitor's sign-in form needs one too)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf(session: Session, sent: str | UploadFile | None) -> None:
    expected = session.get(CSRF_FIELD)
    if not isinstance(sent, str) or not sent or not isinstance(expected, str) or not expected:
        raise CsrfRefused(
            "The form did not carry this session's security token.",
            hint="Reload the page and send the form again; forms from other sites are never accepted.",
        )
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused(
            "The form's security token does not match this session (it may come from an older page).",
            hint="Reload the page and send the form again.",
        )


def start_session(session: Session) -> None:
    """A fresh session for a signed-in admin: nothing from before sign-in carries over."""
    session.clear()
    session["signed_in"] = True
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def start_person_session(
    session: Session, *, user_id: str, email: str, org_id: str, role: str, credential_version: int
) -> None:
    """A fresh session for a person signed in by email, in one org with one role."""
    start_session(session)
    session["person"] = {
        "user_id": user_id,
        "email": email,
        "org_id": org_id,
        "role": role,
        "credential_version": credential_version,
    }


def person_of(session: Session) -> dict[str, Any] | None:
    person = session.get("person")
    return person if isinstance(person, dict) else None


def session_principal(scope: Scope) -> Principal | None:
    """Who a signed-in dashboard session acts as, for the audit log: the operator, or the person."""
    session = scope.get("session") or {}
    if not is_signed_in(session):
        return None
    person = person_of(session)
    if person is None:
        return ADMIN_TOKEN
    return Principal(role=person["role"], user_id=person["user_id"], email=person["email"], org_id=person["org_id"])


def is_sign_in_form(scope: Scope) -> bool:
    """Signing in and out are audited by their own pages, not as changes."""
    path: str = scope["path"]
    return path.endswith(("/signin", "/signout"))


def end_session(session: Session) -> None:
    session.clear()


def is_signed_in(session: Session) -> bool:
    return session.get("signed_in") is True


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class SignInGate:
    """Sends a visitor who has not signed in to the sign-in page, before any page runs.

    It sits inside Starlette's ``SessionMiddleware`` (which puts the session in the scope).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        local = path[len(root_path) :] if root_path and path.startswith(root_path) else path
        if is_signed_in(scope["session"]):
            person = person_of(scope["session"])
            if person is None or is_public(local) or page_allowed(scope["method"], local, person["role"]):
                await self.app(scope, receive, send)
            else:
                await RedirectResponse(f"{root_path}/me", status_code=303)(scope, receive, send)
            return
        if is_public(local):
            await self.app(scope, receive, send)
            return
        target = local + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        location = f"{root_path}/signin" if local == "/" else f"{root_path}/signin?next={quote(target, safe='')}"
        await RedirectResponse(location, status_code=303)(scope, receive, send)
