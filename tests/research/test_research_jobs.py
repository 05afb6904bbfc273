"""Research jobs as rows, on SQLite and PostgreSQL: files by content hash, a key's own jobs, abandoned calls."""

from __future__ import annotations

import pytest

from conftest_helpers import NOW
from glasskey.errors import ClientError, NotFound
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org
from glasskey.research import jobs
from glasskey.research.demo import QUESTION, SAMPLES, sample_bytes
from glasskey.research.spec import JobSpec, prepare


def two_keys(conn):
    org = create_org(conn, "acme", NOW)
    made = [create_key(conn, pepper="p" * 32, org_id=org.id, name=n, policy=KeyPolicy(), now=NOW) for n in "ab"]
    return org.id, made[0][0], made[1][0]


def new_job(conn, org_id, key, files):
    prepared = prepare(JobSpec.parse({"question": QUESTION, "inputs": [f.id for f in files], "depth": "quick"}), files)
    return jobs.create_job(
        conn, key_id=key.id, org_id=org_id, plan=prepared.plan, files=files, risk_free_rate="0",
        window=(None, None), confirmed_max_micros=1000, planned_max_micros=900, planned_estimate_micros=100,
        expected_ms=(10, 20), call_max_micros=[300] * len(prepared.plan.calls), now=NOW,
    )  # fmt: skip


def test_files_are_kept_once_per_key_and_content_and_never_shown_to_another_key(db):
    with db.write() as conn:
        _, a, b = two_keys(conn)
        first = jobs.store_file(conn, a.id, "prices.csv", b"date,symbol,close\n", NOW)
        again = jobs.store_file(conn, a.id, "prices.csv", b"date,symbol,close\n", NOW)
        other = jobs.store_file(conn, b.id, "prices.csv", b"date,symbol,close\n", NOW)
        assert first.id == again.id != other.id and first.sha256 == other.sha256
        assert [f.id for f in jobs.get_files(conn, a.id, [first.id])] == [first.id]
        with pytest.raises(ClientError):
            jobs.get_files(conn, b.id, [first.id])


def test_a_job_is_its_rows_and_a_key_sees_only_its_own(db):
    with db.write() as conn:
        org_id, a, b = two_keys(conn)
        files = [jobs.store_file(conn, a.id, name, sample_bytes(name), NOW) for name in SAMPLES]
        job_id = new_job(conn, org_id, a, files)
        status = jobs.job_status(conn, job_id, a.id, NOW)
        assert (status["status"], status["calls_planned"], status["spent_micros"]) == ("queued", 3, 0)
        assert [s["name"] for s in status["steps"]] == ["read", "map", "metrics", "analysis", "report"]
        assert [f.sha256 for f in jobs.job_inputs(conn, job_id)] == [f.sha256 for f in files]
        with pytest.raises(NotFound):
            jobs.job_status(conn, job_id, b.id, NOW)
        assert jobs.list_jobs(conn, b.id) == [] and [r.id for r in jobs.list_jobs(conn, None)] == [job_id]
        assert jobs.request_cancel(conn, job_id, a.id).cancel_requested == 1


def test_calls_left_running_by_a_dead_process_are_abandoned_not_reused(db):
    with db.write() as conn:
        org_id, a, _ = two_keys(conn)
        files = [jobs.store_file(conn, a.id, name, sample_bytes(name), NOW) for name in SAMPLES]
        job_id = new_job(conn, org_id, a, files)
        first = jobs.job_calls(conn, job_id)[0]
        jobs.set_call(conn, first.id, status="running")
        assert jobs.abandon_calls(conn, job_id) == 1
        assert [c.status for c in jobs.job_calls(conn, job_id)] == ["abandoned", "planned", "planned"]
        assert jobs.receipt_charge(conn, first.id) == 0  # never receipted
