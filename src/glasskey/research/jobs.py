"""Research jobs as rows: files by content hash, jobs with their inputs, steps and calls.

Plain functions over a connection; the runner and the HTTP layer call them. A key sees only
its own files and jobs: every read takes the key id and refuses (404) another key's rows, so
a job id learnt elsewhere reveals nothing. Money read here (spend so far, receipts) comes from
the receipts the gateway wrote for the job's calls, never from the job's own counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from glasskey.errors import NotFound
from glasskey.gateway.instances import dead_after
from glasskey.gateway.kept_answers import kept_answer
from glasskey.ids import new_id
from glasskey.research.inputs import check_size, content_hash, input_error, kind_of
from glasskey.research.plan import Plan, PlannedCall
from glasskey.research.tables import research_calls, research_files, research_job_inputs, research_jobs, research_steps
from glasskey.store.tables import instances, receipts, transfers

FINISHED = ("succeeded", "failed", "cancelled", "capped")
# Not running any more: finished, or interrupted by its process stopping (resumable).
STOPPED = (*FINISHED, "interrupted")
# Not finished: a job in one of these whose process is gone may be claimed and resumed.
RESUMABLE = ("queued", "running", "interrupted")
JOBS_PAGE_MAX = 100


@dataclass(frozen=True)
class StoredFile:
    id: str
    name: str
    kind: str
    sha256: str
    size_bytes: int
    content: bytes

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "sha256": self.sha256, "bytes": self.size_bytes}


def store_file(conn: Connection, key_id: str, name: str, data: bytes, now: datetime) -> StoredFile:
    """Keep an upload once per key and content: the same bytes under the same name give the same id."""
    name = name.strip().replace("/", "_").replace("\\", "_")[:200]
    if not name:
        raise input_error("an uploaded file needs a name")
    kind = kind_of(name)
    check_size(name, data)
    digest = content_hash(data)
    row = conn.execute(
        select(research_files.c.id).where(
            research_files.c.key_id == key_id, research_files.c.sha256 == digest, research_files.c.name == name
        )
    ).first()
    if row is not None:
        return StoredFile(row.id, name, kind, digest, len(data), data)
    file_id = new_id("rfile")
    conn.execute(
        research_files.insert().values(
            id=file_id, key_id=key_id, name=name, kind=kind, sha256=digest, size_bytes=len(data), content=data,
            created_at=now,
        )
    )  # fmt: skip
    return StoredFile(file_id, name, kind, digest, len(data), data)


def get_files(conn: Connection, key_id: str, file_ids: list[str]) -> list[StoredFile]:
    rows = {
        r.id: r
        for r in conn.execute(
            select(research_files).where(research_files.c.key_id == key_id, research_files.c.id.in_(file_ids))
        )
    }
    found = []
    for file_id in file_ids:
        row = rows.get(file_id)
        if row is None:
            raise input_error(f"no uploaded file {file_id} for this key (upload it with POST /v1/research/files)")
        found.append(StoredFile(row.id, row.name, row.kind, row.sha256, row.size_bytes, bytes(row.content)))
    return found


def create_job(
    conn: Connection,
    *,
    key_id: str,
    org_id: str,
    plan: Plan,
    files: list[StoredFile],
    risk_free_rate: str,
    window: tuple[str | None, str | None],
    confirmed_max_micros: int,
    planned_max_micros: int,
    planned_estimate_micros: int,
    expected_ms: tuple[int, int],
    call_max_micros: list[int],
    now: datetime,
    instance_id: str | None = None,
) -> str:
    """A new job, ``queued``, claimed by ``instance_id`` (the process that will run it) from the start,
    so no other process's resume can take it before its runner starts."""
    job_id = new_id("rjob")
    conn.execute(
        research_jobs.insert().values(
            id=job_id, key_id=key_id, org_id=org_id, question=plan.question, quick_model=plan.quick_model,
            deep_model=plan.deep_model, depth=plan.depth, risk_free_rate=risk_free_rate, window_start=window[0],
            window_end=window[1], status="queued", step=None,
            confirmed_max_micros=confirmed_max_micros, planned_max_micros=planned_max_micros,
            planned_estimate_micros=planned_estimate_micros, expected_p50_ms=expected_ms[0],
            expected_p90_ms=expected_ms[1], plan=plan_record(plan), cancel_requested=0, created_at=now,
            runner_instance_id=instance_id, resume_count=0,
        )
    )  # fmt: skip
    for position, file in enumerate(files):
        conn.execute(
            research_job_inputs.insert().values(
                job_id=job_id, position=position, file_id=file.id, name=file.name, kind=file.kind, sha256=file.sha256
            )
        )
    for position, step in enumerate(plan.steps()):
        conn.execute(
            research_steps.insert().values(
                job_id=job_id, position=position, name=step["name"], model=step["model"], status="planned",
                calls_planned=step["calls"],
            )
        )  # fmt: skip
    for call, maximum in zip(plan.calls, call_max_micros, strict=True):
        insert_call(conn, job_id, call, maximum, try_number=1)
    return job_id


def plan_record(plan: Plan) -> dict[str, Any]:
    """What makes the run reproducible: models, every prompt, the claims budget and the seed."""
    return {
        "steps": plan.steps(),
        "claims_bytes_max": plan.claims_bytes_max,
        "calls": [{**c.public(), "document": c.document, "chunk": c.chunk, "body": c.body} for c in plan.calls],
    }


def insert_call(conn: Connection, job_id: str, call: PlannedCall, maximum: int, *, try_number: int) -> str:
    call_id = new_id("rcall")
    conn.execute(
        research_calls.insert().values(
            id=call_id, job_id=job_id, step=call.step, position=call.position, try_number=try_number,
            model=call.model, label=call.label[:500], document=call.document, chunk=call.chunk, status="planned",
            max_charge_micros=maximum, charge_micros=0,
        )
    )  # fmt: skip
    return call_id


def job_row(conn: Connection, job_id: str, key_id: str | None) -> Any:
    """The job's row; ``key_id`` None is the operator's view (admin), which sees every job."""
    query = select(research_jobs).where(research_jobs.c.id == job_id)
    if key_id is not None:
        query = query.where(research_jobs.c.key_id == key_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"No research job {job_id} for this key", code="job_not_found")
    return row


def job_inputs(conn: Connection, job_id: str) -> list[StoredFile]:
    rows = conn.execute(
        select(research_job_inputs.c.file_id, research_files)
        .join(research_files, research_files.c.id == research_job_inputs.c.file_id)
        .where(research_job_inputs.c.job_id == job_id)
        .order_by(research_job_inputs.c.position)
    )
    return [StoredFile(r.id, r.name, r.kind, r.sha256, r.size_bytes, bytes(r.content)) for r in rows]


def job_calls(conn: Connection, job_id: str) -> list[Any]:
    query = select(research_calls).where(research_calls.c.job_id == job_id)
    return list(conn.execute(query.order_by(research_calls.c.position, research_calls.c.try_number)))


def job_receipts(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """The receipt of every call the job sent, in the order sent (a call never sent has none)."""
    query = (
        select(
            research_calls.c.step, research_calls.c.label, receipts.c.request_id, receipts.c.requested_model,
            receipts.c.route_id, receipts.c.provider, receipts.c.settlement, receipts.c.input_tokens,
            receipts.c.output_tokens, receipts.c.charge_micros, receipts.c.latency_ms, receipts.c.status,
            receipts.c.error_source, receipts.c.transfer_id,
        )
        .join(receipts, receipts.c.request_id == research_calls.c.id)
        .where(research_calls.c.job_id == job_id)
        .order_by(receipts.c.seq)
    )  # fmt: skip
    return [{str(k): v for k, v in row._asdict().items()} for row in conn.execute(query)]


def receipt_charge(conn: Connection, request_id: str) -> int:
    """What the gateway charged for one call (0 when it left no receipt, or charged nothing)."""
    value = conn.execute(select(receipts.c.charge_micros).where(receipts.c.request_id == request_id)).scalar()
    return int(value or 0)


def job_spend_micros(conn: Connection, job_id: str) -> int:
    query = (
        select(func.coalesce(func.sum(receipts.c.charge_micros), 0))
        .join(research_calls, receipts.c.request_id == research_calls.c.id)
        .where(research_calls.c.job_id == job_id)
    )
    return int(conn.execute(query).scalar_one())


def set_job(conn: Connection, job_id: str, **values: Any) -> None:
    conn.execute(update(research_jobs).where(research_jobs.c.id == job_id).values(**values))


def set_step(conn: Connection, job_id: str, name: str, **values: Any) -> None:
    conn.execute(
        update(research_steps).where(research_steps.c.job_id == job_id, research_steps.c.name == name).values(**values)
    )


def close_steps(conn: Connection, job_id: str, status: str, now: datetime) -> None:
    """A job that ended early leaves no step "running": each takes the job's ending."""
    conn.execute(
        update(research_steps)
        .where(research_steps.c.job_id == job_id, research_steps.c.status == "running")
        .values(status=status if status != "succeeded" else "failed", finished_at=now)
    )


def set_call(conn: Connection, call_id: str, **values: Any) -> None:
    conn.execute(update(research_calls).where(research_calls.c.id == call_id).values(**values))


def abandon_calls(conn: Connection, job_id: str) -> int:
    """Settle the calls a dead process left in flight. A call the gateway charged and kept the
    answer of (``gateway.kept_answers``: in the settlement's own transaction) is ``answered``, with
    that answer and its charge: it is read, never sent again. Any other is ``abandoned``: its hold is
    voided or expires, its id is not reused, and the call is sent again under a new id."""
    running = conn.execute(
        select(research_calls.c.id).where(research_calls.c.job_id == job_id, research_calls.c.status == "running")
    )
    abandoned = 0
    for call_id in [str(r.id) for r in running]:
        answer = kept_answer(conn, call_id)
        if answer is not None:
            set_call(
                conn, call_id, status="answered", output={"answer": answer}, charge_micros=receipt_charge(conn, call_id)
            )
            continue
        set_call(conn, call_id, status="abandoned", error="in flight when the process running the job stopped")
        abandoned += 1
    return abandoned


def _claimable(conn: Connection, instance_id: str, now: datetime) -> Any:
    """Jobs no live process runs: unclaimed, or claimed by a dead process.

    A process is alive while it has a row in ``instances`` that is not past its heartbeats. On
    SQLite only one process serves the file, so every other instance is dead. On PostgreSQL a
    process is dead as soon as ``gateway.liveness`` finds its advisory lock free (at two checks a
    second apart, or at one sighting by a process starting up): the check that finds it voids its
    holds and removes its row in one transaction (``instances.void_dead_holds``), so its jobs are
    claimable within about two seconds of its death, and never before its holds are voided. A
    process that hangs with its connections open keeps its lock: the fallback is its heartbeat,
    dead once its last beat is ``DEAD_AFTER_BEATS`` beats old, and its jobs are claimable once its
    holds are voided too (by a heartbeat's recovery, ``instances.heartbeat``): until then a hung
    process's call in flight could still settle and be charged beside the taker's retry; after, it
    charges nothing (``interrupted_before_settlement``). A job ``instance_id`` itself
    claimed is never claimable again by it: this process runs it (or is about to: a new job is
    claimed before its task starts).
    """
    owner = research_jobs.c.runner_instance_id
    live = select(instances.c.id)
    if conn.dialect.name == "sqlite":
        live = live.where(instances.c.id == instance_id)
        return or_(owner.is_(None), and_(owner != instance_id, owner.not_in(live)))
    live = live.where(instances.c.last_seen >= dead_after(now))
    holding = select(transfers.c.id).where(transfers.c.status == "pending", transfers.c.instance_id == owner)
    return or_(owner.is_(None), and_(owner != instance_id, owner.not_in(live), ~holding.exists()))


def claim_job(conn: Connection, job_id: str, instance_id: str, now: datetime, *, resume: bool) -> bool:
    """Take the job for ``instance_id`` in one conditional UPDATE: of two processes claiming it at
    once, exactly one succeeds (the row's lock orders them; the second sees the new owner alive).
    A resume is recorded on the job (when, by which process, how many).

    The row is locked first, in a statement of its own: a research call's hold locks it too while it
    checks its process still owns the job (``calls.JobOwned``), so a hold that got in first has
    committed before the UPDATE below takes its snapshot (PostgreSQL, read committed), and its
    pending hold then keeps the job unclaimable until it is voided; one that comes after sees the
    new owner and is refused."""
    conn.execute(select(research_jobs.c.id).where(research_jobs.c.id == job_id).with_for_update())
    values: dict[str, Any] = {"runner_instance_id": instance_id}
    if resume:
        values |= {"resumed_at": now, "resumed_by": instance_id, "resume_count": research_jobs.c.resume_count + 1}
    result = conn.execute(
        update(research_jobs)
        .where(
            research_jobs.c.id == job_id,
            research_jobs.c.status.in_(RESUMABLE),
            _claimable(conn, instance_id, now),
        )
        .values(**values)
    )
    return int(result.rowcount or 0) == 1


def owns_job(conn: Connection, job_id: str, instance_id: str) -> bool:
    """Whether ``instance_id`` still runs the job, its row locked until the caller's transaction
    ends: a claim by another process (an UPDATE of that row) waits for it, so what the caller
    writes in the same transaction is written before any takeover, or not at all."""
    query = select(research_jobs.c.runner_instance_id).where(research_jobs.c.id == job_id).with_for_update()
    return bool(conn.scalar(query) == instance_id)


def release_job(conn: Connection, job_id: str, instance_id: str) -> None:
    """The process stops running the job (finished, or stopping): anyone may claim it next."""
    conn.execute(
        update(research_jobs)
        .where(research_jobs.c.id == job_id, research_jobs.c.runner_instance_id == instance_id)
        .values(runner_instance_id=None)
    )


def resumable_jobs(conn: Connection, instance_id: str, now: datetime, limit: int) -> list[str]:
    """Unfinished jobs that no live process runs, oldest first, at most ``limit``."""
    query = (
        select(research_jobs.c.id)
        .where(research_jobs.c.status.in_(RESUMABLE), _claimable(conn, instance_id, now))
        .order_by(research_jobs.c.created_at, research_jobs.c.id)
        .limit(limit)
    )
    return [str(job_id) for job_id in conn.scalars(query)]


def end_call_cut_short(conn: Connection, call_id: str, charged: int) -> None:
    """A call whose sending was cancelled: ``answered`` if the gateway had settled it and kept its
    answer, else ``cancelled`` (its hold was voided)."""
    answer = kept_answer(conn, call_id)
    if answer is not None:
        set_call(conn, call_id, status="answered", output={"answer": answer}, charge_micros=charged)
    else:
        set_call(conn, call_id, status="cancelled", charge_micros=charged)


def request_cancel(conn: Connection, job_id: str, key_id: str | None) -> Any:
    row = job_row(conn, job_id, key_id)
    if row.status not in FINISHED:
        set_job(conn, job_id, cancel_requested=1)
    return job_row(conn, job_id, key_id)


def list_jobs(conn: Connection, key_id: str | None, limit: int = 20) -> list[Any]:
    query = select(research_jobs).order_by(research_jobs.c.created_at.desc(), research_jobs.c.id)
    if key_id is not None:
        query = query.where(research_jobs.c.key_id == key_id)
    return list(conn.execute(query.limit(min(max(limit, 1), JOBS_PAGE_MAX))))


def job_status(conn: Connection, job_id: str, key_id: str | None, now: datetime) -> dict[str, Any]:
    """What a person watching the job sees: step, calls done of planned, spend, elapsed vs expected."""
    row = job_row(conn, job_id, key_id)
    calls = job_calls(conn, job_id)
    steps = conn.execute(
        select(research_steps).where(research_steps.c.job_id == job_id).order_by(research_steps.c.position)
    )
    planned = sum(1 for c in calls if c.try_number == 1)
    done = sum(1 for c in calls if c.status in ("succeeded", "answered", "failed", "malformed"))
    end = row.finished_at
    return {
        "object": "research.job",
        "id": row.id,
        "status": row.status,
        "step": row.step,
        "question": row.question,
        "quick_model": row.quick_model,
        "deep_model": row.deep_model,
        "depth": row.depth,
        "calls_done": done,
        "calls_planned": planned,
        "spent_micros": job_spend_micros(conn, job_id),
        "confirmed_max_micros": row.confirmed_max_micros,
        "planned_max_micros": row.planned_max_micros,
        "expected_ms": {"p50": row.expected_p50_ms, "p90": row.expected_p90_ms},
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": end.isoformat() if end else None,
        "elapsed_ms": int(((end or now) - row.started_at).total_seconds() * 1000) if row.started_at else 0,
        "cancel_requested": bool(row.cancel_requested),
        # The gateway process running it now (None when none does), and its last resume.
        "running_in": row.runner_instance_id,
        "resumed_at": row.resumed_at.isoformat() if row.resumed_at else None,
        "resumed_by": row.resumed_by,
        "resume_count": row.resume_count,
        "error": row.error,
        "steps": [
            {"name": s.name, "model": s.model, "status": s.status, "calls_planned": s.calls_planned, "error": s.error}
            for s in steps
        ],
        "report": f"/v1/research/jobs/{row.id}/report" if row.report is not None else None,
    }
