"""Every change made through the admin API or the dashboard lands in the audit log, whoever made it.

A successful POST, PUT, PATCH or DELETE (an answer below 400; the dashboard answers a done form
with a 303) is recorded after it answered: who (the principal), when, which endpoint and path, from
which address and request, under the org it touched. Bodies are never copied (a route's credential
or a password may be in one); endpoints that write their own, richer events (before → after) are
not recorded twice: neither those of the modules listed below nor any request that already wrote an
event under its request id (one row per change). Refusals are not changes: the admin API's guard
records denials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy import Connection, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.errors import NotFound
from glasskey.keys.service import get_key
from glasskey.orgs.service import get_org
from glasskey.people.audit import record
from glasskey.people.principal import Principal
from glasskey.people.tables import audit_events
from glasskey.services import Services

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Modules whose endpoints record their own events, with before and after.
SELF_RECORDING = frozenset(
    {
        "glasskey.admin.people",
        "glasskey.admin.members",
        "glasskey.admin.invitations",
        "glasskey.admin.my_keys",
        "glasskey.admin.keys",
        "glasskey.dashboard.pages.members",
        "glasskey.dashboard.pages.org_invitations",
        "glasskey.dashboard.pages.limits",
        "glasskey.dashboard.pages.my_keys",
        "glasskey.dashboard.pages.account",
    }
)


def org_touched(conn: Connection, principal: Principal, path_params: dict[str, Any]) -> str | None:
    """The org a change was made in: the person's, or the one its path names (directly or by a key)."""
    if principal.org_id is not None:
        return principal.org_id
    try:
        if "org_id" in path_params:
            return get_org(conn, str(path_params["org_id"])).id
        if "key_id" in path_params:
            return get_key(conn, str(path_params["key_id"])).org_id
    except NotFound:
        return None
    return None


def admin_principal(scope: Scope) -> Principal | None:
    """The principal ``AdminAuthentication`` put in the request's state."""
    principal = scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else None


def wrote_itself(conn: Connection, request_id: str) -> bool:
    """Whether the endpoint already recorded this request (with its before → after)."""
    found = conn.execute(select(audit_events.c.seq).where(audit_events.c.request_id == request_id).limit(1))
    return found.first() is not None


def records_itself(scope: Scope) -> bool:
    return getattr(getattr(scope.get("route"), "endpoint", None), "__module__", "") in SELF_RECORDING


class ChangeLog:
    """Runs where the principal is known (inside the admin API's authentication, or the dashboard's session)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        services: Services,
        principal_of: Callable[[Scope], Principal | None] = admin_principal,
        skip: Callable[[Scope], bool] = records_itself,
    ) -> None:
        self.app = app
        self.services = services
        self.principal_of = principal_of
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, send_and_note)
        route = scope.get("route")
        principal = self.principal_of(scope)
        if status >= 400 or principal is None or route is None or self.skip(scope):
            return
        await anyio.to_thread.run_sync(self._record, scope, principal, f"{scope['method']} {route.path}", status)

    def _record(self, scope: Scope, principal: Principal, action: str, status: int) -> None:
        client = scope.get("client")
        address = str(client[0]) if client else ""
        request_id = str(scope.get("state", {}).get("request_id", ""))
        with self.services.db.write() as conn:
            if request_id and wrote_itself(conn, request_id):
                return
            record(
                conn,
                principal.actor(address, request_id),
                action,
                self.services.clock(),
                org_id=org_touched(conn, principal, dict(scope.get("path_params", {}))),
                target=str(scope.get("path", "")),
                after={"status": status},
            )
