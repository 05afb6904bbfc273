"""Request ids: every response carries ``x-request-id``, the id its receipt and errors name."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.ids import new_id

REQUEST_ID_HEADER = "x-request-id"


class RequestIdMiddleware:
    """Gives each request an id (in ``scope["state"]``) and its response the header.

    An app mounted inside another (the admin API inside the gateway) reuses the enclosing app's
    id, so a response carries exactly one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if state.get("request_id"):
            await self.app(scope, receive, send)
            return
        request_id = state["request_id"] = new_id("req")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
