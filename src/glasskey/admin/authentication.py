"""Who is calling the admin API: the operator's admin token, or a person's access token (``gkp-…``).

The check runs before the body is read or the path routed, so an unauthenticated client makes
the server parse nothing and learns nothing about which paths exist. It puts the ``Principal`` in
the request's state for the per-endpoint guard (``admin.access``). Wrong credentials count in the
sign-in throttle (``people.throttle``): once an address, or the gateway as a whole, has too many
failures, every attempt answers 429 with ``retry-after`` until the window passes, whatever it
carries. Each failure is written to the audit log.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from glasskey.admin.access import ADMIN_ACCESS
from glasskey.errors import AdminAuthError, GlasskeyError, error_body
from glasskey.people.audit import Actor, record
from glasskey.people.principal import ADMIN_TOKEN, Principal
from glasskey.people.throttle import Throttle, scopes
from glasskey.people.tokens import TOKEN, authenticate_token
from glasskey.services import Services
from glasskey.settings import secret_matches

DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"})
# Paths whose handlers check a credential of their own (a password, an invitation link).
PUBLIC_PATHS = DOCUMENT_PATHS | {path for (_, path), rule in ADMIN_ACCESS.items() if rule.scope == "public"}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _local_path(scope: Scope) -> str:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class AdminAuthentication:
    def __init__(self, app: ASGIApp, *, services: Services, throttle: Throttle) -> None:
        self.app = app
        self.services = services
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _local_path(scope) in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticate(scope)
        except GlasskeyError as refusal:
            await self._render(scope, receive, send, refusal)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope) -> Principal:
        scheme, _, token = (Headers(scope=scope).get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AdminAuthError(
                "Missing credentials: send `Authorization: Bearer <admin token or gkp- access token>`",
                code="missing_admin_token",
                headers=_CHALLENGE,
            )
        attempt = scopes(_address(scope))
        await self.throttle.check(attempt)
        try:
            if token.startswith(f"{TOKEN.prefix}-"):
                return await anyio.to_thread.run_sync(self._person, token)
            if secret_matches(self.services.settings.admin_token, token):
                return ADMIN_TOKEN
            raise AdminAuthError("Incorrect admin token", headers=_CHALLENGE)
        except AdminAuthError as refusal:
            await self.throttle.fail(attempt)
            request_id = str(scope.get("state", {}).get("request_id", ""))
            await anyio.to_thread.run_sync(self._audit_failure, _address(scope), request_id, refusal.code or "")
            raise

    def _person(self, token: str) -> Principal:
        with self.services.db.read() as conn:
            return authenticate_token(conn, pepper=self.services.pepper, text=token, now=self.services.clock())

    def _audit_failure(self, address: str, request_id: str, reason: str) -> None:
        with self.services.db.write() as conn:
            actor = Actor("anonymous", address=address, request_id=request_id)
            record(
                conn, actor, "admin_api.authenticate", self.services.clock(), outcome="failed", after={"reason": reason}
            )

    async def _render(self, scope: Scope, receive: Receive, send: Send, refusal: GlasskeyError) -> None:
        request_id = str(scope.get("state", {}).get("request_id", ""))
        response = JSONResponse(
            error_body(refusal, request_id), status_code=refusal.status_code, headers=refusal.headers
        )
        await response(scope, receive, send)
