"""The Gemini API's endpoints: parse, translate, call the lifecycle, translate back. Nothing else.

``POST /v1beta/models/{model}:{method}`` (and the same under ``/v1``, where ``google-genai``
sends it when given a base URL) for ``generateContent``, ``streamGenerateContent?alt=sse``,
``countTokens``, ``embedContent`` and ``batchEmbedContents``; ``GET /v1beta/models`` and
``GET /v1beta/models/{model}``, and under ``/v1`` for callers sending ``x-goog-api-key`` only:
``GET /v1/models`` stays the OpenAI model list for everyone else.

The key comes in ``x-goog-api-key`` or ``?key=`` (or a bearer header) and is handed to the
lifecycle as a bearer token; it is never logged and never written anywhere, and no URL with its
query is ever put in a message. Every refusal is Google's error object (``gemini_answers``), with
the gateway's status, headers and ``request_id``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from glasskey.errors import GlasskeyError, ModelError, NotFound
from glasskey.gateway.anthropic_api import client_address_of
from glasskey.gateway.gemini_answers import StreamAnswer, embed_response, generate_response, google_error, model_entry
from glasskey.gateway.gemini_inbound import chat_body, embedding_body
from glasskey.gateway.gemini_inbound_config import fields, unsupported
from glasskey.gateway.http import JSONResponse, read_body, request_id_of
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import Emit, Flush, JSONOutcome, Relay, StreamOutcome
from glasskey.gateway.requests import parse_json_object
from glasskey.gateway.streaming import RelayResponse
from glasskey.pricing.catalog import list_models
from glasskey.pricing.tokens import chat_input_tokens
from glasskey.routing.selection import check_model_allowed, routes_for_key_by_model

Handler = Callable[[Request], Awaitable[Response]]
EMBED_METHODS = ("embedContent", "batchEmbedContents")
# The inbound API each receipt records (streamed or not, one or a batch: the receipt says which).
GENERATE_ENDPOINT = "gemini.generate_content"
EMBED_ENDPOINT = "gemini.embed_content"


def authorization_of(request: Request) -> str | None:
    """The key as the lifecycle takes it: Google's header, then ``?key=``, then a bearer header."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    return f"Bearer {key}" if key else request.headers.get("authorization")


class GoogleClientRoute(Route):
    """A route that matches only callers sending ``x-goog-api-key``; any other falls through to the next.

    ``google-genai`` given a base URL lists models at ``GET /v1/models``, where OpenAI's SDK lists
    them too: the Google SDK always sends its key in this header, and OpenAI's never does.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not any(name == b"x-goog-api-key" for name, _ in scope["headers"]):
            return Match.NONE, {}
        return super().matches(scope)


def in_google_shape(handler: Handler) -> Handler:
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except GlasskeyError as error:
            return JSONResponse(
                google_error(error, request_id_of(request)), status_code=error.status_code, headers=error.headers
            )

    return answer


def translated_relay(relay: Relay) -> Relay:
    """The lifecycle's relay, each OpenAI event turned into Gemini's on its way out."""

    async def run(emit: Emit, flush: Flush) -> None:
        answer = StreamAnswer()

        async def emit_gemini(event: bytes) -> None:
            for translated in answer.feed(event):
                await emit(translated)

        await relay(emit_gemini, flush)

    return run


def gemini_routes(lifecycle: Lifecycle) -> list[Route]:
    services = lifecycle.services
    limit = services.settings.request_body_max_bytes

    async def generate(request: Request, model: str, method: str) -> Response:
        stream = method == "streamGenerateContent"
        if stream and request.query_params.get("alt") != "sse":
            raise unsupported("alt", "streams are served as server-sent events only: add `?alt=sse`")

        async def body() -> bytes:
            raw = parse_json_object(await read_body(request, limit))
            return orjson.dumps(chat_body(model, raw, stream=stream))

        outcome = await lifecycle.chat(
            request_id_of(request),
            authorization_of(request),
            body,
            endpoint=GENERATE_ENDPOINT,
            client_address=client_address_of(request),
        )
        if isinstance(outcome, StreamOutcome):
            return RelayResponse(translated_relay(outcome.relay), outcome.headers)  # type: ignore[return-value]
        return JSONResponse(generate_response(outcome.body), status_code=outcome.status_code, headers=outcome.headers)

    async def count_tokens(request: Request, model: str) -> Response:
        key = await lifecycle.key_of(authorization_of(request))
        raw = parse_json_object(await read_body(request, limit))
        found = fields(raw, "", frozenset({"contents", "generateContentRequest"}))
        inner = found.get("generateContentRequest", {"contents": found.get("contents")})
        if isinstance(inner, dict):
            inner = {name: value for name, value in inner.items() if name != "model"}
        chat = chat_body(model, inner, stream=False)
        await lifecycle.read(lambda conn: check_model_allowed(conn, key, model))
        # An estimate, as for quotes: no vendor's tokenizer is available to the gateway.
        return JSONResponse({"totalTokens": chat_input_tokens(chat).estimate})

    async def embed(request: Request, model: str, method: str) -> Response:
        batch = method == "batchEmbedContents"

        async def body() -> bytes:
            raw = parse_json_object(await read_body(request, limit))
            return orjson.dumps(embedding_body(model, raw, batch=batch))

        outcome: JSONOutcome = await lifecycle.embeddings(
            request_id_of(request),
            authorization_of(request),
            body,
            endpoint=EMBED_ENDPOINT,
            client_address=client_address_of(request),
        )
        return JSONResponse(embed_response(outcome.body, batch=batch), headers=outcome.headers)

    @in_google_shape
    async def model_method(request: Request) -> Response:
        model, _, method = request.path_params["target"].rpartition(":")
        if not model:
            raise NotFound(f"No such method: POST {request.url.path}")
        if method in ("generateContent", "streamGenerateContent"):
            return await generate(request, model, method)
        if method == "countTokens":
            return await count_tokens(request, model)
        if method in EMBED_METHODS:
            return await embed(request, model, method)
        raise NotFound(f"No such method `{method}` of the Gemini API here", param="method")

    async def key_models(request: Request) -> list[dict[str, Any]]:
        key = await lifecycle.key_of(authorization_of(request))

        def work(conn: Any) -> list[dict[str, Any]]:
            by_model = routes_for_key_by_model(conn, key, services.health)
            return [model_entry(m) for m in list_models(conn) if key.policy.allows(m.name) and by_model.get(m.name)]

        return await lifecycle.read(work)

    @in_google_shape
    async def models(request: Request) -> Response:
        return JSONResponse({"models": await key_models(request)})

    @in_google_shape
    async def model(request: Request) -> Response:
        name = f"models/{request.path_params['model']}"
        for entry in await key_models(request):
            if entry["name"] == name:
                return JSONResponse(entry)
        raise ModelError(f"The model `{request.path_params['model']}` is not served to this key", param="model")

    @in_google_shape
    async def unknown(request: Request) -> Response:
        # The path only: a query may hold the key.
        raise NotFound(f"No such endpoint of the Gemini API: {request.method} {request.url.path}")

    return [
        Route("/v1beta/models/{target}", model_method, methods=["POST"]),
        Route("/v1/models/{target}", model_method, methods=["POST"]),
        Route("/v1beta/models", models, methods=["GET"]),
        Route("/v1beta/models/{model}", model, methods=["GET"]),
        GoogleClientRoute("/v1/models", models, methods=["GET"]),
        GoogleClientRoute("/v1/models/{model}", model, methods=["GET"]),
        Route("/v1beta/{path:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
