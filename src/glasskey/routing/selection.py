"""Choosing the routes a key may use for a model, in the order they would be tried.

* ``official`` keys use official routes only, paid from the ``credit`` wallet.
* ``routed`` keys use routed routes only, paid from the ``routed`` wallet. With lower-cost
  routes on, the cheapest route comes first (price = input + output per 1M tokens); otherwise
  the operator's priority order, higher weight first among equal priorities.
* A backup never crosses settlement: a routed key never falls back to an official route, so
  a key's wallet and price basis never change under it. The explanation says so in words.
* Routes whose breaker is open go last (the lifecycle skips them while they stay open).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from glasskey.errors import ModelError, RouteError, shown
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord
from glasskey.pricing.catalog import Model, get_model
from glasskey.routing.health import OPEN, HealthBoard
from glasskey.routing.routes import Route, candidates, candidates_by_model

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Selection:
    model: Model
    routes: list[Route]  # every candidate, in order
    usable: list[Route]  # those this key's policy lets one request try (backups or not)

    @property
    def primary(self) -> Route:
        return self.usable[0]


def order_routes(routes: list[Route], policy: KeyPolicy, board: HealthBoard | None = None) -> list[Route]:
    def price(route: Route) -> int:
        return route.prices.input_per_mtok_micros + route.prices.output_per_mtok_micros

    if policy.settlement == "routed" and policy.lower_cost_routes:
        ordered = sorted(routes, key=lambda r: (price(r), r.priority, -r.weight, r.id))
    else:
        ordered = sorted(routes, key=lambda r: (r.priority, -r.weight, price(r), r.id))
    if board is None:
        return ordered
    for route in ordered:
        board.sync_forced(route.id, route.forced_circuit)
    # sorted() is stable: open breakers move to the back and keep their relative order.
    return sorted(ordered, key=lambda r: board.state(r.id) == OPEN)


def check_allowed(key: KeyRecord, model_name: str) -> None:
    """403 when the key's policy does not name the model; ask it once the model is known to exist,
    so an unknown model is a 404 for every key (an allow-list says nothing about the catalog)."""
    if not key.policy.allows(model_name):
        raise ModelError(
            f"The model `{shown(model_name)}` is not allowed for key {key.prefix}; "
            f"allowed: {', '.join(key.policy.allowed_models or ())}",
            code="model_not_allowed",
            param="model",
            status_code=403,
        )


def check_model_allowed(conn: Connection, key: KeyRecord, model_name: str) -> Model:
    """The catalog model, if this key may call it (404 unknown, then 403 not allowed)."""
    model = get_model(conn, model_name)
    check_allowed(key, model_name)
    return model


def routes_for_key_by_model(
    conn: Connection, key: KeyRecord, board: HealthBoard | None = None
) -> dict[str, list[Route]]:
    """Every model's routes for this key, in the order they would be tried, from one query (a model
    without a route is absent): listings of all models ask once, not once per model."""
    found = candidates_by_model(conn, key.policy.settlement)
    return {model: order_routes(model_routes, key.policy, board) for model, model_routes in found.items()}


def selection_from(
    model: Model, routes: list[Route], key: KeyRecord, *, kind: str = "chat", board: HealthBoard | None = None
) -> Selection:
    """Order ``routes`` (the model's candidates for the key's settlement) and pick the usable ones."""
    check_allowed(key, model.name)
    if model.kind != kind:
        raise ModelError(
            f"The model `{model.name}` is a {model.kind} model and cannot serve this endpoint",
            code="wrong_model_kind",
            param="model",
            status_code=400,
        )
    found = order_routes(routes, key.policy, board)
    if not found:
        raise RouteError(
            f"No enabled {key.policy.settlement} route serves `{model.name}`; an operator must add one",
            code="no_route",
        )
    usable = found[:MAX_ATTEMPTS] if key.policy.backup_routes else found[:1]
    return Selection(model=model, routes=found, usable=usable)


def select_routes(
    conn: Connection, key: KeyRecord, model_name: str, *, kind: str = "chat", board: HealthBoard | None = None
) -> Selection:
    model = check_model_allowed(conn, key, model_name)
    routes = candidates(conn, model_name, key.policy.settlement)
    return selection_from(model, routes, key, kind=kind, board=board)
