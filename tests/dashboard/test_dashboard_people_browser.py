"""The dashboard in headless Chromium for people: an owner, a member and a viewer sign in by email.

The owner manages the org (a role change, an invitation whose link is shown once, limits with an
error next to its field, the audit log filtered); the member sees their own keys, reads the limits
and switches to their other org; the viewer reads the members with no form to change them, and
is sent back from the audit log, which is the owners'. Screenshots go to
``test-artifacts/screenshots`` (not committed; the ones in ``docs/screenshots/people-*.png`` are
copies).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest_helpers import NOW
from dashboard.conftest import screenshot
from gateway_fixtures import Gateway
from glasskey.keys.policy import KeyPolicy
from glasskey.orgs.service import create_org
from glasskey.people.audit import Actor, record
from glasskey.people.holders import create_person_key
from glasskey.people.members import add_member
from glasskey.people.principal import Principal
from glasskey.people.users import create_user, get_user

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a long passphrase 42"


def _people(gateway: Gateway) -> dict[str, str]:
    """owner, member and viewer of the gateway's org, keys for the first two; the member also views a second org."""
    prefixes = {}
    with gateway.services.db.write() as conn:
        users = {}
        for role in ("owner", "member", "viewer"):
            user = users[role] = create_user(conn, f"{role}@acme.example", PASSWORD, NOW)
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
        second = create_org(conn, "globex", NOW)
        add_member(conn, "operator", second.id, users["member"].id, "viewer", NOW)
    return prefixes


def _sign_in(page: Any, base_url: str, role: str) -> None:
    page.goto(f"{base_url}/signin")
    page.fill("#email", f"{role}@acme.example")
    page.fill("#password", PASSWORD)
    page.click("form:has(#email) button")
    page.wait_for_url(f"{base_url}/me")


def test_an_owner_manages_members_invitations_limits_and_reads_the_audit_log(gateway: Gateway, page: Any) -> None:
    prefixes = _people(gateway)
    base = gateway.base_url
    _sign_in(page, base, "owner")
    assert prefixes["member"] in page.inner_text("main") and prefixes["owner"] in page.inner_text("main")
    page.click("nav.tabs >> text=Members")
    page.select_option("tr[data-member='viewer@acme.example'] select", "member")
    page.click("tr[data-member='viewer@acme.example'] button:has-text('Change')")
    page.wait_for_selector("text=viewer@acme.example is now member.")
    screenshot(page, "people-owner-members")
    page.click("tr[data-member='member@acme.example'] >> text=Remove…")
    plan = page.inner_text("main")  # the plan, before anything happens
    assert prefixes["member"] in plan and "hand it to owner@acme.example" in page.content()
    screenshot(page, "people-owner-remove-plan")
    page.click("text=Cancel")
    page.click("nav.tabs >> text=Invitations")
    page.fill("#invite-email", "newcomer@acme.example")
    page.click("button:has-text('Make a one-time link')")
    link = page.inner_text("#invitation-link")
    assert "/invitation?token=" in link
    screenshot(page, "people-owner-invitation-link")
    page.goto(f"{base}/invitations")
    assert "newcomer@acme.example" in page.inner_text("main") and link not in page.content()  # shown once
    page.click("nav.tabs >> text=Limits")
    page.fill("#limit-rpm", "sixty")
    page.click("button:has-text('Save the limits')")
    assert "is not a whole number" in page.inner_text("#rpm-error")
    screenshot(page, "people-owner-limits-error")
    page.fill("#limit-rpm", "60")
    page.fill("#limit-budget-total", "25")
    page.click("button:has-text('Save the limits')")
    page.wait_for_selector("text=The org's limits are saved")
    page.click("nav.tabs >> text=Audit log")
    page.fill("#audit-action", "org.limits")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("tr[data-action='org.limits']")
    assert page.locator("tr[data-action]").count() == 1
    screenshot(page, "people-owner-audit")


def test_a_member_sees_their_keys_reads_the_limits_and_switches_org(gateway: Gateway, page: Any) -> None:
    prefixes = _people(gateway)
    base = gateway.base_url
    _sign_in(page, base, "member")
    text = page.inner_text("main")
    assert prefixes["member"] in text and prefixes["owner"] not in text and "service: nightly" in text
    screenshot(page, "people-member-me")
    page.click("text=Make a key")
    page.fill("#key-name", "research agent")
    page.fill("#key-service", "research-agent")
    page.fill("#key-rpm", "30")
    page.click("button:has-text('Make the key')")
    assert page.inner_text("#secret").startswith("gk-")
    screenshot(page, "people-member-key-created")
    page.goto(f"{base}/me")
    assert "service: research-agent" in page.inner_text("main")
    page.click("nav.tabs >> text=Limits")
    assert page.locator("fieldset[disabled]").count() == 1 and page.locator("text=Save the limits").count() == 0
    assert page.locator("nav.tabs >> text=Invitations").count() == 0
    page.goto(f"{base}/routes")
    page.wait_for_url(f"{base}/me")  # an operator page sends a person back
    page.select_option("#switch-org", label="globex (viewer)")
    page.click("button:has-text('Switch org')")
    page.wait_for_url(f"{base}/me")
    assert page.inner_text("h1") == "globex" and page.inner_text("[data-role]") == "viewer"
    assert prefixes["member"] not in page.inner_text("main")  # only the org in view
    screenshot(page, "people-member-switched-org")


def test_a_viewer_reads_members_without_forms_and_not_the_audit_log(gateway: Gateway, page: Any) -> None:
    _people(gateway)
    with gateway.services.db.write() as conn:  # a change the owner made, as the admin API records it
        actor = Actor(get_user(conn, "owner@acme.example").id, "owner@acme.example", "203.0.113.7")
        record(conn, actor, "org.limits", NOW, org_id=gateway.org_id, target="acme", after={"rpm_max": 60})
    base = gateway.base_url
    _sign_in(page, base, "viewer")
    page.click("nav.tabs >> text=Members")
    assert "owner@acme.example" in page.inner_text("main")
    assert page.locator("main form select[name='role']").count() == 0
    assert page.locator("nav.tabs >> text=Audit log").count() == 0  # the log is the owners'
    screenshot(page, "people-viewer-members")
    page.goto(f"{base}/audit")
    page.wait_for_url(f"{base}/me")  # owners only: the owner's address and change stay out of sight
    assert "203.0.113.7" not in page.content() and "rpm_max" not in page.content()
    page.goto(f"{base}/invitations")
    page.wait_for_url(f"{base}/me")  # owners only
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{base}/signin?signed_out=1")
