"""BOLA/BFLA on the dashboard: every page × every org role × ids (and ``?org=``) of a foreign org.

The cases come from the page table itself (``DASHBOARD_ACCESS``), so a new page is covered without
writing a test for it. A page a role may not open sends it back to ``/me`` (303); a foreign record
answers 404; nothing the foreign org owns appears in any answer, and the foreign org is unchanged.
"""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.admin.access import DASHBOARD_ACCESS
from glasskey.dashboard import build_dashboard
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import get_key
from glasskey.people.holders import create_person_key
from glasskey.people.invitations import invitation_status, invite, list_invitations
from glasskey.people.limits import OrgLimits, get_limits
from glasskey.people.members import list_members
from glasskey.people.principal import Principal
from glasskey.people.tokens import create_token, get_token
from people_helpers import PASSWORD, PEPPER, add_receipt, make_team

# Forms that would pass validation, so a refusal can only come from the gate or the handler.
BODIES = {
    "/me/org": {"org_id": "{org_id}"},
    "/members/{user_id}/role": {"role": "viewer"},
    "/members/{user_id}/remove": {"fingerprint": "0" * 64},
    "/invitations": {"email": "x@elsewhere.example", "role": "viewer"},
    "/limits": {"settlements": "routed", "rpm": "1"},
    "/account/tokens": {"token_name": "mine", "token_role": "viewer", "token_days": "1"},
}
PAGES = [
    (method, path)
    for (method, path), rule in DASHBOARD_ACCESS.items()
    if rule.scope != "public" and path != "/signout"  # signing out would end the session under test
]


@pytest.fixture
def world(services):
    with services.db.write() as conn:
        make_team(conn, "mine")
        target = make_team(conn, "zephyr")
        holder = Principal(role="member", user_id=target.member.id, email=target.member.email, org_id=target.org_id)
        key, _, _ = create_person_key(conn, holder, pepper=PEPPER, name="zephyr key", policy=KeyPolicy(), now=NOW)
        add_receipt(conn, key, "req_zephyr")
        invitation, _ = invite(
            conn, pepper=PEPPER, actor_id=target.owner.id, actor_role="owner", org_id=target.org_id,
            email="invitee@zephyr.example", role="viewer", now=services.clock(),
        )  # fmt: skip
        token, _ = create_token(
            conn, pepper=PEPPER, user_id=target.member.id, org_id=target.org_id, role="member", name="zephyr token",
            now=services.clock(),
        )  # fmt: skip
    ids = {
        "org_id": target.org_id,
        "user_id": target.member.id,
        "key_id": key.id,
        "request_id": "req_zephyr",
        "invitation_id": invitation.id,
        "token_id": token.id,
    }
    secrets = {target.org_id, "zephyr", key.id, key.public_id, target.member.id, target.owner.id, invitation.id}
    secrets |= {token.id, token.public_id}
    yield target, ids, secrets
    with services.db.read() as conn:  # the foreign org is exactly as it was
        assert get_limits(conn, target.org_id) == OrgLimits()
        assert {m.role for m in list_members(conn, target.org_id)} == {"owner", "billing", "member", "viewer"}
        assert get_key(conn, key.id).status == "active"
        [still] = list_invitations(conn, target.org_id)
        assert invitation_status(still, services.clock()) == "pending"
        assert get_token(conn, token.id).revoked_at is None


def _signed_in(client: TestClient, email: str) -> str:
    page = client.get("/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    client.post("/signin", data={"csrf_token": csrf.group(1), "email": email, "password": PASSWORD})
    me = client.get("/me")
    assert me.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', me.text)
    assert token is not None
    return token.group(1)


@pytest.mark.parametrize("role", ["owner", "billing", "member", "viewer"])
def test_no_role_reaches_a_foreign_orgs_records_through_any_page(services, world, role):
    _target, ids, secrets = world
    assert ("GET", "/members") in PAGES and ("POST", "/invitations/{invitation_id}/revoke") in PAGES
    assert ("POST", "/account/tokens/{token_id}/revoke") in PAGES
    reached = []
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        csrf = _signed_in(client, f"{role}@mine.example")
        for method, path in PAGES:
            # An id this test does not know (a new page's) gets a made-up one: the refusal must still come.
            url = re.sub(r"\{(\w+)\}", lambda match: ids.get(match.group(1), "id_unknown"), path)
            body = {name: value.format(**ids) for name, value in BODIES.get(path, {}).items()}
            response = client.request(
                method,
                url,
                params={"org": ids["org_id"]},  # the operator's org picker: never a person's way into an org
                data={"csrf_token": csrf, **body} if method == "POST" else None,
            )
            sent = f"{url} {ids['org_id']} {body}"  # what the caller sent may come back (an echo is no leak)
            leaked = [secret for secret in secrets if secret in response.text and secret not in sent]
            refused = response.status_code in (403, 404) or (
                response.status_code == 303 and response.headers["location"] in ("/me", "/signin")
            )
            if leaked or ("{" in path and not refused):
                reached.append((method, path, response.status_code, leaked))
    assert reached == [], reached
