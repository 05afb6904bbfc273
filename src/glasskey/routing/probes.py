"""Active probes (off by default): a cheap request to each enabled route that has no recent traffic.

Passive health needs traffic; a route nobody used lately has no statistics, and a route whose
breaker is open only learns it recovered when a real request probes it. With
``GLASSKEY_PROBE_INTERVAL_SECONDS`` above zero, every interval each idle route gets one request of
one output token. Probes are the operator's cost: they charge no wallet and leave no receipt,
and their outcome feeds the health board like any attempt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anyio.to_thread

from glasskey.providers.base import Provider, ProviderError
from glasskey.routing.health import HealthBoard, counts_against_route
from glasskey.routing.routes import Route, list_routes
from glasskey.store.database import Database

PROBE_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


def _idle_routes(db: Database, health: HealthBoard) -> list[Route]:
    with db.read() as conn:
        routes = [r for r in list_routes(conn) if r.enabled and r.forced_circuit is None]
    return [r for r in routes if health.snapshot(r.id)["requests"] == 0]


async def probe_idle_routes(db: Database, health: HealthBoard, providers: Mapping[str, Provider]) -> dict[str, bool]:
    """Probe every idle chat route once; returns each probed route's outcome."""
    outcomes: dict[str, bool] = {}
    for route in await anyio.to_thread.run_sync(_idle_routes, db, health):
        provider = providers.get(route.provider)
        if provider is None or not health.try_acquire(route.id):
            continue
        began = time.monotonic()
        try:
            await provider.chat(route.target(), {**PROBE_BODY, "model": route.upstream_model})
        except ProviderError as error:
            latency_ms = int((time.monotonic() - began) * 1000)
            if counts_against_route(error):
                health.record(route.id, ok=False, latency_ms=latency_ms, error_class=error.error_type)
            else:
                health.release_probe(route.id)
            outcomes[route.id] = False
            continue
        health.record(route.id, ok=True, latency_ms=int((time.monotonic() - began) * 1000))
        outcomes[route.id] = True
    return outcomes
