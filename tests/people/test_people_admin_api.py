"""The admin API for people: sign-in, tokens, /me/keys, limits, and escalation attempts that must fail."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pyotp
import pytest

from glasskey.keys.service import get_key
from glasskey.people.audit import list_events
from glasskey.people.throttle import ThrottleLimits, scopes
from glasskey.people.totp import enable_totp, new_totp_secret
from glasskey.people.users import get_user
from people_api import ADMIN, admin_client, org_with_tokens
from people_helpers import PASSWORD, PEPPER, add_receipt


@pytest.fixture
def client(services):
    with admin_client(services) as test_client:
        yield test_client


def test_signing_in_answers_a_token_shown_once_that_then_works(services, client):
    acme = org_with_tokens(services, "acme")
    signed_in = client.post("/signin", json={"email": "member@acme.example", "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert body["token"].startswith("gkp-") and body["role"] == "member" and body["org_id"] == acme.team.org_id
    auth = {"Authorization": f"Bearer {body['token']}"}
    me = client.get("/me", headers=auth).json()
    assert me["user"]["email"] == "member@acme.example" and me["role"] == "member"
    listed = client.get("/me/tokens", headers=auth).json()["data"]
    assert body["token"] not in str(listed) and body["prefix"] in str(listed)


def test_a_wrong_password_and_an_unknown_email_answer_alike_and_are_audited(services, client):
    org_with_tokens(services, "acme")
    wrong = client.post("/signin", json={"email": "member@acme.example", "password": "not the password!"})
    unknown = client.post("/signin", json={"email": "nobody@acme.example", "password": "not the password!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    with services.db.read() as conn:
        failures = [event for event in list_events(conn, action="signin") if event["outcome"] == "failed"]
    assert {event["target"] for event in failures} == {"member@acme.example", "nobody@acme.example"}
    assert all(event["address"] == "testclient" for event in failures)


def test_sign_in_is_throttled_per_address_with_retry_after(services, client):
    org_with_tokens(services, "acme")
    statuses = [
        client.post("/signin", json={"email": f"x{index}@acme.example", "password": "wrong password!!"}).status_code
        for index in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    # Even the right password waits now: a throttled answer never says whether a guess was right.
    refused = client.post("/signin", json={"email": "member@acme.example", "password": PASSWORD})
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["code"] == "too_many_failed_sign_ins"


def test_wrong_admin_tokens_are_throttled_and_audited(services, client):
    wrong = {"Authorization": "Bearer not-the-admin-token-0123456789"}
    statuses = [client.get("/orgs", headers=wrong).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    assert client.get("/orgs", headers=ADMIN).status_code == 429
    with services.db.read() as conn:
        assert len(list_events(conn, action="admin_api.authenticate")) == 10


def test_a_member_makes_keys_only_for_themselves_in_their_org_within_its_limits(services, client):
    acme, other = org_with_tokens(services, "acme"), org_with_tokens(services, "other")
    owner, member = acme.auth("owner"), acme.auth("member")
    limits = {"rpm_max": 30, "budget_total_max_micros": 2_000_000}
    assert client.put(f"/orgs/{acme.team.org_id}/limits", json=limits, headers=owner).status_code == 200
    made = client.post("/me/keys", json={"name": "script", "service": "nightly"}, headers=member)
    assert made.status_code == 201, made.text
    assert made.json()["rpm_limit"] == 30 and made.json()["org_id"] == acme.team.org_id
    assert made.json()["held_by"] == {"service": "nightly"}
    assert made.json()["responsible_user_id"] == acme.team.member.id
    over = client.post("/me/keys", json={"name": "greedy", "rpm_limit": 31}, headers=member)
    assert over.status_code == 403 and over.json()["error"]["code"] == "over_org_limit"
    # Ownership fields in a body are refused, never obeyed.
    for smuggled in ({"org_id": other.team.org_id}, {"user_id": acme.team.owner.id}, {"owner": "someone"}):
        refused = client.post("/me/keys", json={"name": "sneaky", **smuggled}, headers=member)
        assert refused.status_code == 400, refused.text
    assert client.post("/keys", json={"org_id": acme.team.org_id, "name": "x"}, headers=member).status_code == 403
    listed = client.get("/keys", params={"org_id": other.team.org_id}, headers=ADMIN).json()["data"]
    assert listed == []
    mine = client.get("/me/keys", headers=member).json()["data"]
    assert [key["name"] for key in mine] == ["script"]


def test_billing_makes_keys_within_the_orgs_limits_too(services, client):
    acme = org_with_tokens(services, "acme")
    limits = {"rpm_max": 77, "budget_total_max_micros": 2_000_000}
    assert client.put(f"/orgs/{acme.team.org_id}/limits", json=limits, headers=acme.auth("owner")).status_code == 200
    billing = acme.auth("billing")
    over = client.post("/me/keys", json={"name": "greedy", "rpm_limit": 100_000}, headers=billing)
    assert over.status_code == 403 and over.json()["error"]["code"] == "over_org_limit", over.text
    made = client.post("/me/keys", json={"name": "invoices"}, headers=billing)
    assert made.status_code == 201, made.text
    assert (made.json()["rpm_limit"], made.json()["budget_total_micros"]) == (77, 2_000_000)
    # Nor can a person below owner raise a key's policy afterwards: PATCH is the owner's and the operator's.
    for role in ("billing", "member"):
        raised = client.patch(f"/keys/{made.json()['id']}", json={"rpm_limit": 100_000}, headers=acme.auth(role))
        assert raised.status_code in (403, 404), (role, raised.text)
    assert client.get(f"/keys/{made.json()['id']}", headers=billing).json()["rpm_limit"] == 77
    # The owner who set them is not bound.
    assert (
        client.post("/me/keys", json={"name": "big", "rpm_limit": 100_000}, headers=acme.auth("owner")).status_code
        == 201
    )
    assert [key["name"] for key in client.get("/me/keys", headers=billing).json()["data"]] == ["invoices"]


def test_a_member_cannot_make_an_owner_or_touch_a_higher_role(services, client):
    acme = org_with_tokens(services, "acme")
    org_id, member, owner = acme.team.org_id, acme.auth("member"), acme.auth("owner")
    client.post("/users", json={"email": "new@acme.example", "password": PASSWORD}, headers=ADMIN)
    as_member = client.post(
        f"/orgs/{org_id}/members", json={"email": "new@acme.example", "role": "owner"}, headers=member
    )
    assert as_member.status_code == 403
    as_owner = client.post(
        f"/orgs/{org_id}/members", json={"email": "new@acme.example", "role": "owner"}, headers=owner
    )
    assert as_owner.status_code == 403 and as_owner.json()["error"]["code"] == "role_too_low"
    demote = client.patch(f"/orgs/{org_id}/members/{acme.team.owner.id}", json={"role": "viewer"}, headers=owner)
    assert demote.status_code == 403
    assert client.post("/me/tokens", json={"name": "up", "role": "owner"}, headers=member).status_code == 403
    assert (
        client.post("/users", json={"email": "x@acme.example", "password": PASSWORD}, headers=owner).status_code == 403
    )


def test_keys_and_receipts_of_a_member_are_theirs_alone(services, client):
    acme = org_with_tokens(services, "acme")
    member, billing = acme.auth("member"), acme.auth("billing")
    key = client.post("/me/keys", json={"name": "mine"}, headers=member).json()
    owners_key = client.post("/me/keys", json={"name": "owner's"}, headers=acme.auth("owner")).json()
    assert client.get(f"/keys/{key['id']}", headers=member).status_code == 200
    assert client.get(f"/keys/{owners_key['id']}", headers=member).status_code == 403
    assert client.get("/receipts", params={"key_id": key["id"]}, headers=member).status_code == 200
    assert client.get("/receipts", params={"org_id": acme.team.org_id}, headers=member).status_code == 400
    assert client.get("/receipts", params={"org_id": acme.team.org_id}, headers=billing).status_code == 200
    assert client.post(f"/keys/{owners_key['id']}/revoke", headers=member).status_code == 403
    assert client.post(f"/keys/{key['id']}/revoke", headers=member).json()["status"] == "revoked"


def test_owners_read_the_orgs_audit_log_with_changes_and_denials_and_no_one_below(services, client):
    acme = org_with_tokens(services, "acme")
    owner = acme.auth("owner")
    client.post("/me/keys", json={"name": "mine"}, headers=acme.auth("member"))
    client.get(f"/orgs/{acme.team.org_id}/wallets/credit/ledger", headers=acme.auth("member"))  # denied: 403
    events = client.get(f"/orgs/{acme.team.org_id}/audit", headers=owner).json()["data"]
    actions = {(event["action"], event["outcome"]) for event in events}
    assert {("key.create", "ok"), ("denied", "denied")} <= actions
    csv = client.get(f"/orgs/{acme.team.org_id}/audit", params={"format": "csv"}, headers=owner)
    assert csv.headers["content-type"].startswith("text/csv") and "key.create" in csv.text
    # The log names colleagues, their sign-in addresses and every key's policy: nobody below owner reads it.
    for role in ("billing", "member", "viewer"):
        for params in ({}, {"format": "csv"}):
            refused = client.get(f"/orgs/{acme.team.org_id}/audit", params=params, headers=acme.auth(role))
            assert refused.status_code == 403 and "key.create" not in refused.text, (role, params)
    assert client.get("/audit/verify", headers=ADMIN).json()["ok"] is True
    by_member = client.get(
        f"/orgs/{acme.team.org_id}/audit", params={"actor": acme.team.member.id}, headers=owner
    ).json()["data"]
    assert by_member and all(event["actor"] == acme.team.member.id for event in by_member)
    future = client.get(f"/orgs/{acme.team.org_id}/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=ADMIN)
    assert future.json()["data"] == []
    assert client.get("/audit", headers=acme.auth("owner")).status_code == 403


def test_key_use_is_every_keys_for_owners_and_billing_a_members_own_and_no_viewers(services, client):
    acme = org_with_tokens(services, "acme")
    member = acme.auth("member")
    mine = client.post("/me/keys", json={"name": "mine"}, headers=member).json()
    nightly = client.post("/me/keys", json={"name": "bot", "service": "nightly"}, headers=member).json()
    owners = client.post("/me/keys", json={"name": "owner's"}, headers=acme.auth("owner")).json()
    with services.db.write() as conn:
        for key_id, count in ((mine["id"], 1), (nightly["id"], 2), (owners["id"], 3)):
            key = get_key(conn, key_id)
            for n in range(count):
                add_receipt(conn, key, f"req_{key_id}_{n}", charge_micros=100, created_at=services.clock())
    url = f"/orgs/{acme.team.org_id}/audit/key-use"

    def use(headers):
        return {row["key"]: row["requests"] for row in client.get(url, headers=headers).json()["data"]}

    every = {mine["prefix"]: 1, nightly["prefix"]: 2, owners["prefix"]: 3}
    assert use(acme.auth("owner")) == use(acme.auth("billing")) == use(ADMIN) == every
    assert use(member) == {mine["prefix"]: 1, nightly["prefix"]: 2}  # not the owner's key
    refused = client.get(url, headers=acme.auth("viewer"))
    assert refused.status_code == 403 and owners["prefix"] not in refused.text


def test_offboarding_is_previewed_then_confirmed_through_the_api(services, client):
    acme = org_with_tokens(services, "acme")
    org_id, owner = acme.team.org_id, acme.auth("owner")
    bot = client.post("/me/keys", json={"name": "bot", "service": "bot"}, headers=acme.auth("member")).json()
    leaving = f"/orgs/{org_id}/members/{acme.team.member.id}/offboarding"
    decisions = {"service_keys": {bot["id"]: acme.team.billing.id}}
    plan = client.post(f"{leaving}/preview", json=decisions, headers=owner).json()
    assert plan["service_keys"][0]["action"] == "hand_over"
    stale = client.post(
        f"{leaving}/confirm", json={"service_keys": {}, "fingerprint": plan["fingerprint"]}, headers=owner
    )
    assert stale.status_code == 409
    done = client.post(f"{leaving}/confirm", json={**decisions, "fingerprint": plan["fingerprint"]}, headers=owner)
    assert done.status_code == 200, done.text
    assert client.get("/me", headers=acme.auth("member")).status_code == 401  # their token ended with them


def test_an_invitation_link_is_shown_once_and_lets_the_invitee_in(services, client):
    acme = org_with_tokens(services, "acme")
    invited = client.post(
        f"/orgs/{acme.team.org_id}/invitations",
        json={"email": "new@acme.example", "role": "viewer"},
        headers=acme.auth("owner"),
    ).json()
    listed = client.get(f"/orgs/{acme.team.org_id}/invitations", headers=acme.auth("owner")).json()["data"]
    assert invited["token"] not in str(listed)
    accepted = client.post("/invitations/accept", json={"token": invited["token"], "password": "my new passphrase 9"})
    assert accepted.status_code == 200, accepted.text
    again = client.post("/invitations/accept", json={"token": invited["token"], "password": "my new passphrase 9"})
    assert again.status_code == 401
    token = client.post("/signin", json={"email": "new@acme.example", "password": "my new passphrase 9"}).json()
    assert token["role"] == "viewer"


def test_a_keys_explanation_says_who_holds_it_and_who_answers_for_it(services, client):
    acme = org_with_tokens(services, "acme")
    bot = client.post("/me/keys", json={"name": "bot", "service": "nightly"}, headers=acme.auth("member")).json()
    mine = client.post("/me/keys", json={"name": "mine"}, headers=acme.auth("member")).json()
    operators = client.post("/keys", json={"org_id": acme.team.org_id, "name": "ops", "owner": "cron"}, headers=ADMIN)
    explained = {
        key_id: client.get(f"/keys/{key_id}/explain", headers=acme.auth("owner")).json()["holder"]
        for key_id in (bot["id"], mine["id"], operators.json()["id"])
    }
    assert explained[bot["id"]] == {"kind": "service", "name": "nightly", "responsible": "member@acme.example"}
    assert explained[mine["id"]] == {
        "kind": "person",
        "name": "member@acme.example",
        "responsible": "member@acme.example",
    }
    assert explained[operators.json()["id"]] == {"kind": "unassigned", "name": "cron", "responsible": "the operator"}


def test_every_change_through_the_api_is_audited_with_who_and_where(services, client):
    acme = org_with_tokens(services, "acme")
    key = client.post("/me/keys", json={"name": "mine"}, headers=acme.auth("member")).json()
    assert client.patch(f"/keys/{key['id']}", json={"rpm_limit": 7}, headers=ADMIN).status_code == 200
    topup = client.post(f"/orgs/{acme.team.org_id}/wallets/credit/topups", json={"amount_micros": 5}, headers=ADMIN)
    assert topup.status_code == 201
    assert client.post("/orgs", json={"name": "elsewhere"}, headers=ADMIN).status_code == 201
    events = client.get(f"/orgs/{acme.team.org_id}/audit", headers=acme.auth("owner")).json()["data"]
    update = next(event for event in events if event["action"] == "key.update")
    assert (
        update["actor"] == "operator" and update["address"] == "testclient" and update["request_id"].startswith("req_")
    )
    assert (update["before"]["rpm_limit"], update["after"]["rpm_limit"]) == (None, 7)  # who changed a key's limit
    topups = [event for event in events if event["action"] == "wallet.topup"]
    assert len(topups) == 1 and topups[0]["after"]["amount_micros"] == 5  # one event, with the amount
    assert not any(event["action"].startswith("POST /orgs/") for event in events)
    assert not any(event["action"] == "POST /orgs" for event in events)  # another org's change stays out
    everything = client.get("/audit", headers=ADMIN).json()["data"]
    created = [event for event in everything if event["action"] == "org.create"]  # its own event, once
    assert len(created) == 1 and created[0]["after"]["name"] == "elsewhere"
    assert not any(event["action"] == "POST /orgs" for event in everything)
    assert [event["action"] for event in everything].count("key.create") == 1  # not recorded twice


def test_a_query_parameter_an_endpoint_ignores_never_vouches_for_it(services, client):
    acme, other = org_with_tokens(services, "acme"), org_with_tokens(services, "other")
    own_key = client.post("/me/keys", json={"name": "mine"}, headers=acme.auth("owner")).json()
    client.post("/me/keys", json={"name": "theirs"}, headers=other.auth("owner"))
    # GET /keys filters by org_id only: a key_id of one's own must not open every org's keys.
    sneaky = client.get("/keys", params={"key_id": own_key["id"]}, headers=acme.auth("billing"))
    assert sneaky.status_code == 400 and "theirs" not in sneaky.text
    mixed = client.get(
        "/receipts", params={"key_id": own_key["id"], "org_id": other.team.org_id}, headers=acme.auth("owner")
    )
    assert mixed.status_code == 404


def test_totp_is_turned_on_with_a_code_and_off_only_with_a_fresh_one_or_the_password(services, client):
    acme = org_with_tokens(services, "acme")
    auth = acme.auth("viewer")
    offered = client.post("/me/totp", json={}, headers=auth).json()
    assert offered["otpauth_uri"].startswith("otpauth://totp/glasskey:viewer%40acme.example?secret=")
    code = pyotp.TOTP(offered["secret"]).at(services.clock())
    bad = client.post("/me/totp", json={"secret": "not base32!", "code": code}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "secret"
    enabled = client.post("/me/totp", json={"secret": offered["secret"], "code": code}, headers=auth)
    assert enabled.status_code == 200 and len(enabled.json()["recovery_codes"]) == 10
    replayed = client.post("/me/totp/disable", json={"code": code}, headers=auth)
    assert replayed.status_code == 401 and "accepted once" in replayed.json()["error"]["message"]
    wrong = client.post("/me/totp/disable", json={"password": "not the password 1"}, headers=auth)
    assert wrong.status_code == 401
    off = client.post("/me/totp/disable", json={"password": PASSWORD}, headers=auth)
    assert off.status_code == 200 and off.json()["totp_enabled"] is False
    with services.db.read() as conn:
        events = list_events(conn, org_id=acme.team.org_id)
    assert [(e["action"], e["outcome"]) for e in events if e["action"].startswith("user.totp")] == [
        ("user.totp_disable", "ok"),
        ("user.totp_disable", "failed"),  # the wrong password
        ("user.totp_disable", "failed"),  # the replayed code
        ("user.totp_enable", "ok"),
    ]


def test_wrong_proofs_to_turn_totp_off_count_in_the_sign_in_throttle(services, client):
    acme = org_with_tokens(services, "acme")
    with services.db.write() as conn:
        secret = new_totp_secret()
        now = services.clock()
        enable_totp(conn, acme.team.viewer.id, pepper=PEPPER, secret=secret, code=pyotp.TOTP(secret).at(now), now=now)
    for _ in range(ThrottleLimits().per_account - 1):
        # The account's window only: the address's stays open, so the 429 is this endpoint's own check.
        anyio.run(services.signin_throttle.fail, scopes("testclient", "viewer@acme.example")[-1:])
    auth = acme.auth("viewer")
    assert client.post("/me/totp/disable", json={"password": "a wrong guess 123"}, headers=auth).status_code == 401
    throttled = client.post("/me/totp/disable", json={"password": PASSWORD}, headers=auth)
    assert throttled.status_code == 429 and "retry-after" in throttled.headers
    with services.db.read() as conn:  # refused before the password was checked: the factor stays on
        assert get_user(conn, acme.team.viewer.id).totp_enabled


def _totp_on(services, user_id):
    secret = new_totp_secret()
    now = services.clock()
    with services.db.write() as conn:
        enable_totp(conn, user_id, pepper=PEPPER, secret=secret, code=pyotp.TOTP(secret).at(now), now=now)
    return secret


def _failed(services, action):
    with services.db.read() as conn:
        return [e for e in list_events(conn, action=action) if e["outcome"] == "failed"]


def test_the_api_replaces_an_active_second_factor_only_with_a_current_code_of_the_old_device(services, client):
    acme = org_with_tokens(services, "acme")
    old = _totp_on(services, acme.team.viewer.id)
    auth = acme.auth("viewer")
    new = client.post("/me/totp", json={}, headers=auth).json()["secret"]
    later = services.clock() + timedelta(minutes=2)
    services.clock = lambda: later
    body = {"secret": new, "code": pyotp.TOTP(new).at(later)}
    unproven = client.post("/me/totp", json=body, headers=auth)
    assert unproven.status_code == 409 and unproven.json()["error"]["code"] == "totp_already_on"
    wrong = "123456" if pyotp.TOTP(old).at(later) != "123456" else "654321"
    refused = client.post("/me/totp", json={**body, "current_code": wrong}, headers=auth)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_totp"
    [failure] = _failed(services, "user.totp_enable")
    assert failure["target"] == "viewer@acme.example" and failure["after"] == {"reason": "invalid_totp"}
    with services.db.read() as conn:
        assert get_user(conn, acme.team.viewer.id).totp_enabled  # still the old device's
    replaced = client.post("/me/totp", json={**body, "current_code": pyotp.TOTP(old).at(later)}, headers=auth)
    assert replaced.status_code == 200 and len(replaced.json()["recovery_codes"]) == 10


def test_wrong_proofs_sent_to_turn_totp_off_are_audited_like_the_dashboards(services, client):
    acme = org_with_tokens(services, "acme")
    _totp_on(services, acme.team.viewer.id)
    auth = acme.auth("viewer")
    assert client.post("/me/totp/disable", json={"password": "a wrong guess 123"}, headers=auth).status_code == 401
    assert client.post("/me/totp/disable", json={"code": "000000"}, headers=auth).status_code == 401
    failures = _failed(services, "user.totp_disable")
    assert sorted(e["after"]["reason"] for e in failures) == ["invalid_credentials", "invalid_totp"]
    assert {(e["target"], e["org_id"], e["address"]) for e in failures} == {
        ("viewer@acme.example", acme.team.org_id, "testclient")
    }


def test_only_the_operator_resets_a_persons_second_factor_and_it_is_audited(services, client):
    acme = org_with_tokens(services, "acme")
    _totp_on(services, acme.team.member.id)
    path = f"/users/{acme.team.member.id}/totp/reset"
    for role in ("owner", "billing", "member", "viewer"):
        assert client.post(path, headers=acme.auth(role)).status_code == 403, role
    reset = client.post(path, headers=ADMIN)
    assert reset.status_code == 200 and reset.json()["totp_enabled"] is False
    again = client.post("/users/member@acme.example/totp/reset", headers=ADMIN)  # by email too
    assert again.status_code == 409 and again.json()["error"]["code"] == "totp_not_enabled"
    assert client.post("/users/usr_nobody/totp/reset", headers=ADMIN).status_code == 404
    with services.db.read() as conn:
        [event] = list_events(conn, action="user.totp_reset")
    assert (event["target"], event["outcome"]) == ("member@acme.example", "ok")
