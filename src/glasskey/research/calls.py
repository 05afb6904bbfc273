"""Sending one model call of a research job: under the cap, with an id never sent twice.

``CallSender`` quotes the call's real body, reserves its maximum against the job's ``Budget``,
marks the call row, sends it with ``Lifecycle.chat`` acting for the job's key by its id (the call's
id is the request id, the endpoint ``research``), and records what the gateway charged. The
gateway keeps the answer with the charge, in the settlement's transaction
(``gateway.kept_answers``), so a crash before the call's row records it loses nothing and pays
nothing twice. A refusal of the key, the wallet or a budget ends the step; any other failure is
returned for a retry.

Every write of a call's row is made only while the job is still this process's, checked in the
same transaction (``jobs.owns_job`` locks the job's row, so a takeover's claim waits for it): a
process taken for dead while only stalled, whose call answers after another process took the job
over, writes nothing for it (that call charged nothing: its hold was voided before the takeover)
and stops (``Superseded``).

The call's hold carries the same check (``JobOwned``, the hold's ``Precondition``), made in the
hold's own transaction: a process that passed its last check just before a takeover and reaches
the hold just after it is refused the hold, so that call charges nothing. The claim locks the
job's row before it looks for the owner's pending holds (``jobs.claim_job``), so either the hold
commits first and the claim sees it (and waits for it to be voided), or the claim commits first
and the hold sees the new owner.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
import orjson

from glasskey.errors import GatewayError, GlasskeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.outcomes import JSONOutcome
from glasskey.keys.service import KeyRecord
from glasskey.pricing.quote import quote_request
from glasskey.research import jobs
from glasskey.research.cap import Budget, CancelRequested, StepFailed, Superseded
from glasskey.research.plan import PlannedCall
from glasskey.services import Services
from glasskey.store.batch import Batch

ENDPOINT = "research"
WINDOW_SECONDS = 60.0  # the rate limiter's window: requests per minute


async def write_owned(services: Services, job_id: str, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn`` in a transaction that first checks the job is still this process's, and raise
    ``Superseded`` (writing nothing) when another process claimed it."""
    instance_id = services.instance_id

    def work() -> Any:
        with services.db.write() as conn:
            if not jobs.owns_job(conn, job_id, instance_id):
                raise Superseded("the job was claimed by another gateway process")
            return fn(conn)

    return await anyio.to_thread.run_sync(work)


@dataclass(frozen=True)
class JobOwned:
    """A research call's hold precondition (``gateway.accounting.Precondition``): the job is still
    ``instance_id``'s, its row locked until the hold's transaction ends (``jobs.owns_job``)."""

    job_id: str
    instance_id: str

    def check(self, batch: Batch) -> GlasskeyError | None:
        if jobs.owns_job(batch.conn, self.job_id, self.instance_id):
            return None
        return GatewayError(
            f"research job {self.job_id} was taken over by another gateway process; this process's call is "
            "not sent and charges nothing (the job goes on there)",
            code="job_taken_over",
        )


@dataclass
class Pacer:
    """The job's own calls kept within the key's requests-per-minute limit: it waits its turn
    rather than be refused (another client of the same key can still take the turn first)."""

    rpm_limit: int | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    sent: deque[float] = field(default_factory=deque)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def wait_turn(self) -> None:
        if not self.rpm_limit:  # no limit; a limit of 0 refuses every call anyway, and says so
            return
        async with self.lock:
            while True:
                now = self.clock()
                while self.sent and self.sent[0] <= now - WINDOW_SECONDS:
                    self.sent.popleft()
                if len(self.sent) < self.rpm_limit:
                    break
                await self.sleep(self.sent[0] + WINDOW_SECONDS - now)
            self.sent.append(self.clock())


@dataclass
class CallSender:
    services: Services
    lifecycle: Lifecycle
    job_id: str
    key: KeyRecord
    budget: Budget
    pacer: Pacer
    # Tests only: awaited with the call's id between its settlement and the row recording its answer.
    after_settlement: Callable[[str], Awaitable[None]] | None = None
    # Tests only: awaited with the call's id between its row marked running (owned) and its hold.
    before_hold: Callable[[str], Awaitable[None]] | None = None

    async def write_owned(self, fn: Callable[[Any], Any]) -> Any:
        return await write_owned(self.services, self.job_id, fn)

    async def send(self, call: PlannedCall, body: dict[str, Any], tries: list[Any]) -> dict[str, Any] | None:
        """One call under the cap; the answer body (with ``_call_id``), or None when the gateway refused it."""
        await self.pacer.wait_turn()
        # The row is read before every call, so a cancel asked through any process stops the job,
        # and a process taken for dead whose job another claimed stops before sending anything more.
        row = await self.lifecycle.read(lambda conn: jobs.job_row(conn, self.job_id, None))
        if row.runner_instance_id != self.services.instance_id:
            raise Superseded(f"the job is claimed by gateway instance {row.runner_instance_id}")
        if row.cancel_requested:
            raise CancelRequested("cancelled at the person's request")
        now = self.services.clock()
        quote, _ = await self.lifecycle.read(
            lambda conn: quote_request(conn, self.key, body, now, board=self.services.health)
        )
        maximum = quote.max_charge_micros
        await self.budget.reserve(maximum, call.label)
        try:
            # Shielded: a cancel arriving while the row is marked running would otherwise leave it
            # running with nobody to end it; once it has its id, the call's own ending below runs.
            with anyio.CancelScope(shield=True):
                call_id = await self._start_call(call, tries, maximum, now)
        except BaseException:
            self.budget.settle(maximum, 0)
            raise
        raw = orjson.dumps(body)
        try:
            if self.before_hold is not None:
                await self.before_hold(call_id)
            outcome = await self._chat(call_id, raw)
        except GlasskeyError as error:
            charged = await self.lifecycle.read(lambda conn: jobs.receipt_charge(conn, call_id))
            self.budget.settle(maximum, charged)
            why = f"{error.source}: {error.message}"[:2000]
            finished = self.services.clock()
            await self.write_owned(
                lambda conn: jobs.set_call(
                    conn, call_id, status="failed", charge_micros=charged, error=why, finished_at=finished
                )
            )
            if error.source in ("key", "wallet", "budget"):
                raise StepFailed(f"{call.label}: refused by the gateway ({error.source}): {error.message}") from None
            return None
        except BaseException:
            # Cancelled (or a bug): the lifecycle already voided the hold and wrote the receipt, or
            # had settled the call just before (then its answer was kept with the charge: the call
            # is answered, and a resume reads it rather than pay for it again).
            with anyio.CancelScope(shield=True):
                charged = await self.lifecycle.read(lambda conn: jobs.receipt_charge(conn, call_id))
                self.budget.settle(maximum, charged)
                # Taken over meanwhile: the taker settles the call's row; the cancellation goes on.
                with contextlib.suppress(Superseded):
                    await self.write_owned(lambda conn: jobs.end_call_cut_short(conn, call_id, charged))
            raise
        assert isinstance(outcome, JSONOutcome)
        charged = int(outcome.headers.get("x-glasskey-charge-micros", "0"))
        answer = outcome.body
        if self.after_settlement is not None:
            await self.after_settlement(call_id)
        # Kept whatever happens next (a cancel, a crash after it): an answered call is read from
        # its row, never sent again. Not written if the job was taken over meanwhile (Superseded).
        with anyio.CancelScope(shield=True):
            self.budget.settle(maximum, charged)
            finished = self.services.clock()
            await self.write_owned(
                lambda conn: jobs.set_call(
                    conn, call_id, status="answered", charge_micros=charged, finished_at=finished,
                    output={"answer": answer},
                )
            )  # fmt: skip
        return {**answer, "_call_id": call_id}

    async def _start_call(self, call: PlannedCall, tries: list[Any], maximum: int, now: datetime) -> str:
        """The call's id, marked running while the job is still this process's (else ``Superseded``,
        nothing written): the planned call's id if it was never sent; otherwise a new try, so no id
        is sent twice."""
        fresh = next((t for t in tries if t.status == "planned"), None)
        number = max((t.try_number for t in tries), default=0) + 1

        def start(conn: Any) -> str:
            if fresh is not None:
                call_id = str(fresh.id)
                jobs.set_call(conn, call_id, max_charge_micros=maximum)
            else:
                call_id = jobs.insert_call(conn, self.job_id, call, maximum, try_number=number)
            jobs.set_call(conn, call_id, status="running", started_at=now)
            return call_id

        call_id: str = await self.write_owned(start)
        if fresh is not None:
            tries[tries.index(fresh)] = _Try(call_id, fresh.try_number, "sent")
        else:
            tries.append(_Try(call_id, number, "sent"))
        return call_id

    def _chat(self, call_id: str, raw: bytes) -> Awaitable[Any]:
        async def read_body() -> bytes:
            return raw

        # Receipts of the job's calls say endpoint "research", so they can be told from a person's own.
        # The hold is taken only while the job is still this process's, checked in its own transaction.
        owned = JobOwned(self.job_id, self.services.instance_id)
        return self.lifecycle.chat(
            call_id,
            None,
            read_body,
            endpoint=ENDPOINT,
            acting_for=self.key.id,
            keep_answer=True,
            hold_precondition=owned,
        )


@dataclass
class _Try:
    id: str
    try_number: int
    status: str
    position: int = -1
