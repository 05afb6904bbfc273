"""No page glasskey serves loads anything from outside: the admin API docs work offline too."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from dashboard.conftest import screenshot
from dashboard.test_dashboard_browser import sign_in
from gateway_fixtures import Gateway

PAGES = ("/", "/keys", "/wallets", "/receipts", "/failures", "/routes", "/models")


def test_the_docs_page_names_only_its_own_assets(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.base_url}/admin/api/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in assets and "/static/swagger-ui/swagger-ui.css" in assets
    assert not [url for url in assets if urlsplit(url).netloc], assets
    assert "cdn" not in page.text
    script = httpx.get(f"{gateway.base_url}/static/swagger-ui/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_every_page_renders_with_the_outside_world_cut_off(gateway: Gateway, page: Any) -> None:
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{gateway.base_url}/admin/api/docs")
    page.wait_for_selector(".opblock", timeout=15_000)  # Swagger UI drew the endpoints
    assert page.locator(".opblock").count() > 10
    screenshot(page, "admin-api-docs-offline")
    sign_in(page, gateway.base_url)
    for path in PAGES:
        page.goto(f"{gateway.base_url}{path}")
        page.wait_for_load_state("networkidle")
    assert outside == []
