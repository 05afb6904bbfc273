"""The admin API sees every key's research jobs; a key's own view stays its own."""

from __future__ import annotations

import httpx

from research_helpers import auth, job_body, upload_samples, wait_finished

ADMIN = {"Authorization": "Bearer admin-token-for-tests-0123456789"}


def test_the_operator_lists_every_keys_jobs_and_reads_one_with_its_report(gateway):
    jobs = []
    for key in (gateway.routed_key, gateway.new_key(settlement="routed")):
        ids = upload_samples(gateway.v1, key)
        checked = httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()
        body = job_body(ids, max_charge_micros=checked["cost"]["max_micros"])
        created = httpx.post(f"{gateway.v1}/research/jobs", headers=auth(key), json=body).json()
        jobs.append(wait_finished(gateway.v1, key, created["id"]))
    listed = httpx.get(f"{gateway.base_url}/admin/api/research/jobs", headers=ADMIN)
    assert listed.status_code == 200
    assert {j["id"] for j in listed.json()["data"]} == {j["id"] for j in jobs}
    assert len({j["key_id"] for j in listed.json()["data"]}) == 2
    one = httpx.get(f"{gateway.base_url}/admin/api/research/jobs/{jobs[0]['id']}", headers=ADMIN).json()
    assert one["status"] == "succeeded" and one["report_json"]["total_charge_micros"] == jobs[0]["spent_micros"]
    assert httpx.get(f"{gateway.base_url}/admin/api/research/jobs", headers=auth(gateway.routed_key)).status_code == 401
    missing = httpx.get(f"{gateway.base_url}/admin/api/research/jobs/rjob_nope", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["source"] == "client"
