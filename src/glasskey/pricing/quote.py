"""Quotes: the price of one request before it runs, and whether it would be admitted.

A quote names the route that would serve the request, the unit prices it would pay, an
estimated and a maximum charge, the wallet that pays and its available balance. The maximum
charge is what the gateway holds on the wallet before calling upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.errors import ClientError
from glasskey.keys.budget import TOTAL, day_period, get_spend
from glasskey.keys.service import KeyRecord
from glasskey.money import charge_micros, format_micros
from glasskey.orgs.service import get_wallet
from glasskey.pricing.catalog import Model, Prices
from glasskey.pricing.metering import max_charge
from glasskey.pricing.tokens import (
    ESTIMATED_OUTPUT_TOKENS,
    chat_input_tokens,
    embedding_input_tokens,
    max_output_tokens,
)
from glasskey.routing.health import HealthBoard
from glasskey.routing.routes import Route
from glasskey.routing.selection import Selection, select_routes


@dataclass(frozen=True)
class Quote:
    model: str
    route: Route
    settlement: str
    wallet_kind: str
    wallet_account_id: str
    prices: Prices
    estimated_input_tokens: int
    max_input_tokens: int
    estimated_output_tokens: int
    max_output_tokens: int
    estimated_charge_micros: int
    max_charge_micros: int  # the hold: the most any route this request may use could charge
    route_max_charge_micros: int  # the most the route that would serve it now could charge
    backup_route_ids: tuple[str, ...]
    available_micros: int
    admitted: bool
    reason: str

    def public(self) -> dict[str, Any]:
        return {
            "object": "quote",
            "model": self.model,
            "route": {
                "id": self.route.id,
                "provider": self.route.provider,
                "upstream_model": self.route.upstream_model,
                "settlement": self.route.settlement,
            },
            "backup_routes": list(self.backup_route_ids),
            "settlement": self.settlement,
            "unit_prices_per_mtok_micros": self.prices.as_dict(),
            "estimated_input_tokens": self.estimated_input_tokens,
            "max_input_tokens": self.max_input_tokens,
            "estimated_output_tokens": self.estimated_output_tokens,
            "max_output_tokens": self.max_output_tokens,
            "estimated_charge_micros": self.estimated_charge_micros,
            "max_charge_micros": self.max_charge_micros,
            "route_max_charge_micros": self.route_max_charge_micros,
            "estimated_charge_usd": format_micros(self.estimated_charge_micros),
            "max_charge_usd": format_micros(self.max_charge_micros),
            "wallet": {"kind": self.wallet_kind, "available_micros": self.available_micros},
            "admitted": self.admitted,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Bounds:
    """What a request may read, write and cost: a pure function of the body and its routes."""

    estimated_input_tokens: int
    max_input_tokens: int
    estimated_output_tokens: int
    max_output_tokens: int
    estimated_charge_micros: int
    max_charge_micros: int  # over every route the request may use: the hold
    route_max_charge_micros: int  # on the route that would serve it first


def check_output_cap(body: dict[str, Any], model: Model) -> None:
    """A request may not ask for more output than its model can write (OpenAI answers 400 too).

    Refused rather than lowered: the body goes upstream as the client sent it, and a hold is
    only honest if the upstream is asked for no more than the hold covers.
    """
    for name in ("max_completion_tokens", "max_tokens"):
        requested = body.get(name)
        if isinstance(requested, int) and not isinstance(requested, bool) and requested > model.max_output_tokens:
            raise ClientError(
                f"`{name}` is {requested:,}; {model.name} writes at most {model.max_output_tokens:,} tokens",
                param=name,
            )


def request_bounds(selection: Selection, body: dict[str, Any], *, endpoint: str = "chat") -> Bounds:
    if endpoint == "embeddings":
        tokens = embedding_input_tokens(body)
        output_max = output_estimate = 0
    else:
        check_output_cap(body, selection.model)
        tokens = chat_input_tokens(body)
        output_max = max_output_tokens(body, selection.model.max_output_tokens)
        output_estimate = min(output_max, ESTIMATED_OUTPUT_TOKENS)
    prices = selection.primary.prices
    return Bounds(
        estimated_input_tokens=tokens.estimate,
        max_input_tokens=tokens.upper_bound,
        estimated_output_tokens=output_estimate,
        max_output_tokens=output_max,
        estimated_charge_micros=charge_micros(
            (tokens.estimate, prices.input_per_mtok_micros), (output_estimate, prices.output_per_mtok_micros)
        ),
        max_charge_micros=max(max_charge(tokens.upper_bound, output_max, r.prices) for r in selection.usable),
        route_max_charge_micros=max_charge(tokens.upper_bound, output_max, prices),
    )


def quote_request(
    conn: Connection,
    key: KeyRecord,
    body: dict[str, Any],
    now: datetime,
    *,
    endpoint: str = "chat",
    board: HealthBoard | None = None,
) -> tuple[Quote, Selection]:
    """Price ``body`` for ``key`` as routing stands now; raises model or route errors, moves no money."""
    kind = "embedding" if endpoint == "embeddings" else "chat"
    selection = select_routes(conn, key, str(body.get("model")), kind=kind, board=board)
    bounds = request_bounds(selection, body, endpoint=endpoint)
    route = selection.primary
    prices = route.prices
    wallet = get_wallet(conn, key.org_id, key.policy.wallet_kind)
    maximum = bounds.max_charge_micros
    admitted, reason = True, "the wallet and the key's budgets cover the maximum charge"
    if wallet.balance.available_micros - maximum < (wallet.balance.floor_micros or 0):
        admitted = False
        reason = (
            f"the {wallet.kind} wallet has ${format_micros(wallet.balance.available_micros)} available, "
            f"less than the maximum charge of ${format_micros(maximum)}"
        )
    else:
        for period, limit in (
            (TOTAL, key.policy.budget_total_micros),
            (day_period(now), key.policy.budget_daily_micros),
        ):
            spend = get_spend(conn, key.id, period)
            if limit is not None and spend.spent_micros + spend.held_micros + maximum > limit:
                admitted = False
                label = "total" if period == TOTAL else "daily"
                reason = f"the maximum charge would pass the key's {label} budget of ${format_micros(limit)}"
                break
    quote = Quote(
        model=selection.model.name,
        route=route,
        settlement=key.policy.settlement,
        wallet_kind=wallet.kind,
        wallet_account_id=wallet.account_id,
        prices=prices,
        estimated_input_tokens=bounds.estimated_input_tokens,
        max_input_tokens=bounds.max_input_tokens,
        estimated_output_tokens=bounds.estimated_output_tokens,
        max_output_tokens=bounds.max_output_tokens,
        estimated_charge_micros=bounds.estimated_charge_micros,
        max_charge_micros=maximum,
        route_max_charge_micros=bounds.route_max_charge_micros,
        backup_route_ids=tuple(r.id for r in selection.usable[1:]),
        available_micros=wallet.balance.available_micros,
        admitted=admitted,
        reason=reason,
    )
    return quote, selection
