"""The org's people pages on the dashboard: members, invitations, limits, the audit log, the org switcher.

Each is driven over HTTP as a browser would (the session cookie, the CSRF token of the page); the
owner changes roles, removes a member after seeing the plan, invites and revokes, and sets limits;
a viewer reads; refused values are shown next to their field and nothing changes.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.dashboard import build_dashboard
from glasskey.errors import AdminAuthError
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import get_key
from glasskey.people.audit import list_events
from glasskey.people.holders import create_person_key, keys_of
from glasskey.people.invitations import accept
from glasskey.people.limits import get_limits
from glasskey.people.members import add_member, role_in
from glasskey.people.principal import Principal
from glasskey.people.tables import memberships
from people_helpers import PASSWORD, PEPPER, make_team

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


class Browser:
    """A TestClient signed in to the dashboard, sending forms with the session's CSRF token."""

    def __init__(self, client: TestClient, email: str | None) -> None:
        self.client = client
        page = client.get("/signin").text
        data = {
            "csrf_token": _csrf(page),
            **({"email": email, "password": PASSWORD} if email else {"admin_token": ADMIN_TOKEN}),
        }
        signed_in = client.post("/signin", data=data)
        assert signed_in.status_code == 303, signed_in.text
        self.csrf = _csrf(client.get("/members").text)

    def post(self, path: str, **data: str):
        return self.client.post(path, data={"csrf_token": self.csrf, **data})


def _key(conn, team, role, service=None):
    user = team.of(role)
    holder = Principal(role=role, user_id=user.id, email=user.email, org_id=team.org_id)
    key, _, _ = create_person_key(
        conn, holder, pepper=PEPPER, name=f"{role} key", policy=KeyPolicy(), now=NOW, service=service
    )
    return key


def test_an_owner_changes_a_role_and_removes_a_member_after_seeing_the_plan(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
        personal, nightly = _key(conn, acme, "member"), _key(conn, acme, "member", service="nightly")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        owner = Browser(client, "owner@acme.example")
        page = client.get("/members").text
        assert "member@acme.example" in page and "billing@acme.example" in page
        assert f"/members/{acme.owner.id}/role" not in page  # no form on an equal role
        changed = owner.post(f"/members/{acme.viewer.id}/role", role="member")
        assert changed.status_code == 303
        refused = owner.post(f"/members/{acme.billing.id}/role", role="owner")
        assert refused.status_code == 403
        assert re.search(rf'id="role-{acme.billing.id}-error" role="alert">A owner cannot grant', refused.text)
        plan = client.get(f"/members/{acme.member.id}/remove", params={f"service.{nightly.id}": acme.owner.id})
        assert plan.status_code == 200 and personal.prefix in plan.text and "hand it to owner@acme.example" in plan.text
        fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]{64})"', plan.text)
        assert fingerprint is not None
        stale = owner.post(
            f"/members/{acme.member.id}/remove", fingerprint="0" * 64, **{f"service.{nightly.id}": acme.owner.id}
        )
        assert stale.status_code == 409 and "changed since it was shown" in stale.text
        done = owner.post(
            f"/members/{acme.member.id}/remove",
            fingerprint=fingerprint.group(1),
            **{f"service.{nightly.id}": acme.owner.id},
        )
        assert done.status_code == 303
    with services.db.read() as conn:
        assert role_in(conn, acme.org_id, acme.viewer.id) == "member"
        assert role_in(conn, acme.org_id, acme.billing.id) == "billing"
        assert role_in(conn, acme.org_id, acme.member.id) is None
        assert get_key(conn, personal.id).status == "revoked" and get_key(conn, nightly.id).status == "active"
        actions = [event["action"] for event in list_events(conn, org_id=acme.org_id)]
    assert "member.role" in actions and "member.offboard" in actions


def test_an_owner_invites_sees_the_link_once_and_revokes_another(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        owner = Browser(client, "owner@acme.example")
        made = owner.post("/invitations", email="new@acme.example", role="member")
        assert made.status_code == 201
        link = re.search(r'id="invitation-link">[^<]*/invitation\?token=([\w-]+)<', made.text)
        assert link is not None
        listed = client.get("/invitations").text
        assert "new@acme.example" in listed and link.group(1) not in listed  # the link is never shown again
        too_high = owner.post("/invitations", email="boss@acme.example", role="owner")
        assert too_high.status_code == 403 and 'id="invite-role-error" role="alert"' in too_high.text
        assert 'value="boss@acme.example"' in too_high.text  # the typed value stays
        other = owner.post("/invitations", email="later@acme.example", role="viewer")
        other_link = re.search(r"token=([\w-]+)<", other.text)
        assert other_link is not None
        invitation_id = re.search(
            r'"later@acme.example">.*?/invitations/(inv_\w+)/revoke', client.get("/invitations").text, re.S
        )
        assert invitation_id is not None
        assert owner.post(f"/invitations/{invitation_id.group(1)}/revoke").status_code == 303
        assert "ended" in client.get("/invitations").text
    with services.db.write() as conn:
        user, _ = accept(
            conn, pepper=PEPPER, secret=link.group(1), password="a new long passphrase", now=services.clock()
        )
        assert role_in(conn, acme.org_id, user.id) == "member"
    with services.db.write() as conn, pytest.raises(AdminAuthError, match="not valid"):
        accept(conn, pepper=PEPPER, secret=other_link.group(1), password="a new long passphrase", now=services.clock())


def test_limits_are_read_by_everyone_and_set_by_owners_with_errors_next_to_the_fields(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        owner = Browser(client, "owner@acme.example")
        bad = owner.post(
            "/limits", models="gpt-4o-mini, no-such-model", settlements="routed", budget_total="1e5", rpm="ten"
        )
        assert bad.status_code == 400
        for field in ("models", "budget_total", "rpm"):
            assert f'id="{field}-error" role="alert"' in bad.text
        assert "no-such-model" in bad.text
        saved = owner.post(
            "/limits",
            models="gpt-4o-mini",
            settlements="routed",
            budget_total="25",
            budget_daily="2.50",
            rpm="60",
            lifetime_days="30",
        )
        assert saved.status_code == 303
    with services.db.read() as conn:
        limits = get_limits(conn, acme.org_id)
    assert limits.allowed_models == ("gpt-4o-mini",) and limits.settlements == ("routed",)
    assert (limits.budget_total_max_micros, limits.budget_daily_max_micros) == (25_000_000, 2_500_000)
    assert (limits.rpm_max, limits.key_lifetime_max_seconds) == (60, 30 * 86400)
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        viewer = Browser(client, "viewer@acme.example")
        page = client.get("/limits").text
        assert 'value="25"' in page and 'value="2.5"' in page and "Save the limits" not in page and "disabled" in page
        assert viewer.post("/limits", rpm="1", settlements="routed").headers["location"] == "/me"  # the gate
    with services.db.read() as conn:
        assert get_limits(conn, acme.org_id).rpm_max == 60


def test_the_audit_log_page_filters_and_exports_the_orgs_events_only(services):
    with services.db.write() as conn:
        acme, other = make_team(conn, "acme"), make_team(conn, "other")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "owner@other.example").post("/limits", settlements="official")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        owner = Browser(client, "owner@acme.example")
        owner.post("/limits", rpm="5", settlements="routed")
        page = client.get("/audit").text
        assert "org.limits" in page and "owner@acme.example" in page and other.org_id not in page
        assert "owner@other.example" not in page
        filtered = client.get("/audit", params={"actor": "owner@acme.example", "action": "org.limits"}).text
        assert filtered.count('data-action="org.limits"') == 1
        unknown = client.get("/audit", params={"actor": "nobody@acme.example"})
        assert unknown.status_code == 400 and 'id="audit-actor-error" role="alert"' in unknown.text
        exported = client.get("/audit.csv", params={"action": "org.limits"})
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [row["actor_email"] for row in rows] == ["owner@acme.example"] and rows[0]["org_id"] == acme.org_id
        assert (
            client.get("/audit", params={"org": other.org_id}).text.count("owner@other.example") == 0
        )  # ?org= is not a person's
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, None)
        every = client.get("/audit").text
        assert "owner@acme.example" in every and "owner@other.example" in every
        only_other = client.get("/audit", params={"org": other.org_id}).text
        assert "owner@other.example" in only_other and "owner@acme.example" not in only_other


def test_only_owners_open_the_audit_log_page_and_its_csv(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "owner@acme.example").post("/limits", rpm="5", settlements="routed")
        assert 'href="/audit"' in client.get("/members").text
    for role in ("billing", "member", "viewer"):
        with TestClient(build_dashboard(services), follow_redirects=False) as client:
            Browser(client, f"{role}@acme.example")
            assert 'href="/audit"' not in client.get("/members").text  # no tab to a page it may not open
            for path in ("/audit", "/audit.csv"):
                sent_back = client.get(path, params={"action": "org.limits"})
                assert sent_back.status_code == 303 and sent_back.headers["location"] == "/me", (role, path)
                assert "org.limits" not in sent_back.text
    # A session signed in as owner and demoted since: the page reads the role in the database.
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "owner@acme.example")
        with services.db.write() as conn:
            conn.execute(
                memberships.update()
                .where(memberships.c.org_id == acme.org_id, memberships.c.user_id == acme.owner.id)
                .values(role="member")
            )
        for path in ("/audit", "/audit.csv"):
            demoted = client.get(path)
            assert demoted.status_code == 303 and "org.limits" not in demoted.text, path


def test_a_person_in_two_orgs_switches_and_sees_only_that_orgs_data(services):
    with services.db.write() as conn:
        acme, other = make_team(conn, "acme"), make_team(conn, "other")
        third = make_team(conn, "third")
        add_member(conn, "operator", other.org_id, acme.member.id, "viewer", NOW)
        mine, others = _key(conn, acme, "member"), _key(conn, other, "owner")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        member = Browser(client, "member@acme.example")
        first = client.get("/me").text
        assert mine.prefix in first and others.prefix not in first and "Switch org" in first
        assert member.post("/me/org", org_id=other.org_id).headers["location"] == "/me"
        switched = client.get("/me").text
        assert others.prefix in switched and mine.prefix not in switched
        assert re.search(r"<b data-role>viewer</b>", switched)
        assert "owner@other.example" in client.get("/members").text
        assert "owner@acme.example" not in client.get("/members").text
        refused = member.post("/me/org", org_id=third.org_id)
        assert refused.status_code == 404 and third.org_id not in client.get("/me").text


def test_an_owner_reads_the_sign_ins_of_the_orgs_people(services):
    with services.db.write() as conn:
        acme, other = make_team(conn, "acme"), make_team(conn, "other")
        add_member(conn, "operator", other.org_id, acme.member.id, "viewer", NOW)
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "member@acme.example")
    with services.db.read() as conn:  # one row per org the person belongs to
        assert [e["target"] for e in list_events(conn, org_id=acme.org_id, action="signin")] == ["member@acme.example"]
        assert [e["target"] for e in list_events(conn, org_id=other.org_id, action="signin")] == ["member@acme.example"]
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "owner@acme.example")
        page = client.get("/audit", params={"action": "signin"}).text
    assert "member@acme.example" in page and "owner@acme.example" in page


def test_a_member_makes_a_key_for_a_service_within_the_orgs_limits_once(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, "owner@acme.example").post("/limits", settlements="routed", rpm="60")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        member = Browser(client, "member@acme.example")
        form = client.get("/me/keys/new").text
        nonce = re.search(r'name="nonce" value="([^"]+)"', form)
        assert nonce is not None
        fields = {
            "nonce": nonce.group(1),
            "name": "bot",
            "service": "nightly",
            "models_mode": "all",
            "settlement": "routed",
        }
        over = member.post("/me/keys/new", **fields, rpm_limit="600")
        assert over.status_code == 403 and 'id="rpm_limit-error" role="alert">Over the org' in over.text
        made = member.post("/me/keys/new", **fields, rpm_limit="30")
        assert made.status_code == 201 and re.search(r'id="secret" class="secret">gk-\w+-\w+<', made.text)
        again = member.post("/me/keys/new", **fields, rpm_limit="30")
        assert again.status_code == 409  # a resent form makes no second key
        page = client.get("/me").text
        assert "service: nightly" in page and "member@acme.example" in page
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        viewer = Browser(client, "viewer@acme.example")
        assert client.get("/me/keys/new").headers["location"] == "/me"
        assert viewer.post("/me/keys/new", name="x").headers["location"] == "/me"
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, None)  # the operator has no person to hold a key: sent to the Keys page's form
        assert client.get("/me/keys/new").headers["location"] == "/keys/new"
        assert client.get("/keys").status_code == 200  # and still signed in
    with services.db.read() as conn:
        [(key, holder)] = keys_of(conn, acme.org_id, acme.member.id)
        assert key.policy.rpm_limit == 30 and holder.service_name == "nightly"
        assert [e["action"] for e in list_events(conn, org_id=acme.org_id, action="key.create")] == ["key.create"]


def test_billing_makes_keys_on_the_dashboard_within_the_orgs_limits(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        assert Browser(client, "owner@acme.example").post("/limits", settlements="routed", rpm="77").status_code == 303
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        billing = Browser(client, "billing@acme.example")
        form = client.get("/me/keys/new").text
        assert "It stays within the org" in form and 'placeholder="the org limit"' in form
        nonce = re.search(r'name="nonce" value="([^"]+)"', form)
        assert nonce is not None
        fields = {"nonce": nonce.group(1), "name": "invoices", "models_mode": "all", "settlement": "routed"}
        over = billing.post("/me/keys/new", **fields, rpm_limit="100000")
        assert over.status_code == 403 and 'id="rpm_limit-error" role="alert">Over the org' in over.text
        assert billing.post("/me/keys/new", **fields).status_code == 201
    with services.db.read() as conn:
        [(key, _)] = keys_of(conn, acme.org_id, acme.billing.id)
        assert key.policy.rpm_limit == 77


def test_the_operator_picks_the_org_of_the_people_pages(services):
    with services.db.write() as conn:
        make_team(conn, "acme")
        other = make_team(conn, "other")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        Browser(client, None)
        first = client.get("/members").text  # the first org by name
        assert "owner@acme.example" in first and "owner@other.example" not in first
        assert f'href="/members?org={other.org_id}"' in first
        picked = client.get("/members", params={"org": other.org_id}).text
        assert "owner@other.example" in picked and "owner@acme.example" not in picked
        assert f'href="/limits?org={other.org_id}"' in picked  # the tabs keep the org
