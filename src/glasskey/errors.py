"""The one error tree of glasskey and its one mapping to HTTP and the OpenAI error shape.

Every expected failure is a ``GlasskeyError`` carrying the ``source`` of the brief, so a
client can tell who caused it::

    GlasskeyError
    ├── ClientError          source=client   400  bad request body, oversized body (413)
    ├── KeyError_            source=key      401  missing, unknown, revoked or expired key
    ├── ModelError           source=model    404 unknown model / 403 not allowed for this key
    ├── WalletError          source=wallet   402  insufficient balance in the key's wallet
    ├── BudgetError          source=budget   429  a key budget or its rate limit
    ├── RouteError           source=route    503  no healthy route, or every route failed (502)
    ├── UpstreamError        source=upstream 502/504 (or the provider's own status) the provider failed
    └── NotFound             source=client   404  unknown path or record
    AdminAuthError                           401  admin credential missing or wrong

Broken invariants are not ``GlasskeyError``: they raise ``InvariantViolation`` and are
never turned into a client response by this module.
"""

from __future__ import annotations

from typing import Any, Literal

Source = Literal["client", "key", "model", "wallet", "budget", "route", "upstream"]


class GlasskeyError(Exception):
    """An expected failure, safe to show to the caller (it never carries a secret)."""

    source: Source = "client"
    status_code: int = 400
    error_type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.param = param
        self.headers = headers or {}
        self.details = details or {}


class ClientError(GlasskeyError):
    source = "client"
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class KeyError_(GlasskeyError):
    source = "key"
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelError(GlasskeyError):
    source = "model"
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class WalletError(GlasskeyError):
    source = "wallet"
    status_code = 402
    error_type = "insufficient_quota"
    code = "insufficient_balance"


class BudgetError(GlasskeyError):
    source = "budget"
    status_code = 429
    error_type = "rate_limit_error"
    code = "budget_exceeded"


class RouteError(GlasskeyError):
    source = "route"
    status_code = 503
    error_type = "api_error"
    code = "no_route"


class UpstreamError(GlasskeyError):
    source = "upstream"
    status_code = 502
    error_type = "api_error"
    code = "upstream_error"


class NotFound(GlasskeyError):
    source = "client"
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class AdminAuthError(GlasskeyError):
    source = "key"
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_admin_token"


class InvariantViolation(AssertionError):
    """A broken promise of the ledger or the receipts: a bug, never a client's fault."""


def error_body(error: GlasskeyError, request_id: str) -> dict[str, Any]:
    """The OpenAI error object plus ``request_id`` and ``source`` (the brief's shape)."""
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.error_type,
        "code": error.code,
        "param": error.param,
        "request_id": request_id,
        "source": error.source,
    }
    body.update(error.details)
    return {"error": body}
