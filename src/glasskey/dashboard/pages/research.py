"""Research: every research job (the operator sees all keys'), a live job page, and its report.

A new job is started on ``research_new``'s pages (the key is asked there, never kept). A running
job's page reloads itself every few seconds (a meta refresh: the pages run no script of their
own). The report's figures, chart and receipts are drawn from the job's stored report, which the
runner rendered from the computed table. The report downloads as Markdown or JSON from the page,
served here with the session (the same bytes ``GET /v1/research/jobs/{id}/report.md|.json`` gives
the job's key), so the person reading it needs no key.
"""

from __future__ import annotations

from typing import Any

import orjson
from markupsafe import Markup
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.pages import research_new
from glasskey.dashboard.web import Dashboard
from glasskey.errors import NotFound
from glasskey.research import NOTICE
from glasskey.research.jobs import STOPPED, job_row, job_status, list_jobs
from glasskey.research.metrics import percent, ratio

JOBS_SHOWN = 100
REFRESH_SECONDS = 2
REPORT_MEDIA_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json"}


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def jobs_page(request: Request) -> Response:
        def work(conn: Connection) -> list[dict[str, Any]]:
            now = services.clock()
            return [job_status(conn, row.id, None, now) for row in list_jobs(conn, None, JOBS_SHOWN)]

        return dash.render(
            request, "research.html", {"nav": "research", "jobs": await dash.read(work), "notice": NOTICE}
        )

    async def job_page(request: Request) -> Response:
        job_id = request.path_params["job_id"]

        def work(conn: Connection) -> dict[str, Any]:
            return {
                "job": job_status(conn, job_id, None, services.clock()),
                "report": job_row(conn, job_id, None).report,
            }

        context = await dash.read(work)
        report = context["report"]
        return dash.render(
            request,
            "research_job.html",
            {
                "nav": "research",
                "notice": NOTICE,
                "refresh": REFRESH_SECONDS if context["job"]["status"] not in STOPPED else None,
                "percent": percent,
                "ratio": ratio,
                # The SVG is glasskey's own drawing of the computed series (symbols escaped in it).
                "chart": Markup(report["chart_svg"]) if report and report.get("chart_svg") else None,
                **context,
            },
        )

    async def report_download(request: Request) -> Response:
        job_id, fmt = request.path_params["job_id"], request.path_params["fmt"]
        if fmt not in REPORT_MEDIA_TYPES:
            raise NotFound(f"a report downloads as .md or .json, not .{fmt}")
        row = await dash.read(lambda conn: job_row(conn, job_id, None))
        if row.report is None:
            raise NotFound(f"job {job_id} has no report yet (status {row.status})")
        body = row.report["markdown"].encode() if fmt == "md" else orjson.dumps(row.report)
        disposition = f'attachment; filename="{job_id}-report.{fmt}"'
        return Response(body, media_type=REPORT_MEDIA_TYPES[fmt], headers={"content-disposition": disposition})

    return [
        *research_new.routes(dash),  # before /research/{job_id}, which would match /research/new
        Route("/research", jobs_page, methods=["GET"]),
        Route("/research/{job_id}", job_page, methods=["GET"]),
        Route("/research/{job_id}/report.{fmt}", report_download, methods=["GET"]),
    ]
