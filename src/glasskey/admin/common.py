"""What the admin routers share: body types for money, the documented error shape, and views.

Money in a request body is ``StrictInt`` micros, so ``1.5``, ``1.0``, ``"1"`` and ``true`` are
all refused before any domain function sees them: money is never a float, not even at the edge.
A route's options are checked here too, so the CLI, which builds routes without HTTP, refuses the
same bad timeouts as the API.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from glasskey.ledger import Transfer
from glasskey.limits import BUDGET_MAX_MICROS, PRICE_MAX_MICROS_PER_MTOK
from glasskey.pricing.catalog import Model, Prices

# Every amount and count has a maximum (glasskey.limits, the table of docs/security.md); the
# domain functions check them too, so the CLI and the dashboard refuse the same values.
Micros = Annotated[
    StrictInt,
    Field(ge=0, le=BUDGET_MAX_MICROS, description="an amount in micro-dollars (1 USD = 1_000_000)"),
]
PriceMicros = Annotated[StrictInt, Field(ge=0, le=PRICE_MAX_MICROS_PER_MTOK)]
WalletKind = Literal["credit", "routed"]
Settlement = Literal["official", "routed"]
ForcedCircuit = Literal["open", "closed"]
# An hour bounds the longest stream a route may hold open; anything longer is a typo, not a plan.
TimeoutMs = Annotated[StrictInt, Field(gt=0, le=3_600_000)]


class Body(BaseModel):
    """A request body: unknown fields are refused, so a misspelt field never silently does nothing."""

    model_config = ConfigDict(extra="forbid")


class PricesBody(Body):
    """Unit prices in micros per one million tokens."""

    input: PriceMicros = Field(description="micros per 1M input tokens")
    output: PriceMicros = Field(description="micros per 1M output tokens")
    cached: PriceMicros = Field(description="micros per 1M cached input tokens")

    def prices(self) -> Prices:
        return Prices(
            input_per_mtok_micros=self.input,
            output_per_mtok_micros=self.output,
            cached_per_mtok_micros=self.cached,
        )


class RouteOptionsBody(BaseModel):
    """Provider-specific settings of a route; the per-route timeouts are checked, the rest kept as sent.

    A timeout left out falls back to the gateway's default for that phase of the request.
    """

    # Other keys belong to the provider (``headers``, ``anthropic_version``, the simulated
    # provider's ``fail_status`` ...), which knows them better than this edge does.
    model_config = ConfigDict(extra="allow")

    timeout_connect_ms: TimeoutMs | None = Field(default=None, description="ms to open a connection to the upstream")
    timeout_first_byte_ms: TimeoutMs | None = Field(default=None, description="ms from sending to the first byte")
    timeout_chunk_gap_ms: TimeoutMs | None = Field(default=None, description="ms of silence allowed between chunks")
    timeout_total_ms: TimeoutMs | None = Field(default=None, description="ms for the whole upstream call")

    @field_validator("timeout_connect_ms", "timeout_first_byte_ms", "timeout_chunk_gap_ms", "timeout_total_ms")
    @classmethod
    def _not_null(cls, value: int | None) -> int | None:
        # Left out means "the gateway's default"; a null would be stored and break the provider later.
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


def check_route_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as a route stores them; raises pydantic's ``ValidationError`` on a bad timeout."""
    return RouteOptionsBody.model_validate(options).options()


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None
    request_id: str
    source: Literal["client", "key", "model", "wallet", "budget", "route", "upstream"]


class ErrorResponse(BaseModel):
    """The brief's error shape: OpenAI's error object plus ``request_id`` and ``source``."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    400: "The request is malformed: a field is missing, unknown or of the wrong type (`source: client`, "
    "`param` names the field).",
    401: "The admin token is missing or wrong (`source: key`).",
    404: "The record does not exist (`source: client`), or the model is unknown (`source: model`).",
    409: "The request conflicts with what exists: a duplicate name, or an `Idempotency-Key` reused for a "
    "different top-up (`source: client`).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the given error statuses in the brief's shape."""
    return {status: {"model": ErrorResponse, "description": _ERROR_MEANINGS[status]} for status in statuses}


def list_body(data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"object": "list", "data": data, **extra}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def transfer_view(transfer: Transfer) -> dict[str, Any]:
    # ``replayed`` describes one answer to one request, not the transfer, so it is left out here.
    view: dict[str, Any] = {"object": "transfer"}
    for field in fields(transfer):
        if field.name != "replayed":
            value = getattr(transfer, field.name)
            view[field.name] = _iso(value) if isinstance(value, datetime) else value
    return view


def model_view(model: Model) -> dict[str, Any]:
    return {
        "object": "model",
        "name": model.name,
        "vendor": model.vendor,
        "kind": model.kind,
        "official_price_per_mtok_micros": model.official_prices.as_dict(),
        "max_output_tokens": model.max_output_tokens,
        "context_window_tokens": model.context_window_tokens,
        "price_date": model.price_date,
        "price_source": model.price_source,
        "price_overridden": model.price_overridden,
    }
