"""Running a research job: every model call through the gateway's own request lifecycle.

Each call is sent with ``Lifecycle.chat`` acting for the job's key by its id (the key's secret is
never stored, nor held by the runner), with the call's id as its request id, so it is checked,
held, routed, metered, settled and receipted like any request with that key, and its receipt is
found by that id. The runner adds what a job needs on top:

* a hard cap: before a call starts, its quote's maximum is reserved against the confirmed
  maximum, beside what the job already spent and what calls in flight reserved; a call that
  would pass it is never started, and the job ends ``capped``;
* a malformed map answer is retried once (a new call, a new id), then the step fails visibly;
* cancellation: the job's task is cancelled, so calls in flight end the way the gateway ends a
  cancelled request (hold voided, what was forwarded billed), and a partial report is written;
* one runner per job: a job is claimed by the process that runs it (``jobs.claim_job``: a
  conditional UPDATE naming the process's instance id, whose liveness lock and heartbeat are the
  lease), and a runner that finds the job claimed by another process stops at once: before a call,
  or when it would write a call's row or the job's ending (checked in that write's transaction);
* resume: a job is rebuilt from its rows. Its key is loaded by id and checked again (revoked,
  expired, a model no longer allowed: the job fails, saying why, with its receipts). A call
  already answered is not sent again; nor is a call the gateway charged before the process died,
  whose answer the settlement kept in its own transaction (``gateway.kept_answers``); any other
  call in flight when the process died is sent again under a new id (its hold is voided or expires).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio

from glasskey.errors import GlasskeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys.service import KeyRecord, check_usable, get_key
from glasskey.research import jobs
from glasskey.research.answers import MalformedAnswer, answer_text, claims_text, parse_map_answer
from glasskey.research.calls import CallSender, Pacer, write_owned
from glasskey.research.cap import Budget, CancelRequested, Capped, StepFailed, Superseded, first_expected
from glasskey.research.plan import MAP_PARALLELISM, PlannedCall, analysis_body
from glasskey.research.report import render_report
from glasskey.research.spec import JobSpec, Prepared, prepare
from glasskey.services import Services

log = logging.getLogger("glasskey.research")
MAP_TRIES = 2
INTERRUPTED = (
    "stopped when the process running it stopped; it resumes when a gateway starts with "
    "GLASSKEY_RESEARCH_RESUME_AT_STARTUP on, or with `glasskey research resume`"
)
# Jobs one round of the automatic resume takes up at most: a bound on what a start-up begins at once.
RESUME_ROUND_MAX = 8
# A test's hook between a call's settlement (committed) and the row that records its answer.
AfterSettlement = Callable[[str], Awaitable[None]]
# A test's hook between a call's last ownership check before sending (its row marked running) and its hold.
BeforeHold = Callable[[str], Awaitable[None]]


class JobRunner:
    """The research jobs running in this process, each an asyncio task found by its job id.

    ``after_settlement`` is for tests only: awaited with a call's id once the gateway settled the
    call and before the runner records its answer (a crash injected exactly there); ``before_hold``
    too: awaited with a call's id once its row is marked running, before the gateway takes its hold
    (a takeover injected exactly there)."""

    def __init__(
        self,
        services: Services,
        lifecycle: Lifecycle,
        *,
        after_settlement: AfterSettlement | None = None,
        before_hold: BeforeHold | None = None,
    ):
        self.services = services
        self.lifecycle = lifecycle
        self.after_settlement = after_settlement
        self.before_hold = before_hold
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, job_id: str) -> None:
        """Run a job this process already claimed (a new one is claimed by ``confirm_job``)."""
        task = asyncio.get_running_loop().create_task(self.run(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    def running(self, job_id: str) -> bool:
        return job_id in self._tasks

    async def resume(self, job_id: str) -> bool:
        """Claim an unfinished job that no live process runs, and run it here; whether it runs here."""
        if self.running(job_id):
            return True
        instance_id, now = self.services.instance_id, self.services.clock()
        if not await self._write(lambda conn: jobs.claim_job(conn, job_id, instance_id, now, resume=True)):
            return self.running(job_id)  # claimed meanwhile by another resume of this very process
        # Checked again after the claim's await, with no await before the start: two resumes asked of
        # this process at once (a person's and the automatic round) start one task.
        if not self.running(job_id):
            self.start(job_id)
            log.info("research job %s resumed by instance %s", job_id, instance_id)
        return True

    async def resume_interrupted(self) -> list[str]:
        """One round of the automatic resume: up to ``RESUME_ROUND_MAX`` jobs no live process runs.
        Each is claimed atomically, so of several processes doing this at once one takes each job."""
        instance_id, now = self.services.instance_id, self.services.clock()
        found = await self.lifecycle.read(lambda conn: jobs.resumable_jobs(conn, instance_id, now, RESUME_ROUND_MAX))
        return [job_id for job_id in found if not self.running(job_id) and await self.resume(job_id)]

    async def cancel(self, job_id: str, key_id: str | None) -> None:
        """Ask the job to stop (it is a row flag, seen by any process), and stop it here if it runs here."""
        await self._write(lambda conn: jobs.request_cancel(conn, job_id, key_id))
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])

    async def _write(self, fn: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            with self.services.db.write() as conn:
                return fn(conn)

        return await anyio.to_thread.run_sync(work)

    async def _key_refusal(self, row: Any) -> tuple[KeyRecord | None, str | None]:
        """The job's key, loaded by id and checked as a request would check it, or why it may not run."""
        try:
            key = await self.lifecycle.read(lambda conn: get_key(conn, row.key_id))
            check_usable(key, self.services.clock())
        except GlasskeyError as error:
            return None, f"{error.source}: {error.message}"
        for model in dict.fromkeys((row.quick_model, row.deep_model)):
            if not key.policy.allows(model):
                return None, f"model: the key {key.prefix} may no longer call {model} (policy.allowed_models)"
        return key, None

    # -- the run ------------------------------------------------------------------------

    async def run(self, job_id: str) -> None:
        """Run (or resume) a job this process claimed, acting for its key by the key's id."""
        row = await self.lifecycle.read(lambda conn: jobs.job_row(conn, job_id, None))
        files = await self.lifecycle.read(lambda conn: jobs.job_inputs(conn, job_id))
        spec = JobSpec(
            row.question,
            [f.id for f in files],
            row.quick_model,
            row.deep_model,
            row.depth,
            row.risk_free_rate,
            row.window_start,
            row.window_end,
        )
        prepared = prepare(spec, files)
        # A call left "running" was in flight in a process that died: answered if the gateway
        # charged it and kept its answer, else abandoned (its id is never sent again).
        instance_id = self.services.instance_id
        try:
            await write_owned(self.services, job_id, lambda conn: jobs.abandon_calls(conn, job_id))
        except Superseded:  # claimed by another process since this one's claim: its calls are its own
            log.warning("research job %s was claimed by another gateway process; not run here", job_id)
            return
        # The key may have been revoked, expired or narrowed since the job was confirmed.
        key, refusal = await self._key_refusal(row)
        if key is None:
            claims = await self._outputs_so_far(job_id)
            await self._finish(job_id, prepared, claims, None, "failed", f"not resumed: {refusal}")
            return
        spent = await self.lifecycle.read(lambda conn: jobs.job_spend_micros(conn, job_id))
        budget = Budget(row.confirmed_max_micros, spent)
        pacer = Pacer(key.policy.rpm_limit, self.services.monotonic)
        sender = CallSender(
            self.services, self.lifecycle, job_id, key, budget, pacer, self.after_settlement, self.before_hold
        )
        now = self.services.clock()
        status, note = "succeeded", ""
        outputs: list[dict[str, Any]] = []
        analysis: str | None = None
        try:
            await write_owned(
                self.services,
                job_id,
                lambda conn: jobs.set_job(conn, job_id, status="running", started_at=row.started_at or now, error=None),
            )
            if row.cancel_requested:
                raise asyncio.CancelledError
            await self._step(job_id, "read", "succeeded")
            outputs = await self._map(job_id, prepared, sender)
            await self._step(job_id, "metrics", "running")
            metrics = prepared.table.as_dict() if prepared.table is not None else None
            await write_owned(self.services, job_id, lambda conn: jobs.set_job(conn, job_id, metrics=metrics))
            await self._step(job_id, "metrics", "succeeded")
            analysis = await self._analysis(job_id, prepared, outputs, sender)
        except Superseded as superseded:  # another process runs the job now: it owns the rows
            log.warning("research job %s: %s; stopped here", job_id, superseded)
            return
        except Capped as capped:
            status, note = "capped", str(capped)
        except CancelRequested as cancelled:
            status, note = "cancelled", str(cancelled)
        except StepFailed as failed:
            status, note = "failed", str(failed)
        except GlasskeyError as error:  # e.g. the key or a model's permission changed mid-run
            status, note = "failed", f"{error.source}: {error.message}"
        except Exception:  # the job's task is an outermost edge: its failure must be visible on the job
            log.exception("research job %s failed", job_id)
            status, note = "failed", "internal error in the research runner (see the gateway's log)"
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                asked = await self.lifecycle.read(lambda conn: jobs.job_row(conn, job_id, None).cancel_requested)
                if asked:
                    note = "cancelled at the person's request"
                    await self._finish(job_id, prepared, outputs, analysis, "cancelled", note)
                else:  # the process is stopping, not the person: the job stays resumable, by anyone

                    def interrupted(conn: Any) -> None:
                        if jobs.owns_job(conn, job_id, instance_id):  # not a job another process took over
                            jobs.set_job(conn, job_id, status="interrupted", error=INTERRUPTED)
                            jobs.release_job(conn, job_id, instance_id)

                    await self._write(interrupted)
            raise
        await self._finish(job_id, prepared, outputs, analysis, status, note)

    async def _outputs_so_far(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self.lifecycle.read(lambda conn: jobs.job_calls(conn, job_id))
        return [dict(r.output) for r in rows if r.step == "map" and r.status == "succeeded"]

    async def _step(self, job_id: str, name: str, status: str, error: str | None = None) -> None:
        """Mark a step while the job is still this process's (else ``Superseded``)."""
        now = self.services.clock()
        values: dict[str, Any] = {"status": status, "error": error}
        values["started_at" if status == "running" else "finished_at"] = now

        def work(conn: Any) -> None:
            jobs.set_step(conn, job_id, name, **values)
            if status == "running":
                jobs.set_job(conn, job_id, step=name)

        await write_owned(self.services, job_id, work)

    async def _map(self, job_id: str, prepared: Prepared, sender: CallSender) -> list[dict[str, Any]]:
        planned = [c for c in prepared.plan.calls if c.step == "map"]
        await self._step(job_id, "map", "running")
        rows = await self.lifecycle.read(lambda conn: jobs.job_calls(conn, job_id))
        results: dict[int, dict[str, Any]] = {}
        failure: list[str] = []
        gate = anyio.Semaphore(MAP_PARALLELISM)

        async def one(call: PlannedCall) -> None:
            async with gate:
                if failure:
                    return
                tries = [r for r in rows if r.position == call.position]
                done = next((r for r in tries if r.status == "succeeded"), None)
                if done is not None:  # read before a crash: never sent again
                    results[call.position] = done.output
                    return
                failed = len([t for t in tries if t.status in ("malformed", "failed")])
                answered = next((r for r in tries if r.status == "answered"), None)
                if answered is not None:  # answered before a crash or a stop, not yet read: read it now
                    output = await self._read_map_answer(sender, call, answered.id, answered.output["answer"])
                    if output is not None:
                        results[call.position] = output
                        return
                    failed += 1
                for _ in range(MAP_TRIES - failed):
                    output = await self._map_call(sender, call, tries)
                    if output is not None:
                        results[call.position] = output
                        return
                failure.append(f"the map answer for {call.label} was malformed or failed {MAP_TRIES} times")

        try:
            async with anyio.create_task_group() as group:
                for call in planned:
                    group.start_soon(one, call)
        except BaseExceptionGroup as group_error:
            # One call's cap, refusal or failure ends the step; it is raised as itself, not as a group.
            first = first_expected(group_error)
            if first is None:
                raise
            if isinstance(first, Superseded):  # not this process's job any more: write nothing
                raise first from None
            ending = "cancelled" if isinstance(first, CancelRequested) else "failed"
            await self._step(job_id, "map", ending, str(first))
            raise first from None
        if failure:
            await self._step(job_id, "map", "failed", failure[0])
            raise StepFailed(f"step map failed: {failure[0]}")
        await self._step(job_id, "map", "succeeded")
        return [results[c.position] for c in planned]

    async def _map_call(self, sender: CallSender, call: PlannedCall, tries: list[Any]) -> dict[str, Any] | None:
        body = await sender.send(call, call.body, tries)
        if body is None:
            return None
        call_id = body.pop("_call_id")
        return await self._read_map_answer(sender, call, call_id, body)

    async def _read_map_answer(
        self, sender: CallSender, call: PlannedCall, call_id: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The claims of one answer, recorded on its call (succeeded, or malformed with why) while the
        job is still this process's (else ``Superseded``)."""
        try:
            parsed = parse_map_answer(answer_text(body))
        except MalformedAnswer as exc:
            why = str(exc)[:2000]
            with anyio.CancelScope(shield=True):
                await sender.write_owned(lambda conn: jobs.set_call(conn, call_id, status="malformed", error=why))
            return None
        output = {"document": call.document, "chunk": call.chunk, **parsed}
        with anyio.CancelScope(shield=True):
            await sender.write_owned(lambda conn: jobs.set_call(conn, call_id, status="succeeded", output=output))
        return output

    async def _analysis(
        self, job_id: str, prepared: Prepared, outputs: list[dict[str, Any]], sender: CallSender
    ) -> str:
        call = next(c for c in prepared.plan.calls if c.step == "analysis")
        await self._step(job_id, "analysis", "running")
        rows = await self.lifecycle.read(lambda conn: jobs.job_calls(conn, job_id))
        tries = [r for r in rows if r.position == call.position]
        done = next((r for r in tries if r.status == "succeeded"), None)
        if done is not None:
            await self._step(job_id, "analysis", "succeeded")
            return str(done.output["text"])
        answered = next((r for r in tries if r.status == "answered"), None)
        if answered is not None:  # answered before a crash or a stop, not yet read: read it, never resend
            answer, call_id = dict(answered.output["answer"]), str(answered.id)
        else:
            claims = claims_text(outputs, prepared.plan.claims_bytes_max)
            body = analysis_body(call.model, prepared.plan.question, prepared.figures, claims)
            try:
                sent = await sender.send(call, body, tries)
            except Capped as capped:
                await self._step(job_id, "analysis", "failed", str(capped))
                raise
            if sent is None:
                await self._step(job_id, "analysis", "failed", "the deep model's call failed")
                raise StepFailed("step analysis failed: the deep model's call failed (see its receipt)")
            answer, call_id = sent, sent.pop("_call_id")
        try:
            text = answer_text(answer)
        except MalformedAnswer as exc:
            await self._step(job_id, "analysis", "failed", str(exc))
            raise StepFailed(f"step analysis failed: {exc}") from None
        with anyio.CancelScope(shield=True):
            await sender.write_owned(
                lambda conn: jobs.set_call(conn, call_id, status="succeeded", output={"text": text})
            )
        await self._step(job_id, "analysis", "succeeded")
        return text

    async def _finish(
        self,
        job_id: str,
        prepared: Prepared,
        outputs: list[dict[str, Any]],
        analysis: str | None,
        status: str,
        note: str,
    ) -> None:
        now, instance_id = self.services.clock(), self.services.instance_id

        def work(conn: Any) -> bool:
            # A process taken for dead while only stalled ends nothing: the job is its taker's.
            if not jobs.owns_job(conn, job_id, instance_id):
                return False
            row = jobs.job_row(conn, job_id, None)
            receipts = jobs.job_receipts(conn, job_id)
            report = render_report(
                job=row, table=prepared.table, claims=outputs, analysis=analysis, receipts=receipts,
                status=status, note=note, risk_free_rate=Decimal(row.risk_free_rate),
            )  # fmt: skip
            jobs.set_job(
                conn, job_id, status=status, error=note or None, analysis=analysis, report=report, finished_at=now,
                step=None,
            )  # fmt: skip
            jobs.close_steps(conn, job_id, status, now)
            jobs.set_step(conn, job_id, "report", status="succeeded", error=None, finished_at=now)
            jobs.release_job(conn, job_id, instance_id)
            return True

        if not await self._write(work):
            log.warning("research job %s was claimed by another gateway process; not ended here", job_id)
