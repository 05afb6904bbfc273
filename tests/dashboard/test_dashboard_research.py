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
