"""A person's account page in headless Chromium: a password error next to its field, TOTP set up from the
secret shown as text, the recovery codes and an access token each shown once.

Screenshots go to ``test-artifacts/screenshots`` (not committed; ``docs/screenshots/account-*.png`` are copies).
"""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from conftest_helpers import NOW
from dashboard.conftest import screenshot
from gateway_fixtures import Gateway
from glasskey.people.members import add_member
from glasskey.people.users import create_user

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a long passphrase 42"


def test_a_member_sets_up_a_second_factor_and_makes_an_access_token(gateway: Gateway, page: Any) -> None:
    with gateway.services.db.write() as conn:
        user = create_user(conn, "member@acme.example", PASSWORD, NOW)
        add_member(conn, "operator", gateway.org_id, user.id, "member", NOW)
    base = gateway.base_url
    page.goto(f"{base}/signin")
    page.fill("#email", "member@acme.example")
    page.fill("#password", PASSWORD)
    page.click("form:has(#email) button")
    page.wait_for_url(f"{base}/me")
    page.click("nav.tabs >> text=Account")

    page.fill("#current-password", PASSWORD)
    page.fill("#new-password", "aaaaaaaaaaaaaaaa")
    page.fill("#new-password-again", "aaaaaaaaaaaaaaaa")
    page.click("button:has-text('Change the password')")
    assert "at least 5 different characters" in page.inner_text("#new_password-error")
    screenshot(page, "account-password-error")

    page.click("text=Set up a second factor")
    secret = page.inner_text("#totp-secret")
    assert page.inner_text("#totp-uri").startswith("otpauth://totp/glasskey:member%40acme.example?secret=" + secret)
    screenshot(page, "account-totp-setup")
    page.fill("#totp-confirm-code", pyotp.TOTP(secret).now())
    page.click("button:has-text('Turn the second factor on')")
    codes = page.inner_text("#recovery-codes").split()
    assert len(codes) == 10
    screenshot(page, "account-recovery-codes")
    assert page.url == f"{base}/account"  # a reload shows the account, never the codes again

    page.goto(f"{base}/account")
    page.fill("#token-name", "nightly report")
    page.select_option("#token-role", "viewer")
    page.fill("#token-days", "7")
    page.click("button:has-text('Make a token')")
    token = page.inner_text("#token-secret")
    assert token.startswith("gkp-")
    screenshot(page, "account-token-created")

    page.goto(f"{base}/account")
    text = page.inner_text("main")
    assert "On." in text and "10 unused" in text and "nightly report" in text and token not in page.content()
    assert not any(code in page.content() for code in codes)
    screenshot(page, "account-page")
