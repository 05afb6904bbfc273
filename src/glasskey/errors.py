"""The one error tree of glasskey and its one mapping to HTTP and the OpenAI error shape.

Everything glasskey raises on purpose is a ``GlasskeyError`` carrying the ``source`` of the
brief, so a client can tell who caused it::

    GlasskeyError
    ├── ClientError          source=client   400  bad request body, oversized body (413)
    │   └── UpstreamAddressRefused (routing)     a route's base URL the address policy refuses
    ├── APIKeyError          source=key      401  missing, unknown, revoked or expired key
    ├── AdminAuthError       source=key      401  admin credential missing or wrong
    ├── ModelError           source=model    404 unknown model / 403 not allowed for this key
    ├── WalletError          source=wallet   402  insufficient balance in the key's wallet
    │   └── InsufficientFunds (ledger)           a debit below the account's floor
    ├── BudgetError          source=budget   429  a key budget or its rate limit
    ├── RouteError           source=route    503  no healthy route, or every route failed (502)
    │   └── CredentialUnopenable (routing)       a sealed credential the key cannot open
    ├── UpstreamError        source=upstream 502/504 (or the provider's own status) the provider failed
    │   └── ProviderError (providers)            what an adapter raises; the lifecycle turns it
    │       ├── StreamCut                        into an UpstreamError naming the provider
    │       └── UpstreamHTTPError                a non-2xx answer, read by its adapter
    ├── GatewayError         source=gateway  503  glasskey's own infrastructure failed (retry-after)
    │   └── SettingsError (settings)             start-up configuration is wrong
    ├── NotFound             source=client   404  unknown path or record
    └── TransferNotPending (ledger) source=client 409  a transfer already resolved

Broken invariants are not ``GlasskeyError``: they raise ``InvariantViolation`` and are
never turned into a client response by this module.

Retry advice is part of the mapping, decided from ``source`` and ``code`` alone: the official
OpenAI SDKs retry 408, 409, 429 and 5xx unless told ``x-should-retry: false``, so a refusal that
will never succeed by retrying (a spent budget, no enabled route, a revoked key, a model not
allowed, a bad body) says so, and a transient one (a rate limit, open breakers) carries
``retry-after``. Every code the gateway can return is listed in ``docs/errors.md``.
"""

from __future__ import annotations

from typing import Any, Literal

Source = Literal["client", "key", "model", "wallet", "budget", "route", "upstream", "gateway"]

# An error message is shown to the client and stored on the receipt: whatever built it, it is
# bounded and storable (PostgreSQL refuses NUL in text, and one refused row must never fail a
# request). Client values echoed in a message go through ``shown`` first.
MESSAGE_MAX_CHARS = 2000
SHOWN_MAX_CHARS = 80


def storable_text(text: str) -> str:
    """``text`` as every supported database stores it: NUL and unpaired surrogates replaced by U+FFFD.

    The one rule of what text glasskey can store, for a receipt's fields as for error messages."""
    text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def storable(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """A message: ``text`` cut to ``limit`` characters (marked with an ellipsis), storable, with NUL
    escaped where it stood (a message shows what it was given; a stored field only has to fit)."""
    text = storable_text(text.replace("\x00", "\\u0000"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: object, limit: int = SHOWN_MAX_CHARS) -> str:
    """A client's value as an error message may echo it: cut short, control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return escaped + (f"… ({len(text)} characters)" if len(text) > limit else "")


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
        message = storable(message)
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.param = storable(param, SHOWN_MAX_CHARS) if param is not None else None
        self.own_headers = headers or {}
        self.details = details or {}

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers of this error: the retry advice of its code, then its own."""
        return {**retry_advice(self.source, self.code), **self.own_headers}


class ClientError(GlasskeyError):
    source = "client"
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class APIKeyError(GlasskeyError):
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


class GatewayError(GlasskeyError):
    """glasskey's own infrastructure failed (its database, its Redis): never the key's or the wallet's doing."""

    source = "gateway"
    status_code = 503
    error_type = "api_error"
    code = "gateway_unavailable"

    def __init__(self, message: str, *, retry_after_seconds: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.own_headers = {"retry-after": str(retry_after_seconds), **self.own_headers}


class InvariantViolation(AssertionError):
    """A broken promise of the ledger or the receipts: a bug, never a client's fault."""


# Refusals that no retry can turn into a success. Sources ``client``, ``key``, ``model`` and
# ``wallet`` are never transient (a top-up or a policy change is a person's act, not a wait).
_NEVER_TRANSIENT_SOURCES = frozenset({"client", "key", "model", "wallet"})
_PERMANENT_CODES = frozenset({"total_budget_exceeded", "daily_budget_exceeded", "budget_exceeded", "no_route"})
# Every route's breaker is open: a breaker half-opens after its cooldown, so this passes. One
# second is the shortest honest wait from the code alone; the lifecycle may give a better one.
# A throttle's refusal is transient whatever its source: its own retry-after (kept) says when.
_TRANSIENT_RETRY_AFTER_SECONDS = {"no_healthy_route": "1", "rate_limit_exceeded": "1", "too_many_failed_sign_ins": "1"}


def retry_advice(source: str, code: str | None) -> dict[str, str]:
    """``x-should-retry: false`` for a permanent refusal, a default ``retry-after`` for a transient one."""
    if code in _TRANSIENT_RETRY_AFTER_SECONDS:
        return {"retry-after": _TRANSIENT_RETRY_AFTER_SECONDS[code]}
    if source in _NEVER_TRANSIENT_SOURCES or code in _PERMANENT_CODES:
        return {"x-should-retry": "false"}
    return {}


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
