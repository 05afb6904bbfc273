"""Admin endpoints for routes and the model catalog's official prices.

A route's credential goes in (on create or change) and never comes out: every route in a
response is rendered by ``Route.public()``, which masks it. A route's forced circuit is stored
with it, so every process honours it; this process's health board takes it at once.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, StrictBool, StrictInt, field_validator

from glasskey.admin.access import actor_of
from glasskey.admin.common import (
    Body,
    ForcedCircuit,
    PricesBody,
    RouteOptionsBody,
    Settlement,
    error_responses,
    list_body,
    model_view,
)
from glasskey.limits import PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX
from glasskey.people import changes as audited
from glasskey.pricing.catalog import get_model, list_models
from glasskey.routing.routes import (
    Route,
    changes_for_storing,
    for_storing,
    get_route,
    list_routes,
)
from glasskey.services import Services

Provider = Literal["openai", "anthropic", "gemini", "openai_compatible", "simulated"]
Priority = Annotated[StrictInt, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX, description="lower is tried first")]
Weight = Annotated[StrictInt, Field(ge=1, le=WEIGHT_MAX, description="share among routes of equal priority")]
BaseUrl = Annotated[
    str,
    Field(
        max_length=500,
        description=(
            "the upstream's http(s) base URL; refused with `upstream_address_refused`: a user name or password "
            "in it, link-local and cloud metadata addresses, and loopback or private addresses unless the "
            "gateway's `allow_private_upstreams` setting is on (docs/security.md)"
        ),
    ),
]
UpstreamModel = Annotated[str, Field(min_length=1, max_length=200, description="the model name the upstream knows")]
Credential = Annotated[str | None, Field(description="the upstream API key; stored, never shown again in full")]
Options = Annotated[RouteOptionsBody, Field(description="provider-specific settings and per-route timeouts")]


class CreateRouteBody(Body):
    model: str = Field(min_length=1, max_length=200, description="the public model name this route serves")
    provider: Provider
    base_url: BaseUrl = ""
    upstream_model: UpstreamModel
    settlement: Settlement
    price_per_mtok_micros: PricesBody = Field(description="what the user is charged per 1M tokens")
    cost_per_mtok_micros: PricesBody = Field(description="what the operator pays upstream per 1M tokens")
    priority: Priority = 100
    weight: Weight = 1
    enabled: StrictBool = True
    options: Options = Field(default_factory=RouteOptionsBody)
    credential: Credential = None

    def route(self) -> Route:
        return Route(
            id="",
            model=self.model,
            provider=self.provider,
            base_url=self.base_url,
            upstream_model=self.upstream_model,
            settlement=self.settlement,
            prices=self.price_per_mtok_micros.prices(),
            costs=self.cost_per_mtok_micros.prices(),
            priority=self.priority,
            weight=self.weight,
            enabled=self.enabled,
            options=self.options.options(),
            credential=self.credential,
        )


class UpdateRouteBody(Body):
    """Only the fields sent change; ``credential: null`` removes the credential, ``forced_circuit: null``
    lifts a forced breaker state, and ``options`` replaces all the options at once."""

    base_url: BaseUrl | None = None
    upstream_model: UpstreamModel | None = None
    settlement: Settlement | None = None
    price_per_mtok_micros: PricesBody | None = None
    cost_per_mtok_micros: PricesBody | None = None
    priority: Priority | None = None
    weight: Weight | None = None
    enabled: StrictBool | None = None
    options: Options | None = None
    credential: Credential = None
    forced_circuit: ForcedCircuit | None = Field(
        default=None, description="force the breaker `open` (never tried) or `closed` (always tried); null lifts it"
    )

    @field_validator(
        "base_url",
        "upstream_model",
        "settlement",
        "price_per_mtok_micros",
        "cost_per_mtok_micros",
        "priority",
        "weight",
        "enabled",
        "options",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        # For these fields ``null`` has no meaning, and silently ignoring it would hide a client bug.
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    def changes(self) -> dict[str, Any]:
        """The keyword arguments of ``update_route``: the fields sent, prices as ``Prices``."""
        changes: dict[str, Any] = {name: getattr(self, name) for name in self.model_fields_set}
        if self.price_per_mtok_micros is not None:
            changes["prices"] = changes.pop("price_per_mtok_micros").prices()
        if self.cost_per_mtok_micros is not None:
            changes["costs"] = changes.pop("cost_per_mtok_micros").prices()
        if self.options is not None:
            changes["options"] = self.options.options()
        return changes


class OfficialPriceBody(Body):
    price_per_mtok_micros: PricesBody = Field(description="the model's official list price per 1M tokens")
    price_date: date | None = Field(default=None, description="when this price was published; default today")
    price_source: str = Field(default="operator override", min_length=1, max_length=300)


def routes_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/routes",
        tags=["routes"],
        summary="List routes",
        description="Every route (or one model's), ordered by model and priority; credentials are masked.",
    )
    def read_routes(
        model: Annotated[str | None, Query(description="only routes of this model")] = None,
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([route.public() for route in list_routes(conn, model)])

    @router.post(
        "/routes",
        status_code=201,
        tags=["routes"],
        summary="Create a route",
        description=(
            "Adds one way to serve a model: provider, base URL, upstream model, credential, settlement, the "
            "price to the user and the cost to the operator (micros per 1M tokens), priority and weight. The "
            "credential is stored and only ever shown masked."
        ),
        responses=error_responses(404),
    )
    def create(body: CreateRouteBody, request: Request) -> dict[str, Any]:
        route = for_storing(body.route(), services.vault, allow_private=services.settings.allow_private_upstreams)
        with services.db.write() as conn:
            return audited.create_route(conn, actor_of(request), services.clock(), route).public()

    @router.get(
        "/routes/{route_id}",
        tags=["routes"],
        summary="Get a route",
        description="One route, its credential masked.",
        responses=error_responses(404),
    )
    def read_route(route_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return get_route(conn, route_id).public()

    @router.patch(
        "/routes/{route_id}",
        tags=["routes"],
        summary="Change a route",
        description=(
            "Changes only the fields sent: enabled, priority, weight, prices, costs, credential, options (with "
            "the per-route timeouts), base URL, upstream model, settlement, and the forced circuit (`open`, "
            "`closed`, or null to let the breaker decide). The model and provider of a route are fixed: create "
            "a new route."
        ),
        responses=error_responses(404),
    )
    def update(route_id: str, body: UpdateRouteBody, request: Request) -> dict[str, Any]:
        changes = changes_for_storing(
            body.changes(), services.vault, allow_private=services.settings.allow_private_upstreams
        )
        with services.db.write() as conn:
            route = audited.update_route(conn, actor_of(request), services.clock(), route_id, **changes)
        # This process wrote the force: it is authoritative here, not a copy that may be stale.
        services.health.force(route.id, route.forced_circuit)
        return route.public()

    @router.get(
        "/models",
        tags=["models and prices"],
        summary="List models",
        description="The model catalog with each model's official list price per 1M tokens, in micros.",
    )
    def read_models() -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([model_view(model) for model in list_models(conn)])

    @router.get(
        "/models/{name}",
        tags=["models and prices"],
        summary="Get a model",
        description="One model of the catalog with its official price.",
        responses=error_responses(404),
    )
    def read_model(name: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return model_view(get_model(conn, name))

    @router.put(
        "/models/{name}/price",
        tags=["models and prices"],
        summary="Override a model's official price",
        description=(
            "Sets the model's official list price (micros per 1M input, output and cached tokens). The "
            "override is kept when the shipped catalog is synced at start-up."
        ),
        responses=error_responses(404),
    )
    def put_price(name: str, body: OfficialPriceBody, request: Request) -> dict[str, Any]:
        price_date = body.price_date or services.clock().date()
        with services.db.write() as conn:
            model = audited.set_official_prices(
                conn,
                actor_of(request),
                services.clock(),
                name,
                body.price_per_mtok_micros.prices(),
                price_date=price_date.isoformat(),
                source=body.price_source,
            )
        return model_view(model)

    return router
