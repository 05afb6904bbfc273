"""The ``/v1/research`` endpoints, key-authenticated: parse, call one domain function, render.

A key sees only its own files and jobs. Preflight moves no money. Creating a job re-runs the
preflight and refuses before any call when a model is not allowed (403 ``model``), the wallet
cannot cover the maximum (402 ``wallet``) or a budget would be passed (429 ``budget``). A job is
created from JSON (inputs by file id) or from multipart/form-data: its fields as form fields and
its files as parts named ``file``, stored by content hash exactly as ``POST /files`` stores them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from sqlalchemy import Connection
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

from glasskey.errors import ClientError, WalletError
from glasskey.gateway.http import JSONResponse, read_body
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.requests import check_body_text, parse_json_object
from glasskey.keys.service import KeyRecord
from glasskey.research import jobs
from glasskey.research.confirm import confirm_job
from glasskey.research.inputs import FILE_MAX_BYTES, INPUTS_MAX
from glasskey.research.openapi import research_openapi
from glasskey.research.preflight import preflight
from glasskey.research.runner import JobRunner
from glasskey.research.spec import JOB_FIELDS, JobSpec, Prepared, prepare

T = TypeVar("T")
EVENTS_POLL_SECONDS = 0.25
EVENTS_MAX_SECONDS = 6 * 3600  # a watcher is let go after this, whatever the job does
JOB_BODY_MAX_BYTES = 64 * 1024
UPLOAD_MAX_BYTES = INPUTS_MAX * (FILE_MAX_BYTES + 4096)  # every file at its limit, with part headers
# The job's fields a multipart POST /jobs may carry besides its files; `inputs` may repeat (file ids).
FORM_FIELDS = (*JOB_FIELDS, "max_charge_micros")
FORM_FIELDS_MAX = INPUTS_MAX + len(FORM_FIELDS)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request) -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
    """A multipart body's text fields and its files (name, bytes), read under one bound.

    The whole body is read under ``UPLOAD_MAX_BYTES`` first (413 past it, chunked or not), so the
    multipart parser never spools more than that to disk; each file is read one byte past its
    limit, so ``store_file`` can refuse it naming the file.
    """
    raw = await read_body(request, UPLOAD_MAX_BYTES)

    async def replay() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    async with Request(request.scope, replay).form(max_files=INPUTS_MAX, max_fields=FORM_FIELDS_MAX) as form:
        fields, uploads = [], []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append((value.filename or "", await value.read(FILE_MAX_BYTES + 1)))
            else:
                fields.append((name, value))
    return fields, uploads


def form_body(fields: list[tuple[str, str]], uploaded_ids: list[str]) -> dict[str, Any]:
    """The JSON body the form stands for: its fields, its `inputs` ids then the uploaded files' ids."""
    body: dict[str, Any] = {}
    inputs: list[str] = []
    for name, value in fields:
        if name == "inputs":
            inputs.append(value)
        elif name not in FORM_FIELDS:
            raise ClientError(f"unknown form field `{name}`; the fields are {', '.join(FORM_FIELDS)}", param=name)
        elif name in body:
            raise ClientError(f"the form field `{name}` is given twice", param=name)
        elif name == "max_charge_micros":
            # Form fields are text; a maximum that is not digits stays text and is refused as JSON's is.
            body[name] = int(value) if value.isascii() and value.isdigit() else value
        else:
            body[name] = value
    body["inputs"] = inputs + uploaded_ids
    check_body_text(body)
    return body


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def routes_research(lifecycle: Lifecycle, runner: JobRunner) -> list[Route]:
    services = lifecycle.services

    async def write(fn: Callable[[Connection], T]) -> T:
        def work() -> T:
            with services.db.write() as conn:
                return fn(conn)

        return await anyio.to_thread.run_sync(work)

    async def key_of(request: Request) -> KeyRecord:
        return await lifecycle.key_of(request.headers.get("authorization"))

    async def store(key: KeyRecord, uploads: list[tuple[str, bytes]]) -> list[jobs.StoredFile]:
        now = services.clock()
        return await write(lambda conn: [jobs.store_file(conn, key.id, name, data, now) for name, data in uploads])

    async def job_body(request: Request, key: KeyRecord) -> dict[str, Any]:
        if not is_multipart(request):
            return parse_json_object(await read_body(request, JOB_BODY_MAX_BYTES))
        fields, uploads = await read_form(request)
        stored = await store(key, uploads) if uploads else []
        return form_body(fields, [f.id for f in stored])

    async def planned(
        request: Request, key: KeyRecord, body: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Prepared, dict[str, Any]]:
        if body is None:
            body = parse_json_object(await read_body(request, JOB_BODY_MAX_BYTES))
        spec = JobSpec.parse(body)
        files = await lifecycle.read(lambda conn: jobs.get_files(conn, key.id, spec.file_ids))
        prepared = prepare(spec, files)
        now = services.clock()
        result = await lifecycle.read(lambda conn: preflight(conn, key, prepared, services.health, now))
        return body, prepared, result

    async def upload(request: Request) -> Response:
        key = await key_of(request)
        _, uploads = await read_form(request)
        if not uploads:
            raise ClientError("send the files as multipart/form-data parts named `file`", param="file")
        stored = await store(key, uploads)
        return JSONResponse({"object": "list", "data": [f.public() for f in stored]}, status_code=201)

    async def preflight_endpoint(request: Request) -> Response:
        key = await key_of(request)
        _, _, result = await planned(request, key)
        if result["refused_by"] == "wallet":
            raise WalletError(f"The research job is not admitted: {result['reason']}", details={"preflight": result})
        return JSONResponse(result)

    async def create(request: Request) -> Response:
        key = await key_of(request)
        body, prepared, result = await planned(request, key, await job_body(request, key))
        now = services.clock()
        instance_id = services.instance_id
        job_id = await write(
            lambda conn: confirm_job(
                conn, key, prepared, result, body.get("max_charge_micros"), now, instance_id=instance_id
            )
        )
        runner.start(job_id)
        status = await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock()))
        return JSONResponse({**status, "preflight": result}, status_code=201)

    async def list_endpoint(request: Request) -> Response:
        key = await key_of(request)
        now = services.clock()

        def work(conn: Connection) -> list[dict[str, Any]]:
            return [jobs.job_status(conn, row.id, key.id, now) for row in jobs.list_jobs(conn, key.id)]

        return JSONResponse({"object": "list", "data": await lifecycle.read(work)})

    async def show(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        return JSONResponse(await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock())))

    async def cancel(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        await runner.cancel(job_id, key.id)
        return JSONResponse(await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock())))

    async def resume(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        row = await lifecycle.read(lambda conn: jobs.job_row(conn, job_id, key.id))
        if row.status in jobs.FINISHED:
            raise ClientError(f"job {job_id} is {row.status}; only an unfinished job resumes", code="job_finished")
        # Claimed atomically: a job another live gateway process runs is left to it; one whose
        # process died (SQLite: any other; PostgreSQL: its liveness lock free at two checks, or
        # three heartbeats missed and its holds voided) is taken up here.
        if not await runner.resume(job_id):
            owner = await lifecycle.read(lambda conn: jobs.job_row(conn, job_id, key.id).runner_instance_id)
            raise ClientError(
                f"job {job_id} is run by gateway process {owner}, which is alive; it goes on there, and can be "
                "resumed elsewhere once that process is found dead: within about two seconds of its death, or "
                "after three missed heartbeats (30 s) if it hangs",
                code="job_running",
                status_code=409,
            )
        return JSONResponse(await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock())))

    async def events(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        first = await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock()))

        async def stream() -> AsyncIterator[bytes]:
            status, last = first, None
            deadline = services.monotonic() + EVENTS_MAX_SECONDS
            while True:
                seen = {k: v for k, v in status.items() if k != "elapsed_ms"}
                if seen != last:
                    yield sse_event("progress", status)
                    last = seen
                if status["status"] in jobs.STOPPED or services.monotonic() > deadline:
                    yield sse_event("end", {"id": job_id, "status": status["status"], "report": status["report"]})
                    return
                await anyio.sleep(EVENTS_POLL_SECONDS)
                status = await lifecycle.read(lambda conn: jobs.job_status(conn, job_id, key.id, services.clock()))

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    async def report(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        fmt = request.path_params.get("fmt", "json")
        row = await lifecycle.read(lambda conn: jobs.job_row(conn, job_id, key.id))
        if row.report is None:
            raise ClientError(f"job {job_id} has no report yet (status {row.status})", code="report_not_ready")
        if fmt == "md":
            return Response(row.report["markdown"], media_type="text/markdown; charset=utf-8")
        if fmt != "json":
            raise ClientError("a report is `.md` or `.json`", code="unknown_format")
        return JSONResponse(row.report)

    async def openapi(request: Request) -> Response:
        return JSONResponse(research_openapi(services.settings.effective_public_url))

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/files", upload, methods=["POST"]),
        Route("/preflight", preflight_endpoint, methods=["POST"]),
        Route("/jobs", create, methods=["POST"]),
        Route("/jobs", list_endpoint, methods=["GET"]),
        Route("/jobs/{job_id}", show, methods=["GET"]),
        Route("/jobs/{job_id}/events", events, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/jobs/{job_id}/resume", resume, methods=["POST"]),
        Route("/jobs/{job_id}/report", report, methods=["GET"]),
        Route("/jobs/{job_id}/report.{fmt}", report, methods=["GET"]),
    ]
