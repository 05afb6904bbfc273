"""Kill -9 the gateway mid-job, start it again with the automatic resume on: the job finishes by
itself, no call is sent or charged twice, the ledger audits clean.

Nothing is aged: on SQLite a starting process takes every other for dead; on PostgreSQL the killed
process's liveness lock (``gateway.liveness``) was freed with its connections, so the restarted
process finds it dead at once, voids its hold and takes its job up, though its last heartbeat is
seconds old."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from conftest_helpers import make_settings
from gateway_fixtures import free_port, seed
from glasskey.gateway.sweeper import sweep_expired_holds
from glasskey.ledger import audit
from glasskey.research.jobs import job_calls
from glasskey.research.tables import research_jobs
from glasskey.services import build_services
from glasskey.store.database import Database
from glasskey.store.tables import receipts, routes, transfers
from research_helpers import auth, job_body, upload_samples, wait_finished
from server_process import server_env, start_server


def test_a_job_killed_mid_run_resumes_without_sending_or_charging_a_call_twice(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url=database_url)
    services = build_services(settings)
    seeded = seed(services)
    with services.db.write() as conn:  # the deep model's call takes long enough to be killed in flight
        conn.execute(update(routes).where(routes.c.model == "claude-sonnet-4-5").values(options={"latency_ms": 30000}))
    services.close()
    key = seeded["routed_key"]
    port = free_port()
    env = server_env(settings, port)
    v1 = f"http://127.0.0.1:{port}/v1"
    db = Database(settings.effective_database_url)
    server = start_server(env)
    try:
        ids = upload_samples(v1, key)
        checked = httpx.post(f"{v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()
        job = httpx.post(
            f"{v1}/research/jobs",
            headers=auth(key),
            json=job_body(ids, max_charge_micros=checked["cost"]["max_micros"]),
        ).json()
        deadline = time.monotonic() + 20
        while True:
            with db.read() as conn:
                calls = job_calls(conn, job["id"])
                running = [c.id for c in calls if c.step == "analysis" and c.status == "running"]
                # Killed once the call's hold is taken: the upstream is answering it, slowly.
                if running and conn.execute(select(transfers.c.id).where(transfers.c.request_id == running[0])).first():
                    break
            assert time.monotonic() < deadline, [c.status for c in calls]
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    with db.write() as conn:
        conn.execute(update(routes).values(options={}))
        crashed = next(c for c in job_calls(conn, job["id"]) if c.step == "analysis")
        held = list(conn.execute(select(transfers).where(transfers.c.request_id == crashed.id)))
        killed = conn.execute(
            select(research_jobs.c.runner_instance_id).where(research_jobs.c.id == job["id"])
        ).scalar()
    assert [t.status for t in held] == ["pending"]  # the dead process's hold, not yet expired
    assert killed is not None

    # Restarted with the automatic resume on: nobody asks, the job is taken up at start-up.
    server = start_server({**env, "GLASSKEY_RESEARCH_RESUME_AT_STARTUP": "true"})
    try:
        done = wait_finished(v1, key, job["id"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    assert done["status"] == "succeeded", done
    assert done["resume_count"] == 1 and done["resumed_by"] not in (None, killed) and done["running_in"] is None
    with db.write() as conn:
        calls = job_calls(conn, job["id"])
        assert [(c.step, c.try_number, c.status) for c in calls] == [
            ("map", 1, "succeeded"),
            ("map", 1, "succeeded"),
            ("analysis", 1, "abandoned"),
            ("analysis", 2, "succeeded"),
        ]
        sent = [c.id for c in calls]
        receipted = {
            r.request_id: r.status
            for r in conn.execute(
                select(receipts.c.request_id, receipts.c.status).where(receipts.c.request_id.in_(sent))
            )
        }
        succeeded = {c.id for c in calls if c.status == "succeeded"}
        assert {request_id for request_id, status in receipted.items() if status == "succeeded"} == succeeded
        # The killed call: the restarted process voided its hold at start-up with an interrupted
        # receipt (gateway.instances), charging nothing.
        assert {request_id: receipted[request_id] for request_id in set(receipted) - succeeded} == {
            crashed.id: "interrupted"
        }
        # The killed call's hold expires like any hold of a dead process, and the ledger then audits clean.
        sweep_expired_holds(conn, services.clock() + timedelta(seconds=settings.hold_ttl_seconds + 1))
        report = audit(conn)
    report.raise_if_broken()
    assert report.receipt_charges_micros == report.posted_charges_micros
    assert done["spent_micros"] == sum(c.charge_micros for c in calls if c.status == "succeeded")
    db.dispose()
