"""Resuming a job acting for its key by id: one process per job, no call charged twice, refusals visible.

In-process, on SQLite and PostgreSQL: a crash injected exactly between a call's settlement (its
charge, receipt and kept answer committed) and the row that records its answer; a key revoked
before the resume; two processes claiming one job at once; a job whose process's liveness lock
stayed free claimed at once; a stalled process whose job was taken over while its call was in
flight, or just before its call's hold; the automatic resume's round.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import select, text, update
from starlette.testclient import TestClient

from conftest_helpers import make_settings
from gateway.test_accounting import run as run_command
from gateway_fixtures import seed
from glasskey.app import build_app
from glasskey.gateway import instances, liveness
from glasskey.gateway.accounting import Held, Hold
from glasskey.gateway.kept_answers import kept_answer
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys.service import find_by_public_id, revoke_key
from glasskey.ledger import SYSTEM_REVENUE, audit
from glasskey.orgs.service import get_wallet
from glasskey.providers.simulated import SimulatedProvider
from glasskey.research import jobs
from glasskey.research.confirm import confirm_job
from glasskey.research.demo import QUESTION, SAMPLES, sample_bytes
from glasskey.research.preflight import preflight
from glasskey.research.runner import JobRunner
from glasskey.research.spec import JobSpec, prepare
from glasskey.services import Services, build_services
from glasskey.store.tables import receipts, routes, transfers
from research_helpers import auth


class Crash(BaseException):
    """The process dying at the injected point: nothing after it runs, nothing catches it."""


def new_job(services: Services, key: str) -> str:
    with services.db.write() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        now = services.clock()
        files = [jobs.store_file(conn, record.id, name, sample_bytes(name), now) for name in SAMPLES]
        spec = JobSpec.parse({"question": QUESTION, "inputs": [f.id for f in files], "depth": "quick"})
        prepared = prepare(spec, files)
        checked = preflight(conn, record, prepared, services.health, now)
        maximum = checked["cost"]["max_micros"]
        return confirm_job(conn, record, prepared, checked, maximum, now, instance_id=services.instance_id)


def crash_hook(services: Services, job_id: str, step: str):
    """A hook that dies after the gateway settled the job's first call of ``step`` still to send."""
    with services.db.read() as conn:
        target = next(c.id for c in jobs.job_calls(conn, job_id) if c.step == step and c.status == "planned")

    async def after_settlement(call_id: str) -> None:
        if call_id == target:
            raise Crash

    return after_settlement


def died_of_the_crash(error: BaseException) -> bool:
    return isinstance(error, Crash) or (isinstance(error, BaseExceptionGroup) and bool(error.subgroup(Crash)))


def crash_after_settling(services: Services, job_id: str, step: str) -> None:
    """Run the job until the gateway settled its first call of ``step``, and die there."""
    runner = JobRunner(services, Lifecycle(services), after_settlement=crash_hook(services, job_id, step))
    with pytest.raises(BaseException) as raised:
        anyio.run(runner.run, job_id)
    assert died_of_the_crash(raised.value)


def charges_by_call(services: Services, job_id: str) -> dict[str, list[int]]:
    """Every posted charge of the job's calls, by call id."""
    with services.db.read() as conn:
        ids = [c.id for c in jobs.job_calls(conn, job_id)]
        rows = conn.execute(
            select(transfers.c.request_id, transfers.c.posted_amount_micros).where(
                transfers.c.request_id.in_(ids), transfers.c.status == "posted", transfers.c.kind == "charge"
            )
        )
        found: dict[str, list[int]] = {}
        for row in rows:
            found.setdefault(row.request_id, []).append(row.posted_amount_micros)
    return found


def audit_clean(services: Services) -> None:
    with services.db.read() as conn:
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros


def run_resumed(services: Services, job_id: str, crash_at: str | None = None) -> bool | type[Crash]:
    """Claim the job as a resume and run it to its end in this process: whether the claim was won
    (``Crash`` when ``crash_at`` names a step where it died)."""
    hook = crash_hook(services, job_id, crash_at) if crash_at else None

    async def go() -> bool | type[Crash]:
        runner = JobRunner(services, Lifecycle(services), after_settlement=hook)
        claimed = await runner.resume(job_id)
        task = runner._tasks.get(job_id)
        if task is not None:
            try:
                await task
            except BaseException as error:
                if not died_of_the_crash(error):
                    raise
                return Crash
        return claimed

    return anyio.run(go)


def hold_taken_by(services: Services, key: str, instance_id: str) -> None:
    """A pending hold of ``key``'s wallet, taken by the process ``instance_id`` (its call in flight)."""
    with services.db.read() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        wallet = get_wallet(conn, record.org_id, "routed").account_id
    now = services.clock()
    hold = Hold(
        key_id=record.id, policy=record.policy, wallet_kind="routed", wallet_account_id=wallet,
        revenue_account_id=SYSTEM_REVENUE["routed"], amount_micros=1_000, now=now,
        expires_at=now + timedelta(minutes=15), request_id="req_in_flight", memo="hold for gpt-4o-mini",
        instance_id=instance_id,
    )  # fmt: skip
    assert isinstance(run_command(services.db, hold), Held)


def status_of(services: Services, job_id: str) -> dict[str, Any]:
    with services.db.read() as conn:
        return jobs.job_status(conn, job_id, None, services.clock())


@pytest.fixture
def sqlite_world(tmp_path):
    """The runner's own logic, which no database changes: on SQLite only, to keep the file fast."""
    settings = make_settings(tmp_path)
    services = build_services(settings)
    seeded = seed(services)
    yield settings, services, seeded["routed_key"]
    services.close()


@pytest.fixture
def world(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    seeded = seed(services)
    yield settings, services, seeded["routed_key"]
    services.close()


def test_a_crash_between_a_calls_settlement_and_its_row_neither_resends_nor_recharges_it(world):
    settings, services, key = world
    job_id = new_job(services, key)
    crashed: list[str] = []
    charged: dict[str, int] = {}
    # Two crashes: the process that created the job dies after a map call's settlement; the one
    # that resumes it (another instance id) dies after the analysis call's.
    for step in ("map", "analysis"):
        process = build_services(settings) if crashed else services
        try:
            if crashed:
                assert run_resumed(process, job_id, crash_at=step) is Crash
            else:
                crash_after_settling(process, job_id, step)
            with process.db.read() as conn:
                call = next(c for c in jobs.job_calls(conn, job_id) if c.step == step and c.status == "running")
                receipt = conn.execute(select(receipts).where(receipts.c.request_id == call.id)).one()
        finally:
            if process is not services:
                process.close()
        # The crash came after the charge and before the call's row said so: exactly the gap.
        assert receipt.status == "succeeded" and receipt.charge_micros > 0
        crashed.append(call.id)
        charged[call.id] = receipt.charge_micros

    restarted = build_services(settings)
    try:
        assert run_resumed(restarted, job_id)
        done = status_of(restarted, job_id)
        with restarted.db.read() as conn:
            calls = jobs.job_calls(conn, job_id)
    finally:
        restarted.close()
    assert done["status"] == "succeeded", done
    assert done["resumed_by"] == restarted.instance_id and done["resume_count"] == 2 and done["resumed_at"]
    assert done["running_in"] is None
    for call_id in crashed:  # read back from the kept answer, with the charge it had
        row = next(c for c in calls if c.id == call_id)
        assert row.status == "succeeded" and row.charge_micros == charged[call_id]
        assert [c.id for c in calls if (c.step, c.position) == (row.step, row.position)] == [call_id]
    # Exactly one charge per planned call, and the ledger agrees with the receipts.
    charges = charges_by_call(services, job_id)
    assert all(len(amounts) == 1 for amounts in charges.values()), charges
    paid = [(c.step, c.position) for c in calls if c.id in charges]
    assert sorted(paid) == sorted({(c.step, c.position) for c in calls})
    assert done["spent_micros"] == sum(a for amounts in charges.values() for a in amounts)
    audit_clean(services)


def test_a_job_whose_key_was_revoked_is_not_resumed_and_fails_with_its_receipts(sqlite_world):
    settings, services, key = sqlite_world
    job_id = new_job(services, key)
    crash_after_settling(services, job_id, "analysis")
    with services.db.write() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        revoke_key(conn, record.id, services.clock())
    before = charges_by_call(services, job_id)
    restarted = build_services(settings)  # another process: another instance id
    try:
        # The crashed process's claim stands for itself: it never takes its own job twice.
        assert anyio.run(JobRunner(services, Lifecycle(services)).resume, job_id) is False
        assert run_resumed(restarted, job_id)
    finally:
        restarted.close()
    done = status_of(services, job_id)
    assert done["status"] == "failed" and done["error"].startswith("not resumed: key: API key gk-")
    assert "revoked" in done["error"]
    assert charges_by_call(services, job_id) == before  # nothing sent with the revoked key
    with services.db.read() as conn:
        report = jobs.job_row(conn, job_id, None).report
    # The receipts of the three calls charged before the crash stay on the report.
    assert len(report["receipts"]) == 3 and report["total_charge_micros"] == done["spent_micros"] > 0
    audit_clean(services)


def test_of_processes_claiming_one_job_at_once_exactly_one_wins(world, database_url):
    # Several processes share a database only on PostgreSQL (`serve --workers` refuses SQLite, and
    # on SQLite a starting process takes every other instance for dead).
    if not database_url.startswith("postgresql"):
        pytest.skip("one process serves a SQLite file")
    _, services, key = world
    job_id = new_job(services, key)
    now = services.clock()
    with services.db.write() as conn:
        jobs.set_job(conn, job_id, status="interrupted", runner_instance_id=None)
        claimers = [f"inst_claim_{n}" for n in range(6)]
        for instance_id in claimers:
            instances.register(conn, instance_id, now)
    barrier = threading.Barrier(len(claimers))
    won: list[str] = []

    def claim(instance_id: str) -> None:
        barrier.wait()
        with services.db.write() as conn:
            if jobs.claim_job(conn, job_id, instance_id, now, resume=True):
                won.append(instance_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    status = status_of(services, job_id)
    assert status["running_in"] == won[0] == status["resumed_by"] and status["resume_count"] == 1
    # The winner is alive: nobody else may take the job, not even through the automatic round.
    with services.db.write() as conn:
        assert jobs.resumable_jobs(conn, "inst_claim_other", now, 10) == []
        assert not jobs.claim_job(conn, job_id, "inst_claim_other", now, resume=True)
    # A person asking another process to resume it is told where it runs.
    refused = TestClient(build_app(services)).post(f"/v1/research/jobs/{job_id}/resume", headers=auth(key))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_running"
    assert won[0] in refused.json()["error"]["message"]
    # Once the winner has missed its heartbeats (hung, its liveness lock still held), another process
    # may take the job over, but only once the winner's holds are voided (a heartbeat's recovery):
    # its call in flight then charges nothing if it ever settles, instead of being paid beside the retry.
    hold_taken_by(services, key, won[0])
    later = now + timedelta(seconds=instances.HEARTBEAT_SECONDS * (instances.DEAD_AFTER_BEATS + 1))
    with services.db.write() as conn:
        instances.beat(conn, "inst_claim_other", later)
        assert jobs.resumable_jobs(conn, "inst_claim_other", later, 10) == []
        assert not jobs.claim_job(conn, job_id, "inst_claim_other", later, resume=True)
    assert instances.void_all(services.db, "inst_claim_other", later) == 1
    with services.db.write() as conn:
        assert jobs.resumable_jobs(conn, "inst_claim_other", later, 10) == [job_id]
        assert jobs.claim_job(conn, job_id, "inst_claim_other", later, resume=True)
    assert status_of(services, job_id)["resume_count"] == 2


def test_the_automatic_round_takes_up_a_job_whose_process_died_once(world):
    _, services, key = world
    job_id = new_job(services, key)
    now = services.clock()
    with services.db.write() as conn:
        instances.register(conn, services.instance_id, now)
        instances.register(conn, "inst_dead", now - timedelta(minutes=5))
        jobs.set_job(conn, job_id, status="running", runner_instance_id="inst_dead")

    async def rounds() -> tuple[list[str], list[str]]:
        runner = JobRunner(services, Lifecycle(services))
        # The round and a person's resume at once, in one process: one task runs the job.
        resumed, by_hand = await asyncio.gather(runner.resume_interrupted(), runner.resume(job_id))
        assert by_hand and len(runner._tasks) == 1
        while runner.running(job_id):
            await anyio.sleep(0.01)
        return resumed, await runner.resume_interrupted()  # finished: nothing left to take up

    first, second = anyio.run(rounds)
    assert first in ([job_id], []) and second == []
    done = status_of(services, job_id)
    assert done["status"] == "succeeded" and done["resumed_by"] == services.instance_id
    assert done["resume_count"] in (1, 2) and done["running_in"] is None
    assert all(len(amounts) == 1 for amounts in charges_by_call(services, job_id).values())
    audit_clean(services)


def test_a_process_whose_job_was_taken_over_stops_before_its_next_call(sqlite_world):
    _, services, key = sqlite_world
    job_id = new_job(services, key)

    async def taken_over(call_id: str) -> None:  # another process claims the job while this one runs it
        with services.db.write() as conn:
            jobs.set_job(conn, job_id, runner_instance_id="inst_taker")

    anyio.run(JobRunner(services, Lifecycle(services), after_settlement=taken_over).run, job_id)
    status = status_of(services, job_id)
    # It wrote nothing more: the job is the taker's, still running, and its analysis was never sent.
    assert status["status"] == "running" and status["running_in"] == "inst_taker"
    with services.db.read() as conn:
        analysis = [c for c in jobs.job_calls(conn, job_id) if c.step == "analysis"]
    assert [c.status for c in analysis] == ["planned"] and analysis[0].id not in charges_by_call(services, job_id)
    audit_clean(services)


def test_a_job_whose_processs_liveness_lock_stayed_free_is_claimed_at_once(world, database_url):
    # PostgreSQL: the owner's heartbeat is fresh, yet its advisory lock free at two checks (its
    # connections closed with it: killed) lets another process take the job without waiting 30 s.
    if not database_url.startswith("postgresql"):
        pytest.skip("one process serves a SQLite file: every other is dead already")
    _, services, key = world
    job_id = new_job(services, key)
    now = services.clock()
    owner = liveness.LivenessLock(services.db, "inst_owner")
    taker = liveness.LivenessLock(services.db, "inst_taker")
    owner.hold()
    taker.hold()
    with services.db.write() as conn:
        for instance_id in ("inst_owner", "inst_taker"):
            instances.register(conn, instance_id, now)
        jobs.set_job(conn, job_id, status="running", runner_instance_id="inst_owner")

    def claim() -> bool:
        with services.db.write() as conn:
            return jobs.claim_job(conn, job_id, "inst_taker", now, resume=True)

    watch = liveness.Watch()
    try:
        liveness.check(services.db, taker, watch, "inst_taker", now, 10.0)
        assert not claim()  # alive: its lock is held
        owner.release()  # killed: its session ends, and its lock with it
        for _ in range(250):  # the server ends the session a moment after the client hung up
            if taker.free(["inst_owner"]):
                break
            time.sleep(0.02)
        liveness.check(services.db, taker, watch, "inst_taker", now, 11.0)
        assert not claim()  # free at one check only: a PostgreSQL restart looks the same
        liveness.check(services.db, taker, watch, "inst_taker", now, 12.0)
        assert claim()  # free a second later: dead, at the same wall-clock time, heartbeats unaged
    finally:
        taker.release()
    status = status_of(services, job_id)
    assert status["running_in"] == "inst_taker" and status["resume_count"] == 1


def test_a_stalled_process_whose_job_was_taken_over_writes_nothing_for_its_call_in_flight(world):
    """The edge case of a process taken for dead while only stalled: its analysis call is in
    flight when another process voids its hold and takes the job over. Its answer arrives after:
    charged nothing, and its row stays as the taker left it, beside the taker's own try."""
    settings, services, key = world
    with services.db.write() as conn:  # only the deep model's call waits on the upstream: the stall is there
        conn.execute(update(routes).where(routes.c.model == "claude-sonnet-4-5").values(options={"latency_ms": 1}))
    job_id = new_job(services, key)
    taker = build_services(settings)  # another process: another instance id
    now = services.clock()
    with services.db.write() as conn:
        instances.register(conn, services.instance_id, now)
        instances.register(conn, taker.instance_id, now)
    stalled: list[str] = []

    async def stall(seconds: float) -> None:
        def take_over() -> None:  # what the taker does on finding this process dead, in its order
            # The hold is answered before its commit (PostgreSQL's pipeline): a real stall outlasts it.
            for _ in range(250):
                with taker.db.read() as conn:
                    if conn.execute(select(transfers.c.id).where(transfers.c.status == "pending")).first():
                        break
                time.sleep(0.02)
            taken_at = taker.clock()
            assert instances.void_all(taker.db, taker.instance_id, taken_at, also_dead={services.instance_id}) == 1
            with taker.db.write() as conn:
                assert jobs.claim_job(conn, job_id, taker.instance_id, taken_at, resume=True)
                assert jobs.abandon_calls(conn, job_id) == 1
                stalled.extend(c.id for c in jobs.job_calls(conn, job_id) if c.status == "abandoned")

        await anyio.to_thread.run_sync(take_over)

    services.providers["simulated"] = SimulatedProvider(sleep=stall)
    try:
        anyio.run(JobRunner(services, Lifecycle(services)).run, job_id)  # stops by itself, superseded
        assert len(stalled) == 1
        with services.db.read() as conn:
            row = next(c for c in jobs.job_calls(conn, job_id) if c.id == stalled[0])
            receipt = conn.execute(select(receipts).where(receipts.c.request_id == row.id)).one()
            assert kept_answer(conn, row.id) is None
        # The stalled process's answer came after its hold was voided: charged nothing, and not
        # written on the call's row, which the taker marked abandoned.
        assert receipt.status == "interrupted" and receipt.charge_micros == 0
        assert (row.step, row.status, row.output) == ("analysis", "abandoned", None)
        assert status_of(services, job_id)["running_in"] == taker.instance_id
        anyio.run(JobRunner(taker, Lifecycle(taker)).run, job_id)  # the taker runs it to its end
        done = status_of(taker, job_id)
        with taker.db.read() as conn:
            analysis = [(c.try_number, c.status) for c in jobs.job_calls(conn, job_id) if c.step == "analysis"]
    finally:
        taker.close()
    assert done["status"] == "succeeded" and done["calls_done"] == done["calls_planned"], done
    assert analysis == [(1, "abandoned"), (2, "succeeded")]
    assert all(len(amounts) == 1 for amounts in charges_by_call(services, job_id).values())
    audit_clean(services)


def test_a_stalled_process_reaching_its_hold_just_after_a_takeover_is_refused_it_and_charges_nothing(world):
    """The narrowest window: a process passed its last ownership check before a call (the call's row
    marked running) just before another process took its job over, and reaches the call's hold just
    after. The hold checks the owner in its own transaction and is refused: nothing is held or
    charged for that try, and the planned call is charged once, by the taker's try."""
    settings, services, key = world
    job_id = new_job(services, key)
    taker = build_services(settings)  # another process: another instance id
    now = services.clock()
    with services.db.write() as conn:
        instances.register(conn, services.instance_id, now)
        instances.register(conn, taker.instance_id, now)
    taken: list[str] = []

    async def take_over(call_id: str) -> None:  # exactly between the ownership check and the hold
        with services.db.read() as conn:
            step = next(c.step for c in jobs.job_calls(conn, job_id) if c.id == call_id)
        if step != "analysis":
            return

        def claim() -> None:  # what the taker does on finding this process dead, in its order
            taken_at = taker.clock()
            assert instances.void_all(taker.db, taker.instance_id, taken_at, also_dead={services.instance_id}) == 0
            with taker.db.write() as conn:
                assert jobs.claim_job(conn, job_id, taker.instance_id, taken_at, resume=True)
                assert jobs.abandon_calls(conn, job_id) == 1
            taken.append(call_id)

        await anyio.to_thread.run_sync(claim)

    try:
        anyio.run(JobRunner(services, Lifecycle(services), before_hold=take_over).run, job_id)  # stops, superseded
        assert len(taken) == 1
        with services.db.read() as conn:
            receipt = conn.execute(select(receipts).where(receipts.c.request_id == taken[0])).one()
            held = list(conn.execute(select(transfers.c.id).where(transfers.c.request_id == taken[0])))
        # Refused at the hold: no transfer at all for that try, its receipt a charge of nothing.
        assert held == [] and receipt.charge_micros == 0
        assert (receipt.status, receipt.error_source, receipt.error_code) == ("failed", "gateway", "job_taken_over")
        anyio.run(JobRunner(taker, Lifecycle(taker)).run, job_id)  # the taker runs it to its end
        done = status_of(taker, job_id)
        with taker.db.read() as conn:
            analysis = [(c.try_number, c.status) for c in jobs.job_calls(conn, job_id) if c.step == "analysis"]
    finally:
        taker.close()
    assert done["status"] == "succeeded" and done["calls_done"] == done["calls_planned"], done
    assert analysis == [(1, "abandoned"), (2, "succeeded")]
    # Exactly one charge per planned call: the refused try has none, every other call one.
    charges = charges_by_call(services, job_id)
    assert taken[0] not in charges and len(charges) == done["calls_planned"] == 3
    assert all(len(amounts) == 1 for amounts in charges.values())
    audit_clean(services)


def test_a_hold_that_got_in_before_a_claim_keeps_the_job_unclaimable_until_it_is_voided(world, database_url):
    """The other order, on PostgreSQL: the stalled process's hold checked the owner (locking the job's
    row) just before the claim. The claim waits for that hold's commit and then sees its pending
    hold, so it does not take the job while the call could still settle beside the taker's retry."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises the two transactions whole")
    from glasskey.research.calls import JobOwned
    from glasskey.store.batch import Batch

    _, services, key = world
    job_id = new_job(services, key)
    with services.db.write() as conn:  # run by a process taken for dead: its heartbeat an hour old
        instances.register(conn, "inst_stalled", services.clock() - timedelta(hours=1))
        jobs.set_job(conn, job_id, status="running", runner_instance_id="inst_stalled")
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        wallet = get_wallet(conn, record.org_id, "routed").account_id
    now = services.clock()
    claimed: list[bool] = []

    def claim() -> None:
        with services.db.write() as conn:
            claimed.append(jobs.claim_job(conn, job_id, "inst_taker", now, resume=True))

    with services.db.write() as conn:
        hold = Hold(
            key_id=record.id, policy=record.policy, wallet_kind="routed", wallet_account_id=wallet,
            revenue_account_id=SYSTEM_REVENUE["routed"], amount_micros=1_000, now=now,
            expires_at=now + timedelta(minutes=15), request_id="req_in_flight", memo="hold for gpt-4o-mini",
            instance_id="inst_stalled", precondition=JobOwned(job_id, "inst_stalled"),
        )  # fmt: skip
        batch = Batch.now(conn)
        hold.send(batch)
        assert isinstance(hold.finish(batch), Held)
        claimer = threading.Thread(target=claim)
        claimer.start()
        for _ in range(250):  # the claim is blocked on the job's row, locked by the hold's check
            with services.db.read() as watcher:
                waiting = watcher.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q"),
                    {"q": "%research_jobs%"},
                )
            if waiting:
                break
            time.sleep(0.02)
        assert waiting and not claimed
    claimer.join(timeout=10)
    assert claimed == [False]  # it saw the hold committed before it looked
    assert instances.void_all(services.db, "inst_taker", now) == 1  # its heartbeat's recovery
    with services.db.write() as conn:
        assert jobs.claim_job(conn, job_id, "inst_taker", now, resume=True)  # voided: now it may
    audit_clean(services)


def test_a_process_whose_job_was_taken_over_writes_no_ending_for_it(sqlite_world):
    _, services, key = sqlite_world
    job_id = new_job(services, key)
    with services.db.write() as conn:  # the run would end at once: its key cannot be used any more
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        revoke_key(conn, record.id, services.clock())
        jobs.set_job(conn, job_id, runner_instance_id="inst_taker")
    anyio.run(JobRunner(services, Lifecycle(services)).run, job_id)
    status = status_of(services, job_id)
    # The ending (failed, not resumed) is the taker's to write: this process wrote none.
    assert (status["status"], status["error"], status["report"]) == ("queued", None, None)
    assert status["running_in"] == "inst_taker"
