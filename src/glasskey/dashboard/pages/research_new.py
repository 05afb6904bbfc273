"""Research, new job: the form, its preflight shown before the confirm button, then the job's page.

A job runs with a person's key, which the dashboard never keeps: the key is asked on the form
and again at confirmation (never written into a page), and checked like any request's. The
uploads are read under the API's bound, stored by content hash for that key, and the preflight
is the API's own (no money moves until the confirm). Jobs started here run in this process's
own ``JobRunner``; a cancel from anywhere reaches them through the job's cancel flag.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from glasskey.dashboard.auth import check_csrf
from glasskey.dashboard.web import Dashboard, read_form, redirect
from glasskey.errors import ClientError
from glasskey.gateway.http import read_body
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys.service import KeyRecord, authenticate
from glasskey.research import NOTICE, jobs
from glasskey.research.confirm import confirm_job
from glasskey.research.http import UPLOAD_MAX_BYTES
from glasskey.research.inputs import FILE_MAX_BYTES, INPUTS_MAX
from glasskey.research.plan import DEPTH_PASSES
from glasskey.research.preflight import preflight
from glasskey.research.runner import JobRunner
from glasskey.research.spec import DEFAULT_DEEP_MODEL, DEFAULT_QUICK_MODEL, JobSpec, prepare

SPEC_FIELDS = ("question", "depth", "quick_model", "deep_model", "start", "end", "risk_free_rate")


def _spec_body(form: FormData, file_ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {name: str(form.get(name) or "").strip() for name in SPEC_FIELDS}
    body = {name: value for name, value in body.items() if value}
    return {**body, "inputs": file_ids}


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services
    runner = JobRunner(services, Lifecycle(services))

    def key_from(form: FormData, conn: Connection) -> KeyRecord:
        return authenticate(conn, pepper=services.pepper, token=str(form.get("key") or ""), now=services.clock())

    def form_page(request: Request, values: dict[str, Any], status_code: int = 200) -> Response:
        context = {
            "nav": "research", "notice": NOTICE, "values": values, "depths": list(DEPTH_PASSES),
            "defaults": {"quick_model": DEFAULT_QUICK_MODEL, "deep_model": DEFAULT_DEEP_MODEL},
            "files_max": INPUTS_MAX, "file_max_mib": FILE_MAX_BYTES // (1024 * 1024),
        }  # fmt: skip
        return dash.render(request, "research_new.html", context, status_code=status_code)

    async def new_page(request: Request) -> Response:
        return form_page(request, {"depth": "standard", "risk_free_rate": "0"})

    async def check_page(request: Request) -> Response:
        """The uploads and the question, then the preflight: nothing is charged yet."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            await read_form(request)  # like every form: without this session's token, refused first (403)
            raise ClientError("The new-job form is sent as multipart/form-data, with its files.")
        raw = await read_body(request, UPLOAD_MAX_BYTES)

        async def replay() -> Message:
            return {"type": "http.request", "body": raw, "more_body": False}

        async with Request(request.scope, replay).form(max_files=INPUTS_MAX, max_fields=50) as form:
            check_csrf(request.session, form.get("csrf_token"))
            uploads = [
                (v.filename or "", await v.read(FILE_MAX_BYTES + 1))
                for _, v in form.multi_items()
                if isinstance(v, UploadFile) and v.filename
            ]
            now = services.clock()

            def work(conn: Connection) -> dict[str, Any]:
                key = key_from(form, conn)
                stored = [jobs.store_file(conn, key.id, name, data, now) for name, data in uploads]
                body = _spec_body(form, [f.id for f in stored])
                prepared = prepare(JobSpec.parse(body), stored)
                return {"body": body, "result": preflight(conn, key, prepared, services.health, now)}

            checked = await dash.write(work)
        return dash.render(request, "research_preflight.html", {"nav": "research", "notice": NOTICE, **checked})

    async def confirm_page(request: Request) -> Response:
        """The person confirms the maximum with the key again; the job starts and its page opens."""
        form = await read_form(request)
        now = services.clock()
        max_text = str(form.get("max_charge_micros") or "")
        if not max_text.isdigit():
            raise ClientError("The maximum is a whole number of micros, as the preflight showed it.")

        def work(conn: Connection) -> str:
            key = key_from(form, conn)
            files = jobs.get_files(conn, key.id, form.getlist("inputs"))  # type: ignore[arg-type]
            prepared = prepare(JobSpec.parse(_spec_body(form, [f.id for f in files])), files)
            result = preflight(conn, key, prepared, services.health, now)
            return confirm_job(conn, key, prepared, result, int(max_text), now, instance_id=services.instance_id)

        job_id = await dash.write(work)
        runner.start(job_id)
        return redirect(f"/research/{job_id}")

    return [
        Route("/research/new", new_page, methods=["GET"]),
        Route("/research/new", check_page, methods=["POST"]),
        Route("/research/confirm", confirm_page, methods=["POST"]),
    ]
