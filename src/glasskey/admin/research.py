"""Admin endpoints for research jobs: every key's jobs, for the operator (docs/research.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from glasskey.admin.common import error_responses
from glasskey.research.jobs import JOBS_PAGE_MAX, job_row, job_status, list_jobs
from glasskey.services import Services


def research_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["research"])

    @router.get(
        "/research/jobs",
        summary="List research jobs",
        description="Every key's research jobs, newest first: status, calls done and planned, spend so far "
        "(the sum of the receipts of the job's calls) against the confirmed maximum.",
    )
    def read_jobs(limit: Annotated[int, Query(ge=1, le=JOBS_PAGE_MAX)] = 20) -> dict[str, Any]:
        with services.db.read() as conn:
            now = services.clock()
            data = [{**job_status(conn, row.id, None, now), "key_id": row.key_id, "org_id": row.org_id}
                    for row in list_jobs(conn, None, limit)]  # fmt: skip
        return {"object": "list", "data": data}

    @router.get(
        "/research/jobs/{job_id}",
        summary="Show a research job and its report",
        description="One job of any key: its status, calls and spend, the key and org it belongs to, and its "
        "report (null until the job has one).",
        responses=error_responses(404),
    )
    def read_job(job_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            row = job_row(conn, job_id, None)
            return {
                **job_status(conn, job_id, None, services.clock()),
                "key_id": row.key_id,
                "org_id": row.org_id,
                "report_json": row.report,
            }

    return router
