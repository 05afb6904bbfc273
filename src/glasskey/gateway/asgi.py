"""The gateway's one front door for the two hot endpoints; every other path goes to Starlette.

Starlette's middleware stack, router and mounts cost the event loop more per request than a whole
bare proxy does. ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` are nearly all of the
traffic, so they are dispatched here with what the stack would have given them and nothing else:
a request id (and its ``x-request-id`` header), the body read under the same 413 limit, a
``GlasskeyError`` rendered by the one error mapping, and anything unexpected answered with a 500
in the same error shape (``internal_error``, the request id of its receipt) before the error goes
on to the server.
They have no other door: any other method on them is a 405 in the same error shape, under a root
path too. Every other path, and the lifespan, go to the Starlette app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from glasskey.errors import ClientError, GlasskeyError, RouteError
from glasskey.gateway.http import error_response, outcome_response, receive_body
from glasskey.gateway.lifecycle import BodyReader, Lifecycle
from glasskey.gateway.outcomes import JSONOutcome, StreamOutcome
from glasskey.gateway.streaming import RelayResponse
from glasskey.ids import new_id
from glasskey.request_ids import REQUEST_ID_HEADER


class Endpoint(Protocol):
    """``Lifecycle.chat`` or ``Lifecycle.embeddings``."""

    def __call__(
        self, request_id: str, authorization: str | None, read_body: BodyReader, *, client_address: str | None
    ) -> Awaitable[JSONOutcome | StreamOutcome]: ...


_REQUEST_ID_HEADER_RAW = REQUEST_ID_HEADER.encode("latin-1")


class GatewayApp:
    """The ASGI app ``build_app`` returns; ``app`` is the Starlette app behind it."""

    def __init__(self, app: Starlette, lifecycle: Lifecycle) -> None:
        self.app = app
        self.body_max_bytes = lifecycle.services.settings.request_body_max_bytes
        self._endpoints: dict[str, Endpoint] = {
            "/v1/chat/completions": lifecycle.chat,
            "/v1/embeddings": lifecycle.embeddings,
        }

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, root_path = scope["path"], scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            endpoint = self._endpoints.get(path)
            if endpoint is not None:
                if scope["method"] == "POST":
                    await self._serve(endpoint, scope, receive, send)
                else:
                    await _refuse_method(scope["method"], path, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_id("req")
        authorization: str | None = None
        declared_length: str | None = None
        # ASGI header names are lower case; the first of repeated headers wins, as in Starlette.
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"content-length" and declared_length is None:
                declared_length = value.decode("latin-1")
        limit = self.body_max_bytes

        def read_body() -> Awaitable[bytes]:
            return receive_body(receive, declared_length, limit)

        response: Response
        try:
            client = scope.get("client")
            # The address failed authentications are counted by (keys.auth_throttle).
            outcome = await endpoint(request_id, authorization, read_body, client_address=client[0] if client else None)
        except GlasskeyError as error:
            response = error_response(error, request_id)
        except Exception:
            # A bug. The lifecycle has already left the receipt; the client gets the brief's
            # error shape with the request id that names it, and the server logs the error.
            failure = RouteError("internal gateway error", code="internal_error", status_code=500)
            await _send_with_id(error_response(failure, request_id), request_id, send)
            raise
        else:
            rendered = outcome_response(outcome)
            if isinstance(rendered, RelayResponse):
                # The relay sends its own headers first; whatever fails after that cannot be
                # rendered, and goes on to the server, which closes the connection.
                rendered.headers[REQUEST_ID_HEADER] = request_id
                await rendered(scope, receive, send)
                return
            response = rendered
        await _send_with_id(response, request_id, send)


async def _refuse_method(method: str, path: str, send: Send) -> None:
    request_id = new_id("req")
    refusal = ClientError(f"{path} answers POST only, not {method}", code="http_405", status_code=405)
    response = error_response(refusal, request_id)
    response.headers["allow"] = "POST"
    await _send_with_id(response, request_id, send)


async def _send_with_id(response: Response, request_id: str, send: Send) -> None:
    headers = [header for header in response.raw_headers if header[0] != _REQUEST_ID_HEADER_RAW]
    headers.append((_REQUEST_ID_HEADER_RAW, request_id.encode("latin-1")))
    start: dict[str, Any] = {"type": "http.response.start", "status": response.status_code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": response.body})
