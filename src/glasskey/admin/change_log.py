"""Every change made through the admin API lands in the audit log, whoever made it and through whichever endpoint.

A successful POST, PUT, PATCH or DELETE is recorded after it answered: who (the principal), when,
which endpoint and path, from which address and request, under the org it touched. Bodies are never
copied (a route's credential or a password may be in one); endpoints that write their own, richer
events (before → after) are not recorded twice. Refusals are not changes: the guard records denials.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from sqlalchemy import Connection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.errors import NotFound
from glasskey.keys.service import get_key
from glasskey.orgs.service import get_org
from glasskey.people.audit import record
from glasskey.people.principal import Principal
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


class ChangeLog:
    """Runs inside ``AdminAuthentication``, so the principal is known."""

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services

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
        principal = scope.get("state", {}).get("principal")
        endpoint = getattr(route, "endpoint", None)
        if status >= 400 or not isinstance(principal, Principal) or route is None:
            return
        if getattr(endpoint, "__module__", "") in SELF_RECORDING:
            return
        await anyio.to_thread.run_sync(self._record, scope, principal, f"{scope['method']} {route.path}", status)

    def _record(self, scope: Scope, principal: Principal, action: str, status: int) -> None:
        client = scope.get("client")
        address = str(client[0]) if client else ""
        request_id = str(scope.get("state", {}).get("request_id", ""))
        with self.services.db.write() as conn:
            record(
                conn,
                principal.actor(address, request_id),
                action,
                self.services.clock(),
                org_id=org_touched(conn, principal, dict(scope.get("path_params", {}))),
                target=str(scope.get("path", "")),
                after={"status": status},
            )
