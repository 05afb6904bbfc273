"""The Anthropic Messages API on the gateway's keys: thin endpoints over the lifecycle and the translation.

* ``POST /v1/messages`` (JSON or ``stream: true``) and ``POST /v1/messages/count_tokens``;
* ``GET /v1/models`` and ``GET /v1/models/{id}`` in Anthropic's shape when the caller sends
  ``anthropic-version`` (the Anthropic SDK always does); without it these routes do not match and
  the OpenAI listing answers.

The key may come as ``x-api-key`` (the Anthropic SDK) or ``Authorization: Bearer``. The body is
read inside the lifecycle's ``read_body`` (so a bad one leaves a receipt like any bad body) into a
``Passthrough``: an Anthropic route gets the caller's own body and its answer or events come back
as they were sent (``gateway.anthropic_passthrough``); any other route gets the OpenAI translation,
and its answer is translated back. Quotes, holds, fallback, receipts and the charge headers are
the lifecycle's, exactly as for ``/v1/chat/completions``. Every ``GlasskeyError`` is rendered in
Anthropic's error shape here, never in OpenAI's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import Connection
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from glasskey.errors import GlasskeyError, NotFound, RouteError
from glasskey.gateway.anthropic_inbound import check_version, to_chat_body
from glasskey.gateway.anthropic_inbound_reply import error_body, error_headers, to_message
from glasskey.gateway.anthropic_inbound_stream import MessageStream
from glasskey.gateway.anthropic_passthrough import Passthrough
from glasskey.gateway.http import JSONResponse, read_body, request_id_of
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import Emit, Flush, JSONOutcome
from glasskey.gateway.requests import check_chat_body, parse_json_object
from glasskey.gateway.streaming import RelayResponse
from glasskey.keys.service import KeyRecord
from glasskey.pricing.catalog import list_models
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.routing.health import HealthBoard
from glasskey.routing.selection import check_model_allowed, routes_for_key_by_model

log = logging.getLogger("glasskey.gateway")
VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"
# The inbound API as receipts and metrics name it.
ENDPOINT = "anthropic.messages"
# Anthropic's listing wants a creation time; the catalog has none, so every model shows the epoch.
CREATED_AT = "1970-01-01T00:00:00Z"
Handler = Callable[[Request], Awaitable[Response]]


def client_address_of(request: Request) -> str | None:
    """The client's address, which failed authentications are counted by (``keys.auth_throttle``)."""
    return request.client.host if request.client is not None else None


def authorization_of(request: Request) -> str | None:
    """The key as the lifecycle reads it: ``x-api-key`` first (the Anthropic SDK), else the bearer."""
    api_key = request.headers.get("x-api-key")
    return f"Bearer {api_key}" if api_key else request.headers.get("authorization")


class MessagesBody:
    """The inbound body, read for the lifecycle; it remembers what the reply needs and, in its
    ``passthrough``, the caller's own body for Anthropic routes."""

    def __init__(self, request: Request, limit_bytes: int) -> None:
        self.request = request
        self.limit_bytes = limit_bytes
        self.model = ""
        self.passthrough = Passthrough(request.headers.get(VERSION_HEADER), request.headers.getlist(BETA_HEADER))

    async def read(self) -> bytes:
        """The body the lifecycle quotes and holds on (``anthropic_passthrough.bounding_body``)."""
        check_version(self.request.headers.get(VERSION_HEADER))
        bounded = self.passthrough.take(parse_json_object(await read_body(self.request, self.limit_bytes)))
        self.model = str(bounded.get("model") or "")
        return orjson.dumps(bounded)


class AnthropicOnlyRoute(Route):
    """A route that matches only requests carrying ``anthropic-version``; others fall through to the next."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not any(name == b"anthropic-version" for name, _ in scope["headers"]):
            return Match.NONE, {}
        return super().matches(scope)


def anthropic_models(conn: Connection, key: KeyRecord, health: HealthBoard) -> dict[str, Any]:
    """The chat models this key may call and that have a route, in Anthropic's ``ListModels`` shape."""
    by_model = routes_for_key_by_model(conn, key, health)
    data = [
        {
            "type": "model",
            "id": model.name,
            "display_name": model.name,
            "created_at": CREATED_AT,
            "glasskey": {
                "settlement": key.policy.settlement,
                "price_per_mtok_micros": by_model[model.name][0].prices.as_dict(),
            },
        }
        for model in list_models(conn)
        if model.kind == "chat" and key.policy.allows(model.name) and by_model.get(model.name)
    ]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"data": data, "has_more": False, "first_id": first, "last_id": last}


def anthropic_model(conn: Connection, key: KeyRecord, health: HealthBoard, model_id: str) -> dict[str, Any]:
    """One model of that listing (``GET /v1/models/{id}``); 404 unknown, 403 not allowed, 404 without a route."""
    check_model_allowed(conn, key, model_id)
    listing: list[dict[str, Any]] = anthropic_models(conn, key, health)["data"]
    found = [entry for entry in listing if entry["id"] == model_id]
    if not found:
        raise NotFound(f"The model `{model_id}` has no chat route this key may use")
    return found[0]


def _error_response(error: GlasskeyError, request_id: str) -> Response:
    body, headers = error_body(error, request_id), error_headers(error, request_id)
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def _in_anthropic_shape(handler: Handler) -> Handler:
    """Every refusal in Anthropic's shape; a bug too, as ``gateway.asgi`` answers it (its receipt is left)."""

    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except GlasskeyError as error:
            return _error_response(error, request_id_of(request))
        except ClientDisconnect:
            raise
        except Exception:  # the edge of the endpoint: the client still gets its error's shape and id
            log.exception("unexpected error in %s", request.url.path)
            failure = RouteError("internal gateway error", code="internal_error", status_code=500)
            return _error_response(failure, request_id_of(request))

    return handle


def routes_anthropic(lifecycle: Lifecycle) -> list[Route]:
    """Full paths, to be placed before the ``/v1`` mount (whose ``/models`` answers the other callers)."""
    services = lifecycle.services
    limit = services.settings.request_body_max_bytes

    async def messages(request: Request) -> Response:
        request_id = request_id_of(request)
        body = MessagesBody(request, limit)
        outcome = await lifecycle.chat(
            request_id,
            authorization_of(request),
            body.read,
            endpoint=ENDPOINT,
            client_address=client_address_of(request),
            passthrough=body.passthrough,
        )
        message_id = f"msg_{request_id}"
        headers = {**outcome.headers, "request-id": request_id}
        if isinstance(outcome, JSONOutcome):
            if outcome.shape != body.passthrough.shape:
                outcome.body = to_message(outcome.body, message_id=message_id, model=body.model)
            return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
        if outcome.shape == body.passthrough.shape:  # Anthropic's own events, relayed as they came
            return RelayResponse(outcome.relay, headers)  # type: ignore[return-value]
        stream = MessageStream(message_id, body.model)
        relay = outcome.relay

        async def translated_relay(emit: Emit, flush: Flush) -> None:
            async def translated(data: bytes) -> None:
                events = stream.feed(data)
                if events:
                    await emit(events)

            await relay(translated, flush)

        return RelayResponse(translated_relay, headers)  # type: ignore[return-value]

    async def count_tokens(request: Request) -> Response:
        key = await lifecycle.key_of(authorization_of(request))
        check_version(request.headers.get(VERSION_HEADER))
        chat = to_chat_body(parse_json_object(await read_body(request, limit)), counting=True)
        check_chat_body(chat)
        await lifecycle.read(lambda conn: check_model_allowed(conn, key, chat["model"]))
        # The gateway's own estimate (no tokenizer ships with it); the bill counts what the route reports.
        return JSONResponse(
            {"input_tokens": chat_input_tokens(chat).estimate}, headers={"request-id": request_id_of(request)}
        )

    async def models(request: Request) -> Response:
        key = await lifecycle.key_of(authorization_of(request))
        return JSONResponse(await lifecycle.read(lambda conn: anthropic_models(conn, key, services.health)))

    async def model(request: Request) -> Response:
        key = await lifecycle.key_of(authorization_of(request))
        model_id = str(request.path_params["model_id"])
        return JSONResponse(await lifecycle.read(lambda conn: anthropic_model(conn, key, services.health, model_id)))

    return [
        Route("/v1/messages", _in_anthropic_shape(messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", _in_anthropic_shape(count_tokens), methods=["POST"]),
        AnthropicOnlyRoute("/v1/models", _in_anthropic_shape(models), methods=["GET"]),
        AnthropicOnlyRoute("/v1/models/{model_id:path}", _in_anthropic_shape(model), methods=["GET"]),
    ]
