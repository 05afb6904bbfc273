"""The ``/v1`` endpoints but the two hot ones: parse, call one domain function, render.

``POST /v1/chat/completions`` and ``POST /v1/embeddings`` have one door, ``gateway.asgi``; the
rendering they share with these endpoints (errors, outcomes, the body limit) lives here.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive

from glasskey.errors import ClientError, GlasskeyError, error_body
from glasskey.explanation import explain_key
from glasskey.gateway.body_timeout import read_within
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import JSONOutcome, StreamOutcome
from glasskey.gateway.requests import check_chat_body, parse_json_object
from glasskey.gateway.streaming import RelayResponse
from glasskey.people.holders import with_holders
from glasskey.pricing.catalog import list_models
from glasskey.pricing.quote import quote_request
from glasskey.receipts.records import get_receipt, list_receipts
from glasskey.routing.selection import routes_for_key_by_model

log = logging.getLogger("glasskey.gateway")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_id_of(request: Request) -> str:
    return str(request.scope["state"]["request_id"])


def error_response(error: GlasskeyError, request_id: str) -> JSONResponse:
    """The one rendering of a ``GlasskeyError``: the brief's error shape, its status and headers."""
    return JSONResponse(error_body(error, request_id), status_code=error.status_code, headers=error.headers)


def outcome_response(outcome: JSONOutcome | StreamOutcome) -> Response | RelayResponse:
    if isinstance(outcome, JSONOutcome):
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)
    return RelayResponse(outcome.relay, outcome.headers)


def _body_too_large(limit_bytes: int) -> ClientError:
    return ClientError(f"The request body is larger than {limit_bytes} bytes", code="body_too_large", status_code=413)


async def receive_body(receive: Receive, declared_length: str | None, limit_bytes: int) -> bytes:
    """The whole body, refusing (413) anything larger than the limit before reading it all.

    It reads the ASGI messages itself, as Starlette's ``Request.stream`` does, so the lean entry
    point and the Starlette routes share it; a disconnect is the client's ``client_disconnected``.
    """
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit_bytes:
        raise _body_too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit_bytes:
                raise _body_too_large(limit_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            # The client's doing, not the route's: its receipt says so, and it is no gateway error,
            # so it is logged at INFO without a traceback (a flood of them must not look like bugs).
            log.info("client_disconnected: the client left after %d of %s body bytes", size, declared_length or "?")
            raise ClientError(
                "The client closed the connection before its request body arrived",
                code="client_disconnected",
                status_code=499,
            )


async def read_body(request: Request, limit_bytes: int) -> bytes:
    return await receive_body(request.receive, request.headers.get("content-length"), limit_bytes)


def routes_v1(lifecycle: Lifecycle) -> list[Route]:
    services = lifecycle.services
    limit = services.settings.request_body_max_bytes

    async def models(request: Request) -> Response:
        key = await lifecycle.key_of(request.headers.get("authorization"))

        def work(conn: Any) -> list[dict[str, Any]]:
            data = []
            by_model = routes_for_key_by_model(conn, key, services.health)
            for model in list_models(conn):
                if not key.policy.allows(model.name):
                    continue
                routes = by_model.get(model.name)
                if not routes:
                    continue
                prices = routes[0].prices
                data.append(
                    {
                        "id": model.name,
                        "object": "model",
                        "created": 0,
                        "owned_by": model.vendor,
                        "glasskey": {
                            "kind": model.kind,
                            "settlement": key.policy.settlement,
                            "price_per_mtok_micros": prices.as_dict(),
                        },
                    }
                )
            return data

        return JSONResponse({"object": "list", "data": await lifecycle.read(work)})

    async def key(request: Request) -> Response:
        record = await lifecycle.key_of(request.headers.get("authorization"))
        body = await lifecycle.read(
            lambda conn: explain_key(conn, services.settings, record, services.clock(), services.health)
        )
        return JSONResponse(body)

    async def quote(request: Request) -> Response:
        # The key first, as on every endpoint: a keyless request is 401 whatever its body.
        record = await lifecycle.key_of(request.headers.get("authorization"))
        timeout = services.settings.body_read_timeout_seconds
        body = parse_json_object(await read_within(partial(read_body, request, limit), timeout))
        check_chat_body(body)
        result, _ = await lifecycle.read(
            lambda conn: quote_request(conn, record, body, services.clock(), board=services.health)
        )
        return JSONResponse(result.public())

    async def receipts(request: Request) -> Response:
        record = await lifecycle.key_of(request.headers.get("authorization"))
        params = request.query_params
        limit_text = params.get("limit", "20")
        if not limit_text.isdigit():
            raise ClientError("`limit` must be a positive integer", param="limit")

        def read_page(conn: Connection) -> tuple[list[dict[str, Any]], str | None]:
            page = list_receipts(
                conn,
                key_id=record.id,
                status=params.get("status"),
                model=params.get("model"),
                cursor=params.get("cursor"),
                limit=int(limit_text),
            )
            # Who holds the key and answers for it, resolved now (receipts never store it): one query a page.
            return with_holders(conn, page.data), page.next_cursor

        data, next_cursor = await lifecycle.read(read_page)
        return JSONResponse({"object": "list", "data": data, "next_cursor": next_cursor, "has_more": bool(next_cursor)})

    async def receipt(request: Request) -> Response:
        record = await lifecycle.key_of(request.headers.get("authorization"))
        request_id = request.path_params["request_id"]
        return JSONResponse(
            await lifecycle.read(lambda conn: with_holders(conn, [get_receipt(conn, request_id, key_id=record.id)])[0])
        )

    return [
        Route("/models", models, methods=["GET"]),
        Route("/key", key, methods=["GET"]),
        Route("/quote", quote, methods=["POST"]),
        Route("/receipts", receipts, methods=["GET"]),
        Route("/receipts/{request_id}", receipt, methods=["GET"]),
    ]
