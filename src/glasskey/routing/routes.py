"""Routes: provider + base URL + upstream model + credential + settlement + prices + priority.

A route's price to the user is what receipts charge; its cost to the operator is what the
operator pays upstream (their difference is the margin). The credential never leaves the
server: ``Route.credential`` is the stored, sealed form (``routing.credentials``), opened only by
the provider wrapper when a request runs, and ``Route.public()`` shows only its mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import ClientError, NotFound
from glasskey.ids import new_id
from glasskey.limits import PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX, check_option_numbers, check_range
from glasskey.pricing.catalog import Prices, check_prices, get_model
from glasskey.providers.base import RouteTarget
from glasskey.providers.options import check_options_for
from glasskey.routing.credentials import CredentialVault, shown_credential
from glasskey.routing.upstream_address import check_upstream_url
from glasskey.store.tables import routes

SETTLEMENTS = ("official", "routed")
PROVIDERS = ("openai", "anthropic", "gemini", "openai_compatible", "simulated")
TIMEOUT_OPTIONS = ("timeout_connect_ms", "timeout_first_byte_ms", "timeout_chunk_gap_ms", "timeout_total_ms")
TIMEOUT_MAX_MS = 3_600_000


@dataclass(frozen=True)
class Route:
    id: str
    model: str
    provider: str
    base_url: str
    upstream_model: str
    settlement: str
    prices: Prices
    costs: Prices
    priority: int = 100
    weight: int = 1
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    credential: str | None = field(default=None, repr=False)
    forced_circuit: str | None = None

    def target(self) -> RouteTarget:
        return RouteTarget(
            route_id=self.id,
            provider=self.provider,
            base_url=self.base_url,
            upstream_model=self.upstream_model,
            credential=self.credential,
            options=dict(self.options),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "provider": self.provider,
            "base_url": self.base_url,
            "upstream_model": self.upstream_model,
            "settlement": self.settlement,
            "price_per_mtok_micros": self.prices.as_dict(),
            "cost_per_mtok_micros": self.costs.as_dict(),
            "priority": self.priority,
            "weight": self.weight,
            "enabled": self.enabled,
            "options": self.options,
            "forced_circuit": self.forced_circuit,
            "credential": shown_credential(self.credential),
        }


def _route(row: Any) -> Route:
    return Route(
        id=row.id,
        model=row.model,
        provider=row.provider,
        base_url=row.base_url,
        upstream_model=row.upstream_model,
        settlement=row.settlement,
        prices=Prices(
            row.input_price_per_mtok_micros,
            row.output_price_per_mtok_micros,
            row.cached_price_per_mtok_micros,
        ),
        costs=Prices(row.input_cost_per_mtok_micros, row.output_cost_per_mtok_micros, row.cached_cost_per_mtok_micros),
        priority=row.priority,
        weight=row.weight,
        enabled=row.enabled,
        options=dict(row.options or {}),
        credential=row.credential,
        forced_circuit=row.forced_circuit,
    )


def _validate(route: Route) -> None:
    if route.settlement not in SETTLEMENTS:
        raise ClientError(f"settlement must be one of {', '.join(SETTLEMENTS)}", param="settlement")
    if route.provider not in PROVIDERS:
        raise ClientError(f"provider must be one of {', '.join(PROVIDERS)}", param="provider")
    check_options_for(route.provider, route.options)
    if route.provider not in ("simulated",) and not route.base_url.startswith(("http://", "https://")):
        raise ClientError("base_url must be an http(s) URL", param="base_url")
    for prices in (route.prices, route.costs):
        if min(prices.input_per_mtok_micros, prices.output_per_mtok_micros, prices.cached_per_mtok_micros) < 0:
            raise ClientError("prices are never negative", param="price")
    check_prices(route.prices, "price_per_mtok_micros")
    check_prices(route.costs, "cost_per_mtok_micros")
    check_range("priority", route.priority, PRIORITY_MAX, PRIORITY_MIN)
    check_range("weight", route.weight, WEIGHT_MAX, 1)
    check_option_numbers(route.options)
    if route.forced_circuit not in (None, "open", "closed"):
        raise ClientError("forced_circuit must be `open`, `closed` or null", param="forced_circuit")
    for name in TIMEOUT_OPTIONS:
        value = route.options.get(name)
        if name in route.options and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= TIMEOUT_MAX_MS
        ):
            raise ClientError(f"{name} must be whole milliseconds from 1 to {TIMEOUT_MAX_MS}", param=f"options.{name}")


def _values(route: Route) -> dict[str, Any]:
    return {
        "model": route.model,
        "provider": route.provider,
        "base_url": route.base_url,
        "upstream_model": route.upstream_model,
        "credential": route.credential,
        "settlement": route.settlement,
        "input_price_per_mtok_micros": route.prices.input_per_mtok_micros,
        "output_price_per_mtok_micros": route.prices.output_per_mtok_micros,
        "cached_price_per_mtok_micros": route.prices.cached_per_mtok_micros,
        "input_cost_per_mtok_micros": route.costs.input_per_mtok_micros,
        "output_cost_per_mtok_micros": route.costs.output_per_mtok_micros,
        "cached_cost_per_mtok_micros": route.costs.cached_per_mtok_micros,
        "priority": route.priority,
        "weight": route.weight,
        "enabled": route.enabled,
        "options": route.options,
        "forced_circuit": route.forced_circuit,
    }


def for_storing(route: Route, vault: CredentialVault, *, allow_private: bool) -> Route:
    """A route an operator sent (admin API, CLI), made ready to store: its base URL checked against
    the upstream address policy, its plaintext credential sealed."""
    return replace(
        route,
        **changes_for_storing(
            {"base_url": route.base_url, "credential": route.credential}, vault, allow_private=allow_private
        ),
    )


def changes_for_storing(changes: dict[str, Any], vault: CredentialVault, *, allow_private: bool) -> dict[str, Any]:
    """``update_route`` changes an operator sent, checked and sealed as ``for_storing`` does."""
    checked = dict(changes)
    if checked.get("base_url"):  # an empty one is refused by ``_validate`` unless the route is simulated
        check_upstream_url(checked["base_url"], allow_private)
    if checked.get("credential") is not None:
        checked["credential"] = vault.seal(checked["credential"])
    return checked


def create_route(conn: Connection, route: Route, now: datetime) -> Route:
    """Store a new route (its ``id`` is assigned here when empty)."""
    get_model(conn, route.model)
    if not route.id:
        route = replace(route, id=new_id("rt"))
    _validate(route)
    conn.execute(routes.insert().values(id=route.id, created_at=now, **_values(route)))
    return route


def update_route(conn: Connection, route_id: str, **changes: Any) -> Route:
    current = get_route(conn, route_id)
    updated = replace(current, **changes)
    _validate(updated)
    conn.execute(update(routes).where(routes.c.id == route_id).values(_values(updated)))
    return updated


def get_route(conn: Connection, route_id: str) -> Route:
    row = conn.execute(select(routes).where(routes.c.id == route_id)).first()
    if row is None:
        raise NotFound(f"route {route_id} does not exist")
    return _route(row)


def list_routes(conn: Connection, model: str | None = None) -> list[Route]:
    query = select(routes)
    if model is not None:
        query = query.where(routes.c.model == model)
    return [_route(row) for row in conn.execute(query.order_by(routes.c.model, routes.c.priority, routes.c.id))]


def candidates(conn: Connection, model: str, settlement: str) -> list[Route]:
    """Enabled routes of ``model`` with this settlement, in the order they would be tried."""
    rows = conn.execute(
        select(routes).where(routes.c.model == model, routes.c.settlement == settlement, routes.c.enabled.is_(True))
    )
    return sorted((_route(row) for row in rows), key=_tried_order)


def candidates_by_model(conn: Connection, settlement: str) -> dict[str, list[Route]]:
    """Every model's ``candidates`` for this settlement, in one query (listings of all models)."""
    found: dict[str, list[Route]] = {}
    for row in conn.execute(select(routes).where(routes.c.settlement == settlement, routes.c.enabled.is_(True))):
        route = _route(row)
        found.setdefault(route.model, []).append(route)
    for model_routes in found.values():
        model_routes.sort(key=_tried_order)
    return found


def _tried_order(route: Route) -> tuple[int, int, int, str]:
    return (route.priority, -route.weight, route.prices.output_per_mtok_micros, route.id)
