"""The Research pages: every job, a live job page, and a report whose figures are the API's."""

from __future__ import annotations

import re
from typing import Any

import httpx

from dashboard.conftest import ADMIN_TOKEN, Dashboard, screenshot
from gateway_fixtures import Gateway
from glasskey.research import NOTICE
from research_helpers import auth, job_body, upload_samples, wait_finished


def finished_job(gateway: Gateway) -> dict[str, Any]:
    key = gateway.routed_key
    ids = upload_samples(gateway.v1, key)
    checked = httpx.post(f"{gateway.v1}/research/preflight", headers=auth(key), json=job_body(ids)).json()
    body = job_body(ids, max_charge_micros=checked["cost"]["max_micros"])
    created = httpx.post(f"{gateway.v1}/research/jobs", headers=auth(key), json=body).json()
    return wait_finished(gateway.v1, key, created["id"])


def test_the_research_pages_show_every_job_and_a_report_drawn_from_the_computed_figures(
    gateway: Gateway, dashboard: Dashboard
) -> None:
    job = finished_job(gateway)
    listing = dashboard.get("/research")
    assert listing.status_code == 200 and f'data-job="{job["id"]}"' in listing.text
    page = dashboard.get(f"/research/{job['id']}")
    assert page.status_code == 200
    html = page.text
    assert html.count(NOTICE) >= 2 and "http-equiv" not in html  # finished: no reload
    report = httpx.get(f"{gateway.v1}/research/jobs/{job['id']}/report.json", headers=auth(gateway.routed_key)).json()
    for row in report["figures"]["symbols"]:
        cells = re.search(rf'data-symbol="{row["symbol"]}"><td>[^<]*</td><td class="num">([^<]*)</td>', html)
        assert cells and cells.group(1) == f"{row['total_return'] * 100:.2f}%"
    total = re.search(r'data-field="total"><strong><span class="money" data-micros="(\d+)"', html)
    assert total and int(total.group(1)) == report["total_charge_micros"] == job["spent_micros"]
    assert "<svg" in html and "<polyline" in html
    assert dashboard.get("/research/rjob_nope").status_code == 404


def test_the_report_page_downloads_the_report_as_markdown_and_json_with_the_session_alone(
    gateway: Gateway, dashboard: Dashboard
) -> None:
    job = finished_job(gateway)
    html = dashboard.get(f"/research/{job['id']}").text
    links = dict(re.findall(r'<a href="([^"]+)" download data-download="(md|json)"', html))
    assert set(links.values()) == {"md", "json"}
    by_key = f"{gateway.v1}/research/jobs/{job['id']}/report"
    for link, fmt in links.items():
        downloaded = dashboard.get(link)  # the operator's session, no key
        assert downloaded.status_code == 200, downloaded.text
        assert downloaded.headers["content-disposition"] == f'attachment; filename="{job["id"]}-report.{fmt}"'
        api = httpx.get(f"{by_key}.{fmt}", headers=auth(gateway.routed_key))
        if fmt == "md":
            assert downloaded.headers["content-type"].startswith("text/markdown")
            assert downloaded.text == api.text and downloaded.text.startswith(f"> **{NOTICE}**")
        else:
            assert downloaded.json() == api.json() and downloaded.json()["total_charge_micros"] == job["spent_micros"]
        # Without a session the download is the sign-in page's, never the report.
        anonymous = httpx.get(f"{gateway.base_url}{link}", follow_redirects=False)
        assert anonymous.status_code in (302, 303) and "/signin" in anonymous.headers["location"]
    assert dashboard.get(f"/research/{job['id']}/report.txt").status_code == 404
    assert dashboard.get("/research/rjob_nope/report.md").status_code == 404


def test_a_person_opens_a_research_report_in_the_browser(gateway: Gateway, page: Any) -> None:
    job = finished_job(gateway)
    page.goto(f"{gateway.base_url}/signin")
    page.fill("input[name=admin_token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.click("nav >> text=Research")
    screenshot(page, "20-research-jobs")
    page.click(f"a[href='/research/{job['id']}']")
    assert page.locator("table.figures tr[data-symbol=AAPL]").count() == 1
    assert page.locator("figure.research-chart svg polyline").count() == 2
    screenshot(page, "21-research-report")


def test_the_research_pages_need_a_session(gateway: Gateway) -> None:
    for path in ("/research", "/research/rjob_x"):
        response = httpx.get(f"{gateway.base_url}{path}", follow_redirects=False)
        assert response.status_code in (302, 303) and "/signin" in response.headers["location"]


def hidden_fields(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)


def test_a_job_is_described_checked_and_confirmed_on_the_dashboard(gateway: Gateway, dashboard: Dashboard) -> None:
    from research_helpers import QUESTION, SAMPLES, sample_bytes

    form = dashboard.get("/research/new")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    fields = {"csrf_token": dashboard.csrf, "question": QUESTION, "depth": "quick", "key": gateway.routed_key,
              "start": "2005-01-01", "end": "2010-01-01"}  # fmt: skip
    files = [("files", (name, sample_bytes(name))) for name in SAMPLES]
    checked = dashboard.client.post("/research/new", data=fields, files=files)
    assert checked.status_code == 200, checked.text
    assert "admitted" in checked.text and "Run it, charging at most the maximum" in checked.text
    assert gateway.routed_key not in checked.text  # the key is never written into a page
    shown = re.search(r'name="max_charge_micros" inputmode="numeric" value="(\d+)"', checked.text)
    assert shown is not None
    maximum = int(shown.group(1))
    hidden = hidden_fields(checked.text)
    confirm: dict[str, Any] = {name: value for name, value in hidden if name != "inputs"}
    confirm |= {"inputs": [v for n, v in hidden if n == "inputs"], "key": gateway.routed_key}
    confirm["max_charge_micros"] = str(maximum)
    started = dashboard.client.post("/research/confirm", data=confirm)
    assert started.status_code == 303 and started.headers["location"].startswith("/research/rjob_")
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = wait_finished(gateway.v1, gateway.routed_key, job_id)
    assert job["status"] == "succeeded" and job["confirmed_max_micros"] == maximum
    gateway.audit_ok()


def test_a_refused_model_is_shown_and_offers_no_confirm_button(gateway: Gateway, dashboard: Dashboard) -> None:
    from research_helpers import QUESTION, sample_bytes

    fields = {"csrf_token": dashboard.csrf, "question": QUESTION, "key": gateway.routed_key, "deep_model": "gpt-5"}
    files = [("files", ("stocks_msft_aapl.csv", sample_bytes("stocks_msft_aapl.csv")))]
    checked = dashboard.client.post("/research/new", data=fields, files=files)
    assert checked.status_code == 200
    assert "not admitted" in checked.text and "refused by policy.allowed_models" in checked.text
    assert "/research/confirm" not in checked.text
    no_csrf = dashboard.client.post("/research/new", data={**fields, "csrf_token": "forged"}, files=files)
    assert no_csrf.status_code == 403


def test_a_person_starts_a_job_in_the_browser_and_watches_it_finish(gateway: Gateway, page: Any, tmp_path: Any) -> None:
    from research_helpers import QUESTION, SAMPLES, sample_bytes

    paths = []
    for name in SAMPLES:
        (tmp_path / name).write_bytes(sample_bytes(name))
        paths.append(str(tmp_path / name))
    page.goto(f"{gateway.base_url}/signin")
    page.fill("input[name=admin_token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.goto(f"{gateway.base_url}/research/new")
    page.fill("#question", QUESTION)
    page.set_input_files("#files", paths)
    page.fill("#start", "2005-01-01")
    page.fill("#end", "2010-01-01")
    page.select_option("#depth", "quick")
    page.fill("#key", gateway.routed_key)
    screenshot(page, "22-research-new")
    page.click("button:has-text('Check permission, runtime and cost')")
    assert page.locator("[data-field=admitted]").inner_text().startswith("admitted")
    screenshot(page, "23-research-preflight")
    page.fill("#key", gateway.routed_key)
    page.click("button:has-text('Run it')")
    page.wait_for_url(re.compile(r".*/research/rjob_\w+$"))
    job_id = page.url.rsplit("/", 1)[1]
    wait_finished(gateway.v1, gateway.routed_key, job_id)
    page.reload()
    assert page.locator("[data-field=status]").inner_text() == "succeeded"
    screenshot(page, "24-research-job-finished")
