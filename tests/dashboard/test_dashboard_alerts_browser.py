"""The Alerts page in headless Chromium: an owner sets a rule and the webhook (its secret shown once),
presses "Send test" and reads the receiver's answer in the delivery log; a member reads the notices
and the rules with no form to change them. Screenshots go to ``test-artifacts/screenshots`` (not
committed; the ones in ``docs/screenshots/alerts-*.png`` are copies)."""

from __future__ import annotations

from typing import Any

import pytest

from alert_receiver import receiver
from conftest_helpers import NOW
from dashboard.conftest import screenshot
from gateway_fixtures import Gateway
from glasskey.people.members import add_member
from glasskey.people.users import create_user

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a long passphrase 42"


def _sign_in(page: Any, gateway: Gateway, role: str) -> None:
    with gateway.services.db.write() as conn:
        user = create_user(conn, f"{role}@acme.example", PASSWORD, NOW)
        add_member(conn, "operator", gateway.org_id, user.id, role, NOW)
    page.goto(f"{gateway.base_url}/signin")
    page.fill("#email", f"{role}@acme.example")
    page.fill("#password", PASSWORD)
    page.click("form:has(#email) button")
    page.wait_for_url(f"{gateway.base_url}/me")
    page.click("nav.tabs >> text=Alerts")
    page.wait_for_url(f"{gateway.base_url}/alerts")


def test_an_owner_sets_a_rule_and_a_webhook_and_sends_a_test_that_shows_in_the_log(gateway: Gateway, page: Any) -> None:
    with receiver([(200, b"got it")]) as hook:
        _sign_in(page, gateway, "owner")
        assert page.locator("[data-rule-form]").count() == 1
        page.select_option("[data-rule-form] select[name=kind]", "key_budget")
        page.fill("[data-rule-form] input[name=budget_percents]", "70, 95")
        page.click("button:has-text('Save rule')")
        page.wait_for_selector("tr[data-rule='key_budget keys']")
        assert "70%, 95% of a budget" in page.inner_text("tr[data-rule='key_budget keys']")
        screenshot(page, "alerts-owner-rule")
        page.fill("[data-webhook-form] input[name=url]", hook.url)
        page.click("button:has-text('Save webhook')")
        secret = page.inner_text("[data-signing-secret]")
        assert secret.startswith("gkwh_")
        screenshot(page, "alerts-owner-webhook-secret")
        page.click("button:has-text('Send test')")
        page.wait_for_selector("text=Test delivery delivered")
        log = page.inner_text("[data-deliveries]")
        screenshot(page, "alerts-owner-test-delivered")
        content = page.content()
    assert "alert.test" in log and "200" in log and "got it" in log
    assert secret not in content and "data-signing-secret" not in content  # shown once, then only its mask
    tests = [got for got in hook.received if b'"alert.test"' in got.body]
    assert len(tests) == 1 and tests[0].path == "/hooks/glasskey"


def test_a_member_reads_the_notices_and_rules_without_a_form(gateway: Gateway, page: Any) -> None:
    _sign_in(page, gateway, "member")
    text = page.inner_text("main")
    screenshot(page, "alerts-member")
    assert "Needs attention" in text and "Rules" in text
    assert page.locator("tr[data-rule]").count() >= 1
    for form in ("[data-rule-form]", "[data-webhook-form]", "[data-test-form]", "[data-deliveries]"):
        assert page.locator(form).count() == 0, form
    assert page.locator("main form button:has-text('Remove')").count() == 0
