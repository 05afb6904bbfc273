"""Routes and models: the health board, and the catalog with official and routed prices.

Health lives in this process's memory (``services.health``), as the admin API's board does; a
breaker forced on the route is synced into it before it is read, so a force set elsewhere shows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as PageRoute

from glasskey.dashboard.queries import recent_route_errors
from glasskey.dashboard.web import Dashboard
from glasskey.pricing.catalog import list_models
from glasskey.routing.routes import Route, list_routes


def routes(dash: Dashboard) -> list[PageRoute]:
    services = dash.services
    board = services.health

    def health(route: Route) -> dict[str, Any]:
        board.sync_forced(route.id, route.forced_circuit)
        return board.snapshot(route.id)

    async def routes_page(request: Request) -> Response:
        def work(conn: Connection) -> dict[str, Any]:
            models = {model.name: model for model in list_models(conn)}
            found = list_routes(conn)
            return {"models": models, "routes": found, "errors": recent_route_errors(conn)}

        context = await dash.read(work)
        rows = [
            {"route": route, "official": context["models"][route.model].official_prices, "health": health(route)}
            for route in context["routes"]
        ]
        return dash.render(
            request,
            "routes.html",
            {"nav": "routes", "rows": rows, "errors": context["errors"], "window_seconds": board.policy.window_seconds},
        )

    async def models_page(request: Request) -> Response:
        def work(conn: Connection) -> dict[str, Any]:
            by_model: dict[str, list[Route]] = {}
            for route in list_routes(conn):
                by_model.setdefault(route.model, []).append(route)
            return {"models": list_models(conn), "routes": by_model}

        context = await dash.read(work)
        return dash.render(request, "models.html", {"nav": "models", **context})

    return [
        PageRoute("/routes", routes_page, methods=["GET"]),
        PageRoute("/models", models_page, methods=["GET"]),
    ]
