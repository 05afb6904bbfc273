"""PostgreSQL: a running peer takes up a killed process's research job at the liveness verdict.

A gateway with the automatic resume on (its real lifespan, in this process) shares the database
with an owner process, played by its liveness lock, its instance row, a call in flight (a pending
hold) and the job it runs. The owner is killed (its lock freed, as when its connections close):
the gateway's liveness check finds it dead a second later, voids its hold, and wakes the resume
round, which claims the job. The heartbeat between rounds is made an hour long here, so only the
wake can have resumed it: the test asserts who resumed the job, not how fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from conftest_helpers import make_settings, postgres_schema_url
from gateway_fixtures import seed
from glasskey.app import build_app
from glasskey.gateway import instances, liveness
from glasskey.research import jobs
from glasskey.services import build_services
from glasskey.store.tables import receipts, transfers
from research.test_research_claims import audit_clean, charges_by_call, hold_taken_by, new_job, status_of

WAIT_SECONDS_MAX = 30.0  # a bound on the polling only; the heartbeat round would come after an hour


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


def wait_for(condition: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while not (found := condition()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
    return found


def test_a_running_peer_resumes_a_killed_processs_job_when_the_liveness_check_finds_it_dead(
    tmp_path, postgres_url, monkeypatch
):
    settings = make_settings(tmp_path, database_url=postgres_url, research_resume_at_startup=True)
    services = build_services(settings)
    key = seed(services)["routed_key"]
    # Started before the owner died: the start-up round takes this one up (nobody runs it), which
    # tells the test that round is over before the kill.
    earlier, owned = new_job(services, key), new_job(services, key)
    owner = liveness.LivenessLock(services.db, "inst_owner")
    owner.hold()
    with services.db.write() as conn:
        instances.register(conn, "inst_owner", services.clock())  # beating now: alive by heartbeats
        jobs.set_job(conn, earlier, status="interrupted", runner_instance_id=None)
        jobs.set_job(conn, owned, status="running", runner_instance_id="inst_owner")
    hold_taken_by(services, key, "inst_owner")  # its call in flight when it dies
    # Rounds (and beats) an hour apart: a resume before then is the liveness verdict's wake.
    monkeypatch.setattr(instances, "HEARTBEAT_SECONDS", 3600.0)
    try:
        with TestClient(build_app(services)):
            wait_for(lambda: status_of(services, earlier)["resumed_by"] == services.instance_id)
            assert status_of(services, owned)["resumed_by"] is None  # its owner is alive
            owner.release()  # killed: its session ends, and its lock with it
            wait_for(lambda: status_of(services, owned)["resumed_by"])
            wait_for(lambda: all(status_of(services, job_id)["status"] in jobs.FINISHED for job_id in (earlier, owned)))
    finally:
        owner.release()
    done = status_of(services, owned)
    assert done["resumed_by"] == services.instance_id and done["resume_count"] == 1
    assert done["status"] == "succeeded" and done["running_in"] is None
    assert all(len(amounts) == 1 for amounts in charges_by_call(services, owned).values())
    with services.db.read() as conn:
        hold = conn.execute(select(transfers).where(transfers.c.request_id == "req_in_flight")).one()
        receipt = conn.execute(select(receipts).where(receipts.c.transfer_id == hold.id)).one()
    assert hold.status == "voided" and (receipt.status, receipt.charge_micros) == ("interrupted", 0)
    audit_clean(services)
    services.close()
