"""Choosing the routes a key may use for a model, in the order they would be tried."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from glasskey.errors import ModelError, RouteError
from glasskey.keys.service import KeyRecord
from glasskey.pricing.catalog import Model, get_model
from glasskey.routing.routes import Route, candidates


@dataclass(frozen=True)
class Selection:
    model: Model
    routes: list[Route]

    @property
    def primary(self) -> Route:
        return self.routes[0]


def check_model_allowed(conn: Connection, key: KeyRecord, model_name: str) -> Model:
    """The catalog model, if this key may call it (404 unknown, 403 not allowed)."""
    if not key.policy.allows(model_name):
        # Say whether it exists at all only after refusing: the key's policy is the answer.
        raise ModelError(
            f"The model `{model_name}` is not allowed for key {key.prefix}; "
            f"allowed: {', '.join(key.policy.allowed_models or ())}",
            code="model_not_allowed",
            param="model",
            status_code=403,
        )
    return get_model(conn, model_name)


def select_routes(conn: Connection, key: KeyRecord, model_name: str, *, kind: str = "chat") -> Selection:
    model = check_model_allowed(conn, key, model_name)
    if model.kind != kind:
        raise ModelError(
            f"The model `{model_name}` is a {model.kind} model and cannot serve this endpoint",
            code="wrong_model_kind",
            param="model",
            status_code=400,
        )
    found = candidates(conn, model_name, key.policy.settlement)
    if not found:
        raise RouteError(
            f"No enabled {key.policy.settlement} route serves `{model_name}`; an operator must add one",
            code="no_route",
        )
    return Selection(model=model, routes=found)
