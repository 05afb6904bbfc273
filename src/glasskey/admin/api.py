"""The admin API application: admin-token authentication, request ids, and the one error rendering.

``build_admin_app`` returns a FastAPI application meant to be mounted at ``/admin/api``; its
routes are declared relative to that mount and its OpenAPI document is ``/openapi.json`` below
it. The endpoints themselves live in one router per domain (orgs, keys, routes, receipts) and
only parse, call a domain function and render.

The OpenAPI document and the docs page answer without the admin token: they describe the API,
hold no data, and a browser cannot attach a bearer token to the docs page's own fetch.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glasskey.admin.common import error_responses
from glasskey.admin.keys import keys_router
from glasskey.admin.orgs import orgs_router
from glasskey.admin.receipts import receipts_router
from glasskey.admin.routes import routes_router
from glasskey.errors import AdminAuthError, ClientError, GlasskeyError, NotFound, error_body
from glasskey.ids import new_id
from glasskey.services import Services

REQUEST_ID_HEADER = "x-request-id"
# Where FastAPI puts a parameter in a validation error's location; the rest of it names the field.
_PARAM_PLACES = ("body", "query", "path", "header", "cookie")

# A stateless description of the scheme (it reads one header); it also documents it in OpenAPI.
admin_bearer = HTTPBearer(auto_error=False, scheme_name="admin token", description="the gateway's admin token")


class RequestIdMiddleware:
    """Gives every request an id (unless the enclosing app already did) and every response its header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or new_id("req")
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(request: Request) -> str:
    return str(request.scope["state"]["request_id"])


def render_error(request: Request, error: GlasskeyError) -> JSONResponse:
    return JSONResponse(error_body(error, request_id_of(request)), status_code=error.status_code, headers=error.headers)


def _param_of(location: tuple[int | str, ...]) -> str | None:
    """``("body", "prices", "input") -> "prices.input"``; ``("query", "ids", 0) -> "ids[0]"``."""
    parts = location[1:] if location and location[0] in _PARAM_PLACES else location
    param = ""
    for part in parts:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    return param or None


def validation_error(exc: RequestValidationError) -> ClientError:
    """The first problem of a rejected request as a ``ClientError``; the values sent are never echoed."""
    problems = list(exc.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return ClientError("The request body is not valid JSON", code="invalid_json")
    descriptions = []
    for problem in problems[:5]:
        param = _param_of(tuple(problem.get("loc", ())))
        descriptions.append(f"`{param}`: {problem['msg']}" if param else str(problem["msg"]))
    first = _param_of(tuple(problems[0].get("loc", ()))) if problems else None
    return ClientError("Invalid request: " + "; ".join(descriptions), param=first)


def http_error(exc: HTTPException) -> GlasskeyError:
    """Starlette's own refusals (no such path, wrong method) in the brief's shape."""
    if exc.status_code == 404:
        return NotFound("No admin API endpoint at this path", headers=exc.headers)
    return ClientError(str(exc.detail), code="invalid_request", status_code=exc.status_code, headers=exc.headers)


def admin_guard(services: Services) -> Callable[..., None]:
    """A dependency that refuses any request without the admin token, compared in constant time."""
    expected = services.settings.admin_token.get_secret_value().encode()
    challenge = {"WWW-Authenticate": "Bearer"}

    def require_admin(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]) -> None:
        if credentials is None:
            raise AdminAuthError(
                "Missing admin token: send it as `Authorization: Bearer <admin token>`",
                code="missing_admin_token",
                headers=challenge,
            )
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise AdminAuthError("Incorrect admin token", headers=challenge)

    return require_admin


def _without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents its own 422 validation error; this API answers 400 in the brief's shape."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def build_admin_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="glasskey admin API",
        version="1",
        description=(
            "Orgs, wallets and top-ups, the ledger, keys, routes, prices and receipts of a glasskey gateway. "
            "Every endpoint needs `Authorization: Bearer <admin token>`. Money is integer micro-dollars "
            "(`*_micros`, 1 USD = 1_000_000), never a float; prices are per 1M tokens. Errors are "
            "`{error: {message, type, code, param, request_id, source}}`; every response has `x-request-id`."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(admin_guard(services))],
        responses=error_responses(400, 401),
    )
    app.state.services = services
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(GlasskeyError)
    async def on_glasskey_error(request: Request, exc: GlasskeyError) -> JSONResponse:
        return render_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return render_error(request, validation_error(exc))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return render_error(request, http_error(exc))

    for router in (
        orgs_router(services),
        keys_router(services),
        routes_router(services),
        receipts_router(services),
    ):
        app.include_router(router)
    app.openapi = _without_422(app)  # type: ignore[method-assign]
    return app
