"""Dashboard fixtures: a signed-in HTTP client, and headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` at ``/usr/bin/chromium`` (Playwright never downloads one).
Without it the browser tests are skipped, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_fixtures import Gateway, gateway

__all__ = ["gateway"]

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Dashboard:
    """An httpx client signed in to the dashboard, with the session's CSRF token at hand."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=10)
        page = self.client.get("/signin")
        signed_in = self.client.post("/signin", data={"csrf_token": csrf_of(page.text), "admin_token": ADMIN_TOKEN})
        assert signed_in.status_code == 303, signed_in.text
        self.csrf = csrf_of(self.get("/keys").text)

    def get(self, path: str, **params: Any) -> httpx.Response:
        response = self.client.get(path, params=params)
        return response

    def post(self, path: str, data: dict[str, Any]) -> httpx.Response:
        """A form sent as the dashboard's own pages send it, with the session's CSRF token."""
        return self.client.post(path, data={**data, "csrf_token": self.csrf})


@pytest.fixture
def dashboard(gateway: Gateway) -> Iterator[Dashboard]:
    signed_in = Dashboard(gateway.base_url)
    yield signed_in
    signed_in.client.close()


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this thread
    # while it is open, and later tests that call asyncio.run() must not find one.
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot kept as a test artifact (``test-artifacts/screenshots``, not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
