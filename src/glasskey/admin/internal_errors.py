"""The admin API's last line: an exception no handler knew still answers in the brief's shape.

FastAPI's handlers turn every ``GlasskeyError`` and validation refusal into JSON; anything else
would reach Starlette's ``ServerErrorMiddleware`` and come back as a plain-text 500. This
middleware sits just inside ``RequestIdMiddleware`` (so the answer carries ``x-request-id``) and
outside the authentication and change-log middlewares (so their failures are caught too):

* an outage of glasskey's own database or Redis (``store.outage.gateway_failure``) is a 503,
  ``source: gateway``, ``code: gateway_unavailable``, with ``retry-after``, logged as a warning;
* anything else is a bug: a 500, ``source: gateway``, ``code: internal_error`` (the admin API runs
  no route, so the gateway is the one to blame), logged with its traceback at ERROR. The message
  never carries the exception's text, which may hold a value from the database.

An exception after the answer has started cannot be answered again: it is re-raised, and the
server closes the connection as it would anyway.
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.errors import GatewayError, error_body
from glasskey.store.outage import gateway_failure

log = logging.getLogger("glasskey.admin")


def internal_error() -> GatewayError:
    return GatewayError(
        "internal error in the admin API; it was logged with this request id",
        code="internal_error",
        status_code=500,
    )


class InternalErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:  # the outermost edge of the admin API (STYLE.md habit 4)
            if started:
                raise
            request_id = str(scope.get("state", {}).get("request_id", ""))
            failure = gateway_failure(exc)
            if failure is not None:
                log.warning("admin %s %s failed on an outage: %r", scope["method"], scope["path"], exc)
            else:
                log.exception("admin %s %s failed (request %s)", scope["method"], scope["path"], request_id)
                failure = internal_error()
            await _answer(send, failure, request_id)


async def _answer(send: Send, error: GatewayError, request_id: str) -> None:
    body = orjson.dumps(error_body(error, request_id))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
