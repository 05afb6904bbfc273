"""The dashboard in headless Chromium for people: an owner, a member and a viewer sign in by email.

Each sees ``/me`` with what their role may read; a member who asks for an operator page lands back on
it. Screenshots go to ``test-artifacts/screenshots`` (not committed).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest_helpers import NOW
from dashboard.conftest import screenshot
from gateway_fixtures import Gateway
from glasskey.keys.policy import KeyPolicy
from glasskey.people.holders import create_person_key
from glasskey.people.members import add_member
from glasskey.people.principal import Principal
from glasskey.people.users import create_user

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a long passphrase 42"


def _people(gateway: Gateway) -> dict[str, str]:
    prefixes = {}
    with gateway.services.db.write() as conn:
        for role in ("owner", "member", "viewer"):
            user = create_user(conn, f"{role}@acme.example", PASSWORD, NOW)
            add_member(conn, "operator", gateway.org_id, user.id, role, NOW)
            if role != "viewer":
                holder = Principal(role=role, user_id=user.id, email=user.email, org_id=gateway.org_id)
                key, _, _ = create_person_key(
                    conn,
                    holder,
                    pepper=gateway.services.pepper,
                    name=f"{role}'s key",
                    policy=KeyPolicy(),
                    now=NOW,
                    service="nightly" if role == "member" else None,
                )
                prefixes[role] = key.prefix
    return prefixes


def _sign_in(page: Any, base_url: str, role: str) -> None:
    page.goto(f"{base_url}/signin")
    page.fill("#email", f"{role}@acme.example")
    page.fill("#password", PASSWORD)
    page.click("form:has(#email) button")
    page.wait_for_url(f"{base_url}/me")


@pytest.mark.parametrize("role", ["owner", "member", "viewer"])
def test_a_person_signs_in_and_sees_what_their_role_may_read(gateway: Gateway, page: Any, role: str) -> None:
    prefixes = _people(gateway)
    _sign_in(page, gateway.base_url, role)
    text = page.inner_text("main")
    screenshot(page, f"people-{role}-me")
    assert f"{role}@acme.example" in text and "acme" in text
    assert "Wallets" in text and "Receipts and failures" in text
    if role == "member":
        assert prefixes["member"] in text and prefixes["owner"] not in text
        assert "service: nightly" in text
        page.goto(f"{gateway.base_url}/routes")
        page.wait_for_url(f"{gateway.base_url}/me")  # an operator page sends a person back
    else:
        assert prefixes["member"] in text and prefixes["owner"] in text
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{gateway.base_url}/signin?signed_out=1")
