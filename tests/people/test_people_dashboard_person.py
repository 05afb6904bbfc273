"""A person signs in to the dashboard by email: a new session, only their org's page, ended by a password change."""

from __future__ import annotations

import re

import pyotp
from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.dashboard import build_dashboard
from glasskey.keys.policy import KeyPolicy
from glasskey.people.holders import create_person_key
from glasskey.people.principal import Principal
from glasskey.people.totp import enable_totp, new_totp_secret
from glasskey.people.users import change_password
from people_helpers import PASSWORD, PEPPER, add_receipt, make_team


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _key(conn, team, role, name):
    user = team.of(role)
    holder = Principal(role=role, user_id=user.id, email=user.email, org_id=team.org_id)
    key, _, _ = create_person_key(conn, holder, pepper=PEPPER, name=name, policy=KeyPolicy(), now=NOW)
    add_receipt(conn, key, f"req_{name}", status="failed", http_status=402, error_source="wallet")
    return key


def _sign_in(client, email, password=PASSWORD, code=""):
    csrf = _csrf(client.get("/signin").text)
    return client.post("/signin", data={"csrf_token": csrf, "email": email, "password": password, "code": code}), csrf


def test_a_member_sees_only_their_keys_and_receipts_and_no_operator_page(services):
    with services.db.write() as conn:
        acme, other = make_team(conn, "acme"), make_team(conn, "other")
        mine, owners = _key(conn, acme, "member", "mine"), _key(conn, acme, "owner", "owners")
        foreign = _key(conn, other, "member", "foreign")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        signed_in, csrf_before = _sign_in(client, "member@acme.example")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/me"
        page = client.get("/me")
        assert page.status_code == 200
        assert mine.prefix in page.text and "req_mine" in page.text
        assert "routed wallet has nothing left to spend" in page.text  # a notice: the org never topped up
        for hidden in (owners.prefix, "req_owners", foreign.prefix, "req_foreign", "other"):
            assert hidden not in page.text
        assert _csrf(page.text) != csrf_before  # a new session at sign-in: nothing from before carries over
        for operator_page in ("/", "/keys", f"/keys/{mine.id}", "/wallets", "/receipts", "/routes"):
            answer = client.get(operator_page)
            assert answer.status_code == 303 and answer.headers["location"] == "/me", operator_page


def test_an_owner_reads_every_key_of_the_org(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
        mine, owners = _key(conn, acme, "member", "mine"), _key(conn, acme, "owner", "owners")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        _sign_in(client, "owner@acme.example")
        page = client.get("/me").text
    assert mine.prefix in page and owners.prefix in page and "answers for it" in page


def test_a_password_change_ends_the_dashboard_session(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        _sign_in(client, "viewer@acme.example")
        assert client.get("/me").status_code == 200
        with services.db.write() as conn:
            change_password(conn, acme.viewer.id, PASSWORD, "another long passphrase", NOW)
        ended = client.get("/me")
        assert ended.status_code == 303 and ended.headers["location"] == "/signin"
        assert client.get("/me").headers["location"].startswith("/signin")


def test_wrong_passwords_and_missing_codes_are_refused_alike_and_throttled_per_account(services):
    secret = new_totp_secret()
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
        enable_totp(conn, acme.owner.id, pepper=PEPPER, secret=secret, code=pyotp.TOTP(secret).at(NOW), now=NOW)
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        wrong, _ = _sign_in(client, "member@acme.example", password="not the password!")
        unknown, _ = _sign_in(client, "nobody@acme.example", password="not the password!")
        assert wrong.status_code == unknown.status_code == 401
        assert "Incorrect email or password" in wrong.text and "Incorrect email or password" in unknown.text
        needs_code, _ = _sign_in(client, "owner@acme.example")
        assert needs_code.status_code == 401 and "one-time code" in needs_code.text
        statuses = [
            _sign_in(client, "member@acme.example", password="guess guess guess")[0].status_code for _ in range(9)
        ]
        assert (
            statuses[-1] == 429
        )  # ten failures from this address (the account window is tested in test_people_throttle)


def test_the_operators_key_page_says_who_holds_the_key_and_who_answers_for_it(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
        holder = Principal(role="member", user_id=acme.member.id, email=acme.member.email, org_id=acme.org_id)
        key, _, _ = create_person_key(
            conn, holder, pepper=PEPPER, name="bot", policy=KeyPolicy(), now=NOW, service="nightly"
        )
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        csrf = _csrf(client.get("/signin").text)
        client.post("/signin", data={"csrf_token": csrf, "admin_token": "admin-token-for-tests-0123456789"})
        page = client.get(f"/keys/{key.id}").text
    assert "held by nightly (a service)" in page and "member@acme.example answers for it" in page
