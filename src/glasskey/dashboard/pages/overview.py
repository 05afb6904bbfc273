"""The overview: every org's two wallets, spend and failures over time, spend by model and by key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.charts import stacked_bars
from glasskey.dashboard.queries import chart_days, spend_by_day, spend_windows
from glasskey.dashboard.web import Dashboard
from glasskey.keys.service import list_keys
from glasskey.orgs.service import list_orgs, list_wallets

CHART_DAYS = 30


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def overview(request: Request) -> Response:
        now = services.clock()

        def work(conn: Connection) -> dict[str, Any]:
            orgs = [(org, list_wallets(conn, org.id)) for org in list_orgs(conn)]
            keys = list_keys(conn)
            days = chart_days(now, CHART_DAYS)
            key_names = {key.id: f"{key.name} ({key.prefix})" for key in keys}
            return {
                "orgs": orgs,
                "key_count": len(keys),
                "windows": spend_windows(conn, now),
                "chart_days": CHART_DAYS,
                "by_model": stacked_bars(days, spend_by_day(conn, now, days=CHART_DAYS, by="model")),
                "by_key": stacked_bars(days, spend_by_day(conn, now, days=CHART_DAYS, by="key"), key_names),
            }

        context = await dash.read(work)
        return dash.render(request, "overview.html", {"nav": "overview", **context})

    return [Route("/", overview, methods=["GET"])]
