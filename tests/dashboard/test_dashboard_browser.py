"""The dashboard in headless Chromium, as a person uses it: from signing in to signing out.

Each page is saved as a full-page screenshot under ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from dashboard.conftest import ADMIN_TOKEN, screenshot
from gateway_fixtures import Gateway

pytestmark = pytest.mark.timeout(90)


def sign_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/keys")
    assert "/signin" in page.url  # every page needs a session first
    screenshot(page, "01-signin")
    page.fill("#admin_token", ADMIN_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base_url}/keys")


def create_key_in_form(page: Any, base_url: str) -> tuple[str, str]:
    """Walks the create form and its preview; returns the key's id and the secret shown once."""
    page.click("text=Create a key")
    page.fill("#name", "research agent")
    page.fill("#owner", "ana@example.com")
    page.check("input[name=model][value='gpt-4o-mini']")
    page.check("input[name=model][value='gemini-2.5-flash']")
    page.check("input[name=settlement][value=routed]")
    page.check("input[name=lower_cost_routes]")
    page.check("input[name=backup_routes]")
    page.fill("#budget_total", "5.00")
    page.fill("#budget_daily", "1.50")
    page.fill("#rpm_limit", "60")
    page.fill("#expires_at", "2030-01-01T00:00")
    screenshot(page, "03-key-form")
    page.click("text=Preview prices")

    # The preview: the key's explanation before it exists, with the routed prices it will pay.
    assert page.locator("h1").inner_text().startswith("Check")
    row = page.locator("tr[data-model='gpt-4o-mini'] .price-effective .money").first
    assert row.get_attribute("data-micros") == "90000"  # 60% of the official $0.15 per 1M input tokens
    assert "5.00" in page.locator("#budget-total").inner_text()
    screenshot(page, "04-key-preview")
    page.click("text=Create the key")

    secret = page.locator("#secret").inner_text().strip()
    assert re.fullmatch(r"gk-[a-z0-9]+-[A-Za-z0-9_-]+", secret), secret
    page.click("button[data-copy='#secret']")
    page.wait_for_selector("button[data-copy='#secret']:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "05-key-created")
    # The URL already points at the key's page, so a reload shows the key and never the secret.
    key_id = page.url.rsplit("/", 1)[-1]
    assert key_id.startswith("key_")
    page.reload()
    assert secret not in page.content()
    assert page.locator("h1").inner_text().startswith("research agent")
    return key_id, secret


def test_a_person_signs_in_creates_a_key_uses_it_and_finds_everything(gateway: Gateway, page: Any) -> None:
    base = gateway.base_url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, base)
    screenshot(page, "02-keys")

    key_id, secret = create_key_in_form(page, base)
    # The key's page is its explanation: the eight answers.
    for answer in ("models", "settlement", "lower-cost", "backups", "prices", "wallet", "receipts", "failures"):
        assert page.locator(f"#answer-{answer}").is_visible()
    assert "gpt-4o-mini" in page.locator("#answer-models").inner_text()
    assert "routed wallet" in page.locator("#answer-settlement").inner_text()

    # The key works with the official SDK; one allowed request, one refused model.
    sdk = OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=40
    )
    request_id = raw.headers["x-request-id"]
    charge_micros = int(raw.headers["x-glasskey-charge-micros"])
    sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "And you?"}])
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hi"}])

    page.reload()
    screenshot(page, "06-key")
    page.click(f"a[href='/receipts?key={key_id}']")
    page.wait_for_selector(f"a[href='/receipts/{request_id}']")
    assert page.locator("#totals [data-field=requests]").inner_text() == "3"
    screenshot(page, "07-receipts")
    page.click(f"a[href='/receipts/{request_id}']")
    assert page.locator("[data-field=charge] .money").get_attribute("data-micros") == str(charge_micros)
    assert page.locator(".attempt.succeeded").count() == 1
    screenshot(page, "08-receipt")

    page.click("nav >> text=Failures")
    model_card = page.locator("#source-model")
    assert model_card.locator("[data-field=count]").inner_text() == "1"
    assert "not allowed" in model_card.inner_text()
    screenshot(page, "09-failures")

    page.click("nav >> text=Wallets")
    page.select_option("#topup-kind", "routed")
    page.fill("#topup-amount", "12.34")
    page.fill("#topup-memo", "April research budget")
    page.click("text=Add money")
    assert "Added $12.34 to the routed wallet" in page.locator(".flash").inner_text()
    first_line = page.locator("table.ledger tbody tr").first
    assert "April research budget" in first_line.inner_text()
    assert first_line.locator(".money").first.get_attribute("data-micros") == "12340000"
    # The charge of the request sits in the same ledger, linked to its receipt.
    page.click(f"table.ledger a[href='/receipts/{request_id}']")
    assert request_id in page.locator("h1").inner_text()
    page.go_back()
    screenshot(page, "10-wallets")

    for name, path in (("11-routes", "/routes"), ("12-models", "/models"), ("13-overview", "/")):
        page.goto(f"{base}{path}")
        screenshot(page, name)
    assert page.locator("figure.chart svg rect").count() > 0  # spend is charted

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/keys/{key_id}")
    screenshot(page, "14-key-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("text=Revoke…")
    page.click("button:has-text('Revoke the key')")
    assert page.locator("h1 .badge").inner_text() == "revoked"
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

    page.click("button:has-text('Sign out')")
    assert "You are signed out" in page.locator(".flash").inner_text()
    page.goto(f"{base}/wallets")
    assert "/signin" in page.url
    gateway.audit_ok()


def test_a_form_without_its_csrf_token_is_refused_even_with_a_session(gateway: Gateway, page: Any) -> None:
    sign_in(page, gateway.base_url)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=gateway.base_url, cookies=cookies) as client:
        refused = client.post("/wallets/topup", data={"org_id": gateway.org_id, "kind": "routed", "amount": "5"})
    assert refused.status_code == 403
    assert "security token" in refused.text
    page.goto(f"{gateway.base_url}/wallets?kind=routed")
    assert page.locator("table.ledger tbody tr").count() == 1  # only the seed's top-up
