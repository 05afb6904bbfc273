"""Failures: failed requests grouped by who caused them (``source``) and by route.

The seven sources answer "is it my request, my key, the model, my balance, my budget, the
routes or the provider?" at a glance; the grouping by route shows where upstream trouble is.
Failed authentications are also counted per client address and public id (``auth_failures``):
past a few a minute they get no receipt, so those counts are where a flood of bad keys shows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.pages.receipts import SOURCES
from glasskey.dashboard.queries import ReceiptFilter, failures_grouped, receipt_totals
from glasskey.dashboard.web import Dashboard
from glasskey.errors import ClientError
from glasskey.keys.auth_failures import summary

PERIOD_DAYS = {"1": 1, "7": 7, "30": 30, "all": None}

# What each source means, and where to look next: the words of the brief's error table.
SOURCE_HINTS = {
    "client": "The request itself was refused: a bad or oversized body. Fix the client's request.",
    "key": "The key was missing, unknown, revoked or expired. Check the key the client sends.",
    "model": "The model is unknown, or not allowed for the key. Check the key's allowed models.",
    "wallet": "The wallet could not cover the request's maximum charge. Top up the wallet.",
    "budget": "A key budget or its rate limit was reached. Raise the budget, or wait.",
    "route": "No enabled route, or every route tried failed. Check the Routes page.",
    "upstream": "The provider answered with an error or timed out. See the route's recent errors.",
    "gateway": "glasskey's own database or Redis failed: neither the key's nor the wallet's doing. See its log.",
}


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def failures_page(request: Request) -> Response:
        period = request.query_params.get("days", "7")
        if period not in PERIOD_DAYS:
            raise ClientError("`days` must be 1, 7, 30 or all", param="days")
        days = PERIOD_DAYS[period]
        since = services.clock() - timedelta(days=days) if days is not None else None

        def work(conn: Connection) -> dict[str, Any]:
            by_source = {group.name: group for group in failures_grouped(conn, since, by="source")}
            return {
                "nav": "failures",
                "period": period,
                "periods": list(PERIOD_DAYS),
                "since": since,
                "totals": receipt_totals(conn, ReceiptFilter(since=since)),
                "sources": [(source, SOURCE_HINTS[source], by_source.get(source)) for source in SOURCES],
                "by_route": failures_grouped(conn, since, by="route"),
                "auth_failures": summary(conn, since),
                "auth_receipts_per_minute": services.settings.auth_failure_receipts_per_minute,
                "auth_refused_after_per_minute": services.settings.auth_failures_refused_after_per_minute,
            }

        return dash.render(request, "failures.html", await dash.read(work))

    return [Route("/failures", failures_page, methods=["GET"])]
