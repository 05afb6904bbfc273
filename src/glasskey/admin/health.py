"""Admin endpoints for route health: the board, and an operator's hand on a route's breaker.

The statistics and breaker states live in the memory of the process that served the traffic
(``services.health``), so the board answers for this process since it started. A forced
circuit is different: it is stored on the route, so every process honours it; the board is
synced with the stored force before it is read, so a force set elsewhere shows here too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from glasskey.admin.access import actor_of
from glasskey.admin.common import Body, ForcedCircuit, error_responses, list_body
from glasskey.people import changes as audited
from glasskey.pricing.catalog import Model, get_model
from glasskey.routing.routes import Route, list_routes
from glasskey.services import Services


class BreakerBody(Body):
    state: ForcedCircuit | None = Field(
        description="`open`: never try the route; `closed`: always try it; null: let the breaker decide again"
    )


def route_health_view(route: Route, model: Model, health: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "route_health",
        "route_id": route.id,
        "model": route.model,
        "provider": route.provider,
        "upstream_model": route.upstream_model,
        "settlement": route.settlement,
        "enabled": route.enabled,
        "priority": route.priority,
        "weight": route.weight,
        "forced_circuit": route.forced_circuit,
        "price_per_mtok_micros": route.prices.as_dict(),
        "official_price_per_mtok_micros": model.official_prices.as_dict(),
        "health": health,
    }


def health_router(services: Services) -> APIRouter:
    router = APIRouter()
    board = services.health

    def snapshot(route: Route) -> dict[str, Any]:
        board.sync_forced(route.id, route.forced_circuit)
        return board.snapshot(route.id)

    @router.get(
        "/health",
        tags=["routes"],
        summary="Route health board",
        description=(
            "Every route (or one model's), enabled or not, with its settlement, forced circuit, price per 1M "
            "tokens next to the model's official price, and its health as this gateway process saw it over "
            "the last `window_seconds`: circuit (`closed`, `open`, `half_open`), requests, success rate, "
            "errors by class, consecutive failures, latency and time-to-first-token percentiles (ms), and "
            "when an open breaker half-opens. Health is kept in memory per process and starts empty at "
            "start-up; with Redis, breakers are shared by every process (docs/deployment.md)."
        ),
    )
    def read_health(
        model: Annotated[str | None, Query(description="only routes of this model")] = None,
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            found = list_routes(conn, model)
            models: dict[str, Model] = {}
            for route in found:
                if route.model not in models:
                    models[route.model] = get_model(conn, route.model)
        data = [route_health_view(route, models[route.model], snapshot(route)) for route in found]
        return list_body(data, window_seconds=board.policy.window_seconds)

    @router.post(
        "/routes/{route_id}/breaker",
        tags=["routes"],
        summary="Force a route's breaker",
        description=(
            "Forces the route's circuit `open` (the route is skipped) or `closed` (the route is tried whatever "
            "its failures), or with `null` lifts the force and lets the breaker decide again, starting closed. "
            "The same as `PATCH /routes/{route_id}` with `forced_circuit`; the force is stored on the route, so "
            "every gateway process honours it. Answers the route with its health snapshot."
        ),
        responses=error_responses(404),
    )
    def force_breaker(route_id: str, body: BreakerBody, request: Request) -> dict[str, Any]:
        with services.db.write() as conn:
            route = audited.update_route(conn, actor_of(request), services.clock(), route_id, forced_circuit=body.state)
        board.force(route.id, route.forced_circuit)  # written here: authoritative, applied at once
        return {**route.public(), "health": snapshot(route)}

    return router
