"""The runner's promises: the cap, cancellation, malformed answers, live events, figures from data."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from sqlalchemy import select, update

from glasskey.providers.base import ChatResult, RouteTarget, Usage
from glasskey.providers.simulated import SimulatedProvider
from glasskey.research.jobs import job_calls
from glasskey.store.tables import routes, transfers
from research_helpers import auth, job_body, upload_samples, wait_finished


def start_job(gateway, key, **extra):
    ids = upload_samples(gateway.v1, key)
    checked = httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()
    body = job_body(ids, **{"max_charge_micros": checked["cost"]["max_micros"], **extra})
    created = httpx.post(f"{gateway.v1}/research/jobs", headers=auth(key), json=body)
    assert created.status_code == 201, created.text
    return created.json()


def calls_of(gateway, job_id):
    with gateway.services.db.read() as conn:
        return job_calls(conn, job_id)


def charge_transfers(gateway, request_ids):
    with gateway.services.db.read() as conn:
        return list(conn.execute(select(transfers).where(transfers.c.request_id.in_(request_ids))))


def test_the_cap_stops_the_job_before_a_call_that_could_pass_it(gateway):
    key = gateway.routed_key
    job = start_job(gateway, key, max_charge_micros=700)  # room for the two map calls' maxima, not the analysis
    done = wait_finished(gateway.v1, key, job["id"])
    assert done["status"] == "capped", done
    assert "confirmed maximum of 700 micros" in done["error"]
    calls = calls_of(gateway, job["id"])
    analysis = [c for c in calls if c.step == "analysis"]
    assert [c.status for c in analysis] == ["planned"]  # never sent: no receipt, no hold
    assert charge_transfers(gateway, [analysis[0].id]) == []
    assert 0 < done["spent_micros"] <= 700
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.md", headers=auth(key)).text
    assert "status **capped**" in report and "The analysis step did not run." in report
    gateway.audit_ok()


def test_cancel_stops_calls_in_flight_and_voids_their_holds(gateway):
    with gateway.services.db.write() as conn:
        conn.execute(update(routes).values(options={"latency_ms": 5000}))
    key = gateway.routed_key
    job = start_job(gateway, key)
    deadline = time.monotonic() + 10
    while not any(c.status == "running" for c in calls_of(gateway, job["id"])):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = httpx.post(f"{gateway.v1}/research/jobs/{job['id']}/cancel", headers=auth(key), timeout=30).json()
    assert cancelled["status"] == "cancelled" and cancelled["spent_micros"] == 0
    calls = calls_of(gateway, job["id"])
    sent = [c.id for c in calls if c.status == "cancelled"]
    assert sent and all(c.status in ("cancelled", "planned") for c in calls)
    held = charge_transfers(gateway, sent)
    assert held and all(t.status == "voided" for t in held)
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.json", headers=auth(key)).json()
    assert report["status"] == "cancelled" and report["total_charge_micros"] == 0
    assert all(r["status"] == "failed" for r in report["receipts"])
    gateway.audit_ok()


class MalformedMap(SimulatedProvider):
    """Answers every map request with prose instead of JSON."""

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        result = await super().chat(target, body)
        if "[glasskey research: map]" in body["messages"][0]["content"]:
            result.body["choices"][0]["message"]["content"] = "Sure! Here are the claims: none."
        return result


def test_a_malformed_map_answer_is_retried_once_then_the_step_fails_visibly(gateway):
    gateway.services.providers["simulated"] = MalformedMap()
    key = gateway.routed_key
    job = start_job(gateway, key)
    done = wait_finished(gateway.v1, key, job["id"])
    assert done["status"] == "failed" and "malformed" in done["error"]
    assert next(s for s in done["steps"] if s["name"] == "map")["status"] == "failed"
    maps = [c for c in calls_of(gateway, job["id"]) if c.step == "map"]
    first = [c for c in maps if c.position == 0]
    assert [(c.try_number, c.status) for c in first] == [(1, "malformed"), (2, "malformed")]
    assert "not JSON" in first[0].error
    gateway.audit_ok()


class InventedNumbers(SimulatedProvider):
    """A deep model that states figures of its own."""

    async def chat(self, target: RouteTarget, body: dict[str, Any]) -> ChatResult:
        result = await super().chat(target, body)
        if "[glasskey research: analysis]" in body["messages"][0]["content"]:
            text = "AAPL returned 999.99% a year with a Sharpe of 12.34."
            result.body["choices"][0]["message"]["content"] = text
            return ChatResult(body=result.body, usage=Usage(10, 10))
        return result


def test_a_model_stating_other_numbers_cannot_change_the_reports_figures(gateway):
    key = gateway.routed_key
    honest = wait_finished(gateway.v1, key, start_job(gateway, key)["id"])
    gateway.services.providers["simulated"] = InventedNumbers()
    lying = wait_finished(gateway.v1, key, start_job(gateway, key)["id"])
    reports = [
        httpx.get(f"{gateway.v1}/research/jobs/{j['id']}/report.json", headers=auth(key)).json()
        for j in (honest, lying)
    ]
    assert reports[0]["figures"] == reports[1]["figures"] is not None
    assert reports[1]["analysis"]["flagged_numbers"] == ["999.99%", "12.34"]
    assert "999.99" not in json.dumps(reports[1]["figures"])


def test_events_are_well_formed_sse_ending_with_the_report(gateway):
    key = gateway.routed_key
    job = start_job(gateway, key)
    events = []
    with httpx.stream("GET", f"{gateway.v1}/research/jobs/{job['id']}/events", headers=auth(key), timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        block: list[str] = []
        for line in r.iter_lines():
            if line:
                block.append(line)
                continue
            assert block[0].startswith("event: ") and block[1].startswith("data: ") and len(block) == 2
            events.append((block[0][7:], json.loads(block[1][6:])))
            block = []
    assert events[0][0] == "progress" and events[-1][0] == "end"
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["report"].endswith("/report")
    progress = [e for name, e in events if name == "progress"]
    assert progress[-1]["calls_done"] == progress[-1]["calls_planned"] == 3
    spends = [e["spent_micros"] for e in progress]
    assert spends == sorted(spends)  # spend so far only grows


def test_two_jobs_run_side_by_side_without_mixing_their_money(gateway):
    key = gateway.routed_key
    results = []

    def run():
        results.append(wait_finished(gateway.v1, key, start_job(gateway, key)["id"]))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["status"] for r in results] == ["succeeded", "succeeded"]
    assert results[0]["spent_micros"] == results[1]["spent_micros"] > 0  # same inputs, same deterministic answers
    gateway.audit_ok()


def test_a_key_revoked_mid_run_fails_the_job_visibly_and_leaves_the_ledger_clean(gateway):
    from glasskey.keys.service import find_by_public_id, revoke_key
    from glasskey.research.jobs import job_status

    with gateway.services.db.write() as conn:
        conn.execute(update(routes).where(routes.c.model == "gpt-4o-mini").values(options={"latency_ms": 1500}))
    key = gateway.new_key(settlement="routed")
    job = start_job(gateway, key, depth="thorough")  # 6 map calls: 4 in flight, 2 waiting
    deadline = time.monotonic() + 10
    while sum(c.status == "running" for c in calls_of(gateway, job["id"])) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with gateway.services.db.write() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        revoke_key(conn, record.id, gateway.services.clock())
    deadline = time.monotonic() + 20
    while True:
        with gateway.services.db.read() as conn:
            status = job_status(conn, job["id"], None, gateway.services.clock())
        if status["status"] != "running":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["status"] == "failed" and "refused by the gateway (key)" in status["error"]
    assert next(s for s in status["steps"] if s["name"] == "map")["status"] == "failed"
    gateway.audit_ok()


def test_a_job_stopped_with_its_process_is_interrupted_then_resumes_to_the_end(gateway):
    import asyncio
    import contextlib

    import anyio

    from glasskey.gateway.lifecycle import Lifecycle
    from glasskey.keys.service import find_by_public_id
    from glasskey.research.confirm import confirm_job
    from glasskey.research.demo import QUESTION, SAMPLES, sample_bytes
    from glasskey.research.jobs import job_status, store_file
    from glasskey.research.preflight import preflight
    from glasskey.research.runner import JobRunner
    from glasskey.research.spec import JobSpec, prepare

    services, key = gateway.services, gateway.routed_key
    with services.db.write() as conn:
        conn.execute(update(routes).values(options={"latency_ms": 5000}))
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        files = [store_file(conn, record.id, name, sample_bytes(name), services.clock()) for name in SAMPLES]
        prepared = prepare(
            JobSpec.parse({"question": QUESTION, "inputs": [f.id for f in files], "depth": "quick"}), files
        )
        checked = preflight(conn, record, prepared, services.health, services.clock())
        job_id = confirm_job(
            conn, record, prepared, checked, checked["cost"]["max_micros"], services.clock(),
            instance_id=services.instance_id,
        )  # fmt: skip

    async def stop_mid_run() -> None:  # the process stops: its tasks are cancelled, nobody asked to cancel
        task = asyncio.get_running_loop().create_task(JobRunner(services, Lifecycle(services)).run(job_id))
        while not any(c.status == "running" for c in await anyio.to_thread.run_sync(calls_of, gateway, job_id)):
            await anyio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    anyio.run(stop_mid_run)
    with services.db.read() as conn:
        stopped = job_status(conn, job_id, None, services.clock())
    assert stopped["status"] == "interrupted" and "resume" in stopped["error"]
    sent = [c.id for c in calls_of(gateway, job_id) if c.status == "cancelled"]
    assert sent and all(t.status == "voided" for t in charge_transfers(gateway, sent))
    with services.db.write() as conn:
        conn.execute(update(routes).values(options={}))
    resumed = httpx.post(f"{gateway.v1}/research/jobs/{job_id}/resume", headers=auth(key))
    assert resumed.status_code == 200, resumed.text
    done = wait_finished(gateway.v1, key, job_id)
    assert done["status"] == "succeeded" and done["spent_micros"] <= done["confirmed_max_micros"]
    gateway.audit_ok()


def test_a_job_whose_key_is_revoked_before_it_starts_fails_visibly(gateway):
    import anyio

    from glasskey.gateway.lifecycle import Lifecycle
    from glasskey.keys.service import find_by_public_id, revoke_key
    from glasskey.research.jobs import job_status, set_job
    from glasskey.research.runner import JobRunner

    key = gateway.new_key(settlement="routed")
    job = start_job(gateway, key)
    wait_finished(gateway.v1, key, job["id"])
    services = gateway.services
    with services.db.write() as conn:
        record = find_by_public_id(conn, key.split("-")[1])
        assert record is not None
        revoke_key(conn, record.id, services.clock())
        # Run as a resume runs it: claimed by this process first (a process writes only its own jobs).
        set_job(conn, job["id"], runner_instance_id=services.instance_id)
    anyio.run(JobRunner(services, Lifecycle(services)).run, job["id"])
    with services.db.read() as conn:
        status = job_status(conn, job["id"], None, services.clock())
    assert status["status"] == "failed" and status["error"].startswith("not resumed: key: ")


def test_a_cancel_flag_set_by_another_process_stops_the_job_before_its_next_call(gateway):
    from glasskey.research.jobs import request_cancel

    with gateway.services.db.write() as conn:
        conn.execute(update(routes).where(routes.c.model == "gpt-4o-mini").values(options={"latency_ms": 1500}))
    key = gateway.routed_key
    job = start_job(gateway, key, depth="thorough")  # 6 map calls: 4 in flight, 2 waiting
    deadline = time.monotonic() + 10
    while sum(c.status == "running" for c in calls_of(gateway, job["id"])) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with gateway.services.db.write() as conn:  # as another gateway process's cancel would
        request_cancel(conn, job["id"], None)
    done = wait_finished(gateway.v1, key, job["id"])
    assert done["status"] == "cancelled", done
    calls = calls_of(gateway, job["id"])
    # The first call to start after the flag stops the job; calls still in flight are cancelled
    # with it (their holds voided); none is left running, and the analysis was never sent.
    assert "running" not in {c.status for c in calls}
    assert [c.status for c in calls if c.step == "analysis"] == ["planned"]
    assert {c.status for c in calls} <= {"succeeded", "cancelled", "planned"}
    cancelled = [c.id for c in calls if c.status == "cancelled"]
    assert all(t.status == "voided" for t in charge_transfers(gateway, cancelled))
    assert {s["name"]: s["status"] for s in done["steps"]}["map"] == "cancelled"
    assert done["spent_micros"] == sum(c.charge_micros for c in calls)
    gateway.audit_ok()


def test_a_call_answered_before_a_stop_is_read_from_its_row_on_resume_never_sent_again(gateway):
    from glasskey.research.jobs import set_call, set_job

    key = gateway.routed_key
    job = wait_finished(gateway.v1, key, start_job(gateway, key)["id"])
    before = calls_of(gateway, job["id"])
    claims = {"summary": "Kept from the row.", "claims": [{"text": "A claim read back from the row.", "quote": "x"}]}

    def answer(text: str) -> dict[str, Any]:
        return {"answer": {"choices": [{"message": {"role": "assistant", "content": text}}]}}

    with gateway.services.db.write() as conn:  # as a process stopped right after both answers arrived
        set_call(conn, before[0].id, status="answered", output=answer(json.dumps(claims)))
        set_call(conn, before[-1].id, status="answered", output=answer("The analysis kept in its row."))
        set_job(conn, job["id"], status="interrupted", report=None, finished_at=None)
    assert httpx.post(f"{gateway.v1}/research/jobs/{job['id']}/resume", headers=auth(key)).status_code == 200
    done = wait_finished(gateway.v1, key, job["id"])
    assert done["status"] == "succeeded"
    after = calls_of(gateway, job["id"])
    assert [c.id for c in after] == [c.id for c in before]  # no new try: nothing was sent again
    assert {c.status for c in after} == {"succeeded"}
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.json", headers=auth(key)).json()
    assert report["analysis"]["text"] == "The analysis kept in its row."
    assert "A claim read back from the row." in [e["text"] for e in report["evidence"]]
    assert report["total_charge_micros"] == job["spent_micros"]  # the same receipts, charged once
    gateway.audit_ok()
