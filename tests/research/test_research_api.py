"""The research API end to end: preflight, a job's run, its report and its receipts."""

from __future__ import annotations

import httpx
from helpers import auth, job_body, upload_samples, wait_finished

from glasskey.research import NOTICE


def test_a_job_runs_to_a_report_with_its_receipts(gateway):
    key = gateway.routed_key
    ids = upload_samples(gateway.v1, key)
    preflight = httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()
    assert preflight["admitted"] is True, preflight
    assert preflight["notice"] == NOTICE
    created = httpx.post(
        f"{gateway.v1}/research/jobs",
        headers=auth(key),
        json=job_body(ids, max_charge_micros=preflight["cost"]["max_micros"]),
    )
    assert created.status_code == 201, created.text
    job = wait_finished(gateway.v1, key, created.json()["id"])
    assert job["status"] == "succeeded", job
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.json", headers=auth(key)).json()
    markdown = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.md", headers=auth(key)).text
    assert markdown.startswith(f"> **{NOTICE}**") and markdown.rstrip().endswith(f"> **{NOTICE}**")
    assert report["total_charge_micros"] == job["spent_micros"] > 0
    assert len(report["receipts"]) == job["calls_planned"]
    gateway.audit_ok()
