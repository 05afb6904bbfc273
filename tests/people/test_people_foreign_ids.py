"""BOLA/BFLA: every admin endpoint × every org role × ids of a foreign org → 403/404, never a byte of its data.

The cases come from the role table itself (``ADMIN_ACCESS``), so a new endpoint is covered without
writing a test for it.
"""

from __future__ import annotations

import re

import pytest

from conftest_helpers import NOW
from glasskey.admin.access import ADMIN_ACCESS
from glasskey.keys.policy import KeyPolicy
from glasskey.people.holders import create_person_key
from glasskey.people.invitations import invitation_status, invite, list_invitations
from glasskey.people.principal import Principal
from glasskey.people.tokens import list_tokens
from people_api import admin_client, org_with_tokens
from people_helpers import PEPPER, add_receipt

# Bodies that would pass validation, so a refusal can only come from the guard or the handler.
BODIES = {
    "/orgs/{org_id}/wallets/{kind}/topups": {"amount_micros": 1},
    "/orgs/{org_id}/members": {"email": "member@target.example", "role": "viewer"},
    "/orgs/{org_id}/members/{user_id}": {"role": "viewer"},
    "/orgs/{org_id}/limits": {"rpm_max": 1},
    "/orgs/{org_id}/invitations": {"email": "x@target.example", "role": "viewer"},
    "/keys/{key_id}": {"name": "stolen"},
    "/orgs/{org_id}/members/{user_id}/offboarding/confirm": {"fingerprint": "0" * 64},
}
# The model catalog is the gateway's, not an org's: it is the one path with an id and no owner.
TAKES_IDS = [
    (method, path)
    for (method, path), rule in ADMIN_ACCESS.items()
    if "{" in path and rule.scope != "public" and not path.startswith("/models/")
]


@pytest.fixture
def world(services):
    mine, target = org_with_tokens(services, "mine"), org_with_tokens(services, "target")
    with services.db.write() as conn:
        team = target.team
        holder = Principal(role="member", user_id=team.member.id, email=team.member.email, org_id=team.org_id)
        key, _, _ = create_person_key(conn, holder, pepper=PEPPER, name="target key", policy=KeyPolicy(), now=NOW)
        add_receipt(conn, key, "req_target")
        token_id = list_tokens(conn, team.member.id)[0].id
        # A key of the caller's own org (every role's, through its member): the query must not let it vouch.
        own = mine.team
        mine_holder = Principal(role="member", user_id=own.member.id, email=own.member.email, org_id=own.org_id)
        own_key, _, _ = create_person_key(conn, mine_holder, pepper=PEPPER, name="own", policy=KeyPolicy(), now=NOW)
        invitation, _ = invite(
            conn, pepper=PEPPER, actor_id=team.owner.id, actor_role="owner", org_id=team.org_id,
            email="invitee@target.example", role="viewer", now=services.clock(),
        )  # fmt: skip
    ids = {
        "org_id": target.team.org_id,
        "key_id": key.id,
        "request_id": "req_target",
        "user_id": target.team.member.id,
        "kind": "credit",
        "route_id": "rte_x",
        "name": "gpt-4o-mini",
        "token_id": token_id,
        "own_key_id": own_key.id,
        "invitation_id": invitation.id,
    }
    secrets = {
        target.team.org_id, "target", key.id, key.public_id, target.team.member.id, target.team.owner.id, invitation.id,
    }  # fmt: skip
    with admin_client(services) as client:
        yield client, mine, ids, secrets
    with services.db.read() as conn:  # no role revoked the foreign org's invitation
        assert invitation_status(list_invitations(conn, target.team.org_id)[0], services.clock()) == "pending"


@pytest.mark.parametrize("role", ["owner", "billing", "member", "viewer"])
def test_no_role_reaches_a_foreign_orgs_records_through_any_endpoint(world, role):
    client, mine, ids, secrets = world
    reached = []
    for method, path in TAKES_IDS:
        # An id this test does not know (a new endpoint's) gets a made-up one: the refusal must still come.
        url = re.sub(r"\{(\w+)\}", lambda match: ids.get(match.group(1), "id_unknown"), path)
        response = client.request(method, url, json=BODIES.get(path, {}), headers=mine.auth(role))
        leaked = [secret for secret in secrets if secret in response.text and secret not in url]
        if response.status_code not in (403, 404) or leaked:
            reached.append((method, path, response.status_code, leaked))
    assert reached == []


QUERY_SCOPED = [(method, path) for (method, path), rule in ADMIN_ACCESS.items() if rule.scope.endswith("_query")]


@pytest.mark.parametrize("role", ["owner", "billing", "member", "viewer"])
def test_no_role_reaches_a_foreign_orgs_records_through_the_query(world, role):
    client, mine, ids, secrets = world
    assert QUERY_SCOPED  # the table has such endpoints; a renamed scope must not empty this test
    reached = []
    for method, path in QUERY_SCOPED:
        for params in (
            {"org_id": ids["org_id"]},
            {"key_id": ids["key_id"]},
            {"key_id": ids["own_key_id"]},
            {"key_id": ids["own_key_id"], "org_id": ids["org_id"]},
        ):
            response = client.request(method, path, params=params, headers=mine.auth(role))
            leaked = [secret for secret in secrets if secret in response.text and secret not in str(params)]
            # Only the own key's receipts may be listed, and they hold nothing of the other org.
            allowed = (400, 403, 404) if params.get("key_id") != ids["own_key_id"] else (200, 400, 403, 404)
            if response.status_code not in allowed or leaked:
                reached.append((method, path, params, response.status_code, leaked))
    assert reached == []
