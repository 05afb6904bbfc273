"""The research API end to end: preflight, a job's run, its report, its receipts and its refusals."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from glasskey.research import NOTICE
from glasskey.research.jobs import StoredFile
from glasskey.research.spec import JobSpec, prepare
from glasskey.store.tables import receipts, transfers
from research_helpers import SAMPLES, auth, job_body, sample_bytes, upload, upload_samples, wait_finished


def preflight(gateway, key, body):
    return httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=body, timeout=30)


def create(gateway, key, body):
    return httpx.post(f"{gateway.v1}/research/jobs", headers=auth(key), json=body, timeout=30)


def ledger_rows(gateway, request_ids):
    with gateway.services.db.read() as conn:
        found = list(conn.execute(select(transfers).where(transfers.c.request_id.in_(request_ids))))
        charged = list(conn.execute(select(receipts).where(receipts.c.request_id.in_(request_ids))))
    return found, charged


def job_call_ids(gateway, job_id):
    from glasskey.research.jobs import job_calls

    with gateway.services.db.read() as conn:
        return [c.id for c in job_calls(conn, job_id)]


def count_transfers(gateway, key_id=None):
    with gateway.services.db.read() as conn:
        return len(list(conn.execute(select(transfers.c.id).where(transfers.c.kind == "charge"))))


def test_a_job_runs_to_a_report_whose_receipts_equal_the_ledger(gateway_any_db):
    gateway = gateway_any_db
    key = gateway.routed_key
    ids = upload_samples(gateway.v1, key)
    checked = preflight(gateway, key, job_body(ids)).json()
    assert checked["admitted"] is True and checked["notice"] == NOTICE
    created = create(gateway, key, job_body(ids, max_charge_micros=checked["cost"]["max_micros"]))
    assert created.status_code == 201, created.text
    job = wait_finished(gateway.v1, key, created.json()["id"])
    assert job["status"] == "succeeded", job
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.json", headers=auth(key)).json()
    markdown = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.md", headers=auth(key)).text
    assert markdown.startswith(f"> **{NOTICE}**") and markdown.rstrip().endswith(f"> **{NOTICE}**")
    assert "[doc: apple_2005_2010.md, chunk 1]" in markdown
    # Every call has its receipt and its posted transfer; the report's total is the ledger's.
    found, charged = ledger_rows(gateway, [r["request_id"] for r in report["receipts"]])
    posted = sum(t.posted_amount_micros for t in found if t.status == "posted")
    assert len(charged) == len(report["receipts"]) == job["calls_planned"] == 3
    assert report["total_charge_micros"] == job["spent_micros"] == posted > 0
    assert all(t.status == "posted" for t in found)
    assert {r.endpoint for r in charged} == {"research"}
    assert job["spent_micros"] <= job["confirmed_max_micros"]
    gateway.audit_ok()


def test_the_preflight_cost_is_the_sum_of_the_quotes_of_its_calls(gateway):
    key = gateway.routed_key
    ids = upload_samples(gateway.v1, key)
    body = job_body(ids, depth="standard")
    checked = preflight(gateway, key, body).json()
    files = [StoredFile(i, name, "prices" if name.endswith(".csv") else "document", "", 0, sample_bytes(name))
             for i, name in zip(ids, SAMPLES, strict=True)]  # fmt: skip
    plan = prepare(JobSpec.parse(body), files).plan
    quotes = [httpx.post(f"{gateway.v1}/quote", headers=auth(key), json=call.body).json() for call in plan.calls]
    assert len(quotes) == len(checked["plan"]["calls"]) == 5  # two passes over two chunks, one analysis
    assert checked["cost"]["estimated_micros"] == sum(q["estimated_charge_micros"] for q in quotes)
    assert checked["cost"]["max_micros"] == sum(q["max_charge_micros"] for q in quotes)
    assert [c["max_charge_micros"] for c in checked["plan"]["calls"]] == [q["max_charge_micros"] for q in quotes]
    assert "no latency measured yet" in " ".join(checked["runtime"]["how"])
    assert count_transfers(gateway) == 0  # a preflight moves no money


def test_a_key_not_allowed_the_deep_model_is_told_and_refused_before_any_charge(gateway):
    key = gateway.new_key(allowed_models=("gpt-4o-mini",), settlement="routed")
    ids = upload_samples(gateway.v1, key)
    checked = preflight(gateway, key, job_body(ids))
    assert checked.status_code == 200
    deep = checked.json()["models"][1]
    assert checked.json()["admitted"] is False and checked.json()["refused_by"] == "model"
    assert deep["allowed"] is False and deep["refused_by"] == "policy.allowed_models"
    assert deep["alternatives"] == ["gpt-4o-mini"]
    refused = create(gateway, key, job_body(ids, max_charge_micros=10**9))
    assert refused.status_code == 403 and refused.json()["error"]["source"] == "model"
    assert count_transfers(gateway) == 0
    gateway.audit_ok()


def test_a_wallet_that_cannot_cover_the_maximum_is_402_at_preflight_and_confirm(gateway):
    from glasskey.keys.policy import KeyPolicy
    from glasskey.keys.service import create_key
    from glasskey.orgs.service import create_org

    with gateway.services.db.write() as conn:
        org = create_org(conn, "broke", gateway.services.clock())
        _, key = create_key(conn, pepper=gateway.services.pepper, org_id=org.id, name="k", policy=KeyPolicy(),
                            now=gateway.services.clock())  # fmt: skip
    ids = upload_samples(gateway.v1, key)
    checked = preflight(gateway, key, job_body(ids))
    assert checked.status_code == 402 and checked.json()["error"]["source"] == "wallet"
    assert checked.json()["error"]["preflight"]["cost"]["max_micros"] > 0
    refused = create(gateway, key, job_body(ids, max_charge_micros=1))
    assert refused.status_code == 402 and refused.json()["error"]["source"] == "wallet"
    assert count_transfers(gateway) == 0


def test_bad_input_is_a_400_naming_the_file_line_and_column(gateway):
    key = gateway.routed_key
    bad = upload(gateway.v1, key, {"prices.csv": b"date,symbol,close\n2020-01-01,AAA,1\n2020-02-30,AAA,2\n"})
    assert bad.status_code == 201  # uploads are stored as they are; reading them is the job's
    checked = preflight(gateway, key, job_body([bad.json()["data"][0]["id"]]))
    error = checked.json()["error"]
    assert checked.status_code == 400 and error["source"] == "client"
    assert (error["file"], error["line"], error["column"]) == ("prices.csv", 3, "date")
    unknown = upload(gateway.v1, key, {"deck.pptx": b"x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["file"] == "deck.pptx"
    empty = preflight(gateway, key, {"question": " ", "inputs": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "question"


def test_a_key_sees_only_its_own_files_and_jobs(gateway):
    key = gateway.routed_key
    other = gateway.new_key(settlement="routed")
    ids = upload_samples(gateway.v1, key)
    checked = preflight(gateway, key, job_body(ids)).json()
    job = create(gateway, key, job_body(ids, max_charge_micros=checked["cost"]["max_micros"])).json()
    wait_finished(gateway.v1, key, job["id"])
    assert httpx.get(f"{gateway.v1}/research/jobs/{job['id']}", headers=auth(other)).status_code == 404
    assert httpx.get(f"{gateway.v1}/research/jobs", headers=auth(other)).json()["data"] == []
    assert [j["id"] for j in httpx.get(f"{gateway.v1}/research/jobs", headers=auth(key)).json()["data"]] == [job["id"]]
    stolen = preflight(gateway, other, job_body(ids))
    assert stolen.status_code == 400 and "no uploaded file" in stolen.json()["error"]["message"]


def test_an_unknown_model_is_a_404_before_any_charge(gateway):
    key = gateway.new_key(settlement="routed")  # every model allowed: the catalog is what refuses
    ids = upload_samples(gateway.v1, key)
    checked = preflight(gateway, key, job_body(ids, deep_model="no-such-model")).json()
    assert checked["admitted"] is False and checked["models"][1]["refused_by"] == "catalog"
    refused = create(gateway, key, job_body(ids, deep_model="no-such-model", max_charge_micros=10**6))
    assert refused.status_code == 404 and refused.json()["error"]["source"] == "model"
    assert count_transfers(gateway) == 0


def test_the_research_api_has_an_openapi_document_naming_every_route(gateway):
    from glasskey.gateway.lifecycle import Lifecycle
    from glasskey.research.http import routes_research
    from glasskey.research.runner import JobRunner

    document = httpx.get(f"{gateway.v1}/research/openapi.json").json()  # no key needed for the document
    assert document["openapi"] == "3.1.0" and NOTICE in document["info"]["description"]
    lifecycle = Lifecycle(gateway.services)
    routes = routes_research(lifecycle, JobRunner(gateway.services, lifecycle))
    served = {(r.path, m.lower()) for r in routes for m in (r.methods or ()) if m != "HEAD"}
    assert set(document["paths"]["/jobs"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented


def test_an_upload_over_the_bound_is_refused_before_it_is_parsed(gateway):
    from glasskey.research.http import UPLOAD_MAX_BYTES

    def chunks():  # no content-length: the bound holds for a chunked body too
        sent = 0
        while sent <= UPLOAD_MAX_BYTES:
            yield b"x" * 1_048_576
            sent += 1_048_576

    refused = httpx.post(
        f"{gateway.v1}/research/files",
        headers={**auth(gateway.routed_key), "content-type": "multipart/form-data; boundary=b"},
        content=chunks(),
        timeout=60,
    )
    assert refused.status_code == 413 and refused.json()["error"]["source"] == "client"


def form_fields(file_ids, **extra):
    """A job's fields as multipart form fields: text values, `inputs` repeated per file id."""
    body = job_body(file_ids, **extra)
    return [("inputs", i) for i in body.pop("inputs")] + [(name, str(value)) for name, value in body.items()]


def create_multipart(gateway, key, fields, files):
    parts = [("file", (name, data)) for name, data in files.items()]
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return httpx.post(f"{gateway.v1}/research/jobs", headers=auth(key), data=data, files=parts, timeout=30)


def test_a_job_takes_its_inputs_as_multipart_uploads_stored_as_post_files_stores_them(gateway):
    from glasskey.research.tables import research_job_inputs

    key = gateway.routed_key
    maximum = preflight(gateway, key, job_body(upload_samples(gateway.v1, key))).json()["cost"]["max_micros"]
    csv, *docs = SAMPLES
    by_id = upload(gateway.v1, key, {csv: sample_bytes(csv)}).json()["data"][0]["id"]
    created = create_multipart(gateway, key, [*form_fields([by_id]), ("max_charge_micros", str(maximum))],
                               {name: sample_bytes(name) for name in docs})  # fmt: skip
    assert created.status_code == 201, created.text
    job = wait_finished(gateway.v1, key, created.json()["id"])
    assert job["status"] == "succeeded" and job["calls_planned"] == 3
    with gateway.services.db.read() as conn:
        rows = list(conn.execute(select(research_job_inputs).where(research_job_inputs.c.job_id == job["id"])))
    # The uploaded parts are the same stored files POST /files keeps for those bytes: same ids and hashes.
    assert [r.file_id for r in sorted(rows, key=lambda r: r.position)] == upload_samples(gateway.v1, key)
    assert {r.name for r in rows} == set(SAMPLES)
    gateway.audit_ok()


def test_a_multipart_job_with_bad_input_is_a_400_naming_the_file_line_and_column_and_charges_nothing(gateway):
    from glasskey.research.inputs import FILE_MAX_BYTES

    key = gateway.routed_key
    fields = [*form_fields([]), ("max_charge_micros", "1000000")]
    bad_csv = {"prices.csv": b"date,symbol,close\n2020-01-01,AAA,1\n2020-02-30,AAA,2\n"}
    error = create_multipart(gateway, key, fields, bad_csv).json()["error"]
    assert error["source"] == "client" and (error["file"], error["line"], error["column"]) == ("prices.csv", 3, "date")
    for files, named in (({"deck.pptx": b"x"}, "deck.pptx"), ({"big.md": b"x" * (FILE_MAX_BYTES + 1)}, "big.md")):
        refused = create_multipart(gateway, key, fields, files)
        assert refused.status_code == 400 and refused.json()["error"]["file"] == named
    doc = {SAMPLES[1]: sample_bytes(SAMPLES[1])}
    unknown = create_multipart(gateway, key, [*fields, ("org_id", "org_x")], doc)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "org_id"
    bad_max = create_multipart(gateway, key, [*form_fields([]), ("max_charge_micros", "0.5")], doc)
    assert bad_max.status_code == 400 and bad_max.json()["error"]["param"] == "max_charge_micros"
    empty = create_multipart(gateway, key, [("question", " "), ("max_charge_micros", "1")], doc)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "question"
    assert count_transfers(gateway) == 0
    with gateway.services.db.read() as conn:
        from glasskey.research.tables import research_jobs

        assert list(conn.execute(select(research_jobs.c.id))) == []
