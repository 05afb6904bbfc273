"""Listings of every model (``/v1/models``, ``/v1/key``) read all routes in one query, each in its order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from conftest_helpers import make_settings
from gateway_fixtures import MODELS, seed, simulated_route
from glasskey.keys.secret import parse
from glasskey.keys.service import find_by_public_id
from glasskey.pricing.catalog import Prices
from glasskey.routing.routes import create_route, update_route
from glasskey.routing.selection import routes_for_key_by_model, select_routes
from glasskey.services import build_services


def test_every_models_routes_come_from_one_query_in_the_order_each_would_be_tried(tmp_path) -> None:
    services = build_services(make_settings(tmp_path))
    try:
        seeded = seed(services)
        now = services.clock()
        with services.db.write() as conn:
            for name in MODELS:  # a second, cheaper route per model, and a disabled one
                for suffix, priority in (("cheap", 5), ("off", 0)):
                    route = simulated_route(f"rt-{name}-{suffix}", name, Prices(1, 1, 1), priority=priority)
                    create_route(conn, route, now)
                update_route(conn, f"rt-{name}-off", enabled=False)
        parsed = parse(seeded["routed_key"])
        assert parsed is not None
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        with services.db.read() as conn:
            key = find_by_public_id(conn, parsed[0])
            assert key is not None
            event.listen(services.db.engine, "before_cursor_execute", count)
            try:
                by_model = routes_for_key_by_model(conn, key, services.health)
            finally:
                event.remove(services.db.engine, "before_cursor_execute", count)
            one_by_one = {name: [r.id for r in select_routes(conn, key, name).routes] for name in MODELS}
    finally:
        services.close()
    assert len(statements) == 1, statements
    assert {name: [r.id for r in routes] for name, routes in by_model.items()} == one_by_one
    assert all(len(ids) == 2 and not any(i.endswith("-off") for i in ids) for ids in one_by_one.values())
