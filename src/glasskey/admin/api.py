"""The admin API application: authentication, role checks, request ids, and the one error rendering.

``build_admin_app`` returns a FastAPI application meant to be mounted at ``/admin/api``; its
routes are declared relative to that mount and its OpenAPI document is ``/openapi.json`` below
it. The endpoints themselves live in one router per domain (orgs, keys, routes, health, receipts) and
only parse, call a domain function and render.

Every path needs the admin token or a person's access token (``admin.authentication``) except the
OpenAPI document, its docs page, sign-in and accepting an invitation; what each role may call is
the one table of ``admin.access``, checked by a dependency before every endpoint runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from glasskey.admin.access import error_responses, guard
from glasskey.admin.alerts import alerts_router
from glasskey.admin.audit_log import audit_router
from glasskey.admin.authentication import AdminAuthentication
from glasskey.admin.change_log import ChangeLog
from glasskey.admin.docs import add_docs_page
from glasskey.admin.health import health_router
from glasskey.admin.internal_errors import InternalErrors
from glasskey.admin.invitations import invitations_router
from glasskey.admin.keys import keys_router
from glasskey.admin.members import members_router
from glasskey.admin.my_keys import my_keys_router
from glasskey.admin.orgs import orgs_router
from glasskey.admin.people import people_router
from glasskey.admin.receipts import receipts_router
from glasskey.admin.research import research_router
from glasskey.admin.routes import routes_router
from glasskey.errors import AdminAuthError, ClientError, GlasskeyError, NotFound, error_body
from glasskey.request_ids import RequestIdMiddleware
from glasskey.services import Services
from glasskey.settings import secret_matches

# Where FastAPI puts a parameter in a validation error's location; the rest of it names the field.
_PARAM_PLACES = ("body", "query", "path", "header", "cookie")

SECURITY_SCHEME = "adminToken"


def admin_refusal(admin_token: SecretStr, authorization: str | None) -> AdminAuthError | None:
    """Why ``authorization`` does not carry the admin token, or None when it does."""
    challenge = {"WWW-Authenticate": "Bearer"}
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return AdminAuthError(
            "Missing admin token: send it as `Authorization: Bearer <admin token>`",
            code="missing_admin_token",
            headers=challenge,
        )
    if not secret_matches(admin_token, token.strip()):
        return AdminAuthError("Incorrect admin token", headers=challenge)
    return None


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
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404:
        return NotFound("No admin API endpoint at this path", headers=headers)
    return ClientError(str(exc.detail), code=f"http_{exc.status_code}", status_code=exc.status_code, headers=headers)


def _documented(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document, told about the admin token and without FastAPI's own 422 error.

    The token is checked by ``AdminAuthMiddleware``, which FastAPI cannot see; and validation errors
    answer 400 in the brief's shape, not FastAPI's 422.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the gateway's admin token, or a person's access token `gkp-…`",
                }
            }
            schema["security"] = [{SECURITY_SCHEME: []}]
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def build_admin_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="glasskey admin API",
        version="1",
        description=(
            "Orgs, wallets and top-ups, the ledger, keys, routes and their health, prices and receipts of a "
            "glasskey gateway. "
            "Every endpoint needs `Authorization: Bearer <admin token>`, or a person's access token `gkp-…` on the "
            "endpoints their role allows (docs/roles.md). Money is integer micro-dollars "
            "(`*_micros`, 1 USD = 1_000_000), never a float; prices are per 1M tokens. Errors are "
            "`{error: {message, type, code, param, request_id, source}}`; every response has `x-request-id`."
        ),
        openapi_url="/openapi.json",
        docs_url=None,  # add_docs_page serves it, with Swagger UI from the package (no CDN)
        redoc_url=None,
        responses=error_responses(400, 401, 403, 429),
        # Every endpoint's role rule (admin.access.ADMIN_ACCESS) is checked before it runs.
        dependencies=[Depends(guard(services))],
    )
    app.state.services = services
    throttle = services.signin_throttle
    # The last middleware added runs first: a refusal already has its request id.
    app.add_middleware(ChangeLog, services=services)
    app.add_middleware(AdminAuthentication, services=services, throttle=throttle)
    # Any exception no handler knew, also one in the two middlewares above: JSON, never plain text.
    app.add_middleware(InternalErrors)
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

    # Values are bounded at the edge (glasskey.limits); these two catch what slips past a bound, such
    # as a date at the end of the calendar shifted to UTC, so even then the answer is JSON 400.
    @app.exception_handler(OverflowError)
    async def on_overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return render_error(
            request, ClientError("a value is out of the range glasskey can store", code="value_too_large")
        )

    @app.exception_handler(DataError)
    async def on_data_error(request: Request, exc: DataError) -> JSONResponse:
        return render_error(request, ClientError("a value cannot be stored by the database"))

    for router in (
        orgs_router(services),
        keys_router(services),
        routes_router(services),
        health_router(services),
        receipts_router(services),
        research_router(services),
        people_router(services, throttle),
        members_router(services),
        invitations_router(services, throttle),
        my_keys_router(services),
        audit_router(services),
        alerts_router(services),
    ):
        app.include_router(router)
    app.openapi = _documented(app)  # type: ignore[method-assign]
    add_docs_page(app)
    return app
