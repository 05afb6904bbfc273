"""A person's own account page over HTTP: password change, second factor, access tokens.

A password change needs the current password and ends every other session (and token) of the person
while this session goes on under a new CSRF token; a TOTP code that turned the factor on cannot be
replayed to turn it off; a token is shown once, in the answer that made it. Each change is audited.
"""

from __future__ import annotations

import re

import anyio
import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from glasskey.dashboard import build_dashboard
from glasskey.errors import AdminAuthError
from glasskey.people.audit import list_events
from glasskey.people.tables import users
from glasskey.people.throttle import ThrottleLimits, scopes
from glasskey.people.tokens import authenticate_token, create_token, list_tokens
from glasskey.people.totp import enable_totp, new_totp_secret
from glasskey.people.users import check_password, get_user
from people_helpers import PASSWORD, PEPPER, make_team

NEW_PASSWORD = "a brand new passphrase 7"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _signed_in(services, email: str) -> tuple[TestClient, str]:
    client = TestClient(build_dashboard(services), follow_redirects=False)
    csrf = _csrf(client.get("/signin").text)
    signed_in = client.post("/signin", data={"csrf_token": csrf, "email": email, "password": PASSWORD})
    assert signed_in.headers["location"] == "/me"
    return client, _csrf(client.get("/account").text)


def _found(pattern: str, html: str) -> str:
    match = re.search(pattern, html)
    assert match is not None, pattern
    return match.group(1)


def _field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error" role="alert">([^<]*)</p>', html)
    assert found is not None, f"no error next to {field}"
    return found.group(1)


def _nonce(html: str) -> str:
    """The token form's one-time nonce: each page shown carries a new one."""
    return _found(r'name="nonce" value="([^"]+)"', html)


def _actions(services, org_id: str) -> list[str]:
    with services.db.read() as conn:
        return [event["action"] for event in list_events(conn, org_id=org_id)]


@pytest.fixture
def acme(services):
    with services.db.write() as conn:
        return make_team(conn, "acme")


def test_a_password_change_needs_the_current_one_and_ends_every_other_session(services, acme):
    with services.db.write() as conn:
        _, earlier_token = create_token(
            conn, pepper=PEPPER, user_id=acme.member.id, org_id=acme.org_id, role="member", name="cli",
            now=services.clock(),
        )  # fmt: skip
    this, csrf = _signed_in(services, "member@acme.example")
    other, _ = _signed_in(services, "member@acme.example")
    form = {"csrf_token": csrf, "current_password": "not it at all 123", "new_password": NEW_PASSWORD}
    wrong = this.post("/account/password", data={**form, "new_password_again": NEW_PASSWORD})
    assert wrong.status_code == 401
    assert _field_error(wrong.text, "current_password") == "That is not your current password"
    differ = this.post("/account/password", data={**form, "current_password": PASSWORD, "new_password_again": "x"})
    assert (
        differ.status_code == 400 and _field_error(differ.text, "new_password_again") == "The two new passwords differ"
    )
    weak = {**form, "current_password": PASSWORD, "new_password": "short", "new_password_again": "short"}
    too_short = this.post("/account/password", data=weak)
    assert too_short.status_code == 400 and "at least 12 characters" in _field_error(too_short.text, "new_password")
    with services.db.read() as conn:  # nothing changed yet
        assert check_password(conn, "member@acme.example", PASSWORD).id == acme.member.id

    changed = this.post(
        "/account/password",
        data={**form, "current_password": PASSWORD, "new_password_again": NEW_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/account"
    page = this.get("/account")
    assert page.status_code == 200 and "Your password is changed" in page.text
    assert _csrf(page.text) != csrf  # this session was rotated: the old CSRF token is refused now
    assert this.post("/account/tokens", data={"csrf_token": csrf, "token_name": "x"}).status_code == 403
    ended = other.get("/me")  # the other session ended with the old credential version
    assert ended.status_code == 303 and ended.headers["location"] == "/signin"
    with services.db.read() as conn:
        with pytest.raises(AdminAuthError):
            authenticate_token(conn, pepper=PEPPER, text=earlier_token, now=services.clock())
        with pytest.raises(AdminAuthError):
            check_password(conn, "member@acme.example", PASSWORD)
        assert check_password(conn, "member@acme.example", NEW_PASSWORD).id == acme.member.id
        [failed, done] = [
            event
            for event in reversed(list_events(conn, org_id=acme.org_id, action="user.password_change"))
            if event["actor"] == acme.member.id
        ]
    assert failed["outcome"] == "failed" and done["outcome"] == "ok"


def test_totp_is_confirmed_before_it_is_on_and_its_code_is_never_accepted_twice(services, acme):
    client, csrf = _signed_in(services, "viewer@acme.example")
    setup = client.get("/account/totp")
    assert setup.status_code == 200
    secret = _found(r'id="totp-secret">([A-Z2-7]+)<', setup.text)
    assert f"otpauth://totp/glasskey:viewer%40acme.example?secret={secret}" in setup.text
    wrong = client.post("/account/totp", data={"csrf_token": csrf, "secret": secret, "code": "000000"})
    assert wrong.status_code == 400 and "does not match" in _field_error(wrong.text, "code")
    assert f'name="secret" value="{secret}"' in wrong.text  # the same secret, to try again
    forged = client.post("/account/totp", data={"csrf_token": csrf, "secret": "not base32!", "code": "123456"})
    assert forged.status_code == 400 and "not a secret glasskey made" in _field_error(forged.text, "secret")
    with services.db.read() as conn:
        assert not get_user(conn, acme.viewer.id).totp_enabled

    code = pyotp.TOTP(secret).at(services.clock())
    enabled = client.post("/account/totp", data={"csrf_token": csrf, "secret": secret, "code": code})
    assert enabled.status_code == 200
    recovery = re.findall(r"\b[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}\b", enabled.text)
    assert len(set(recovery)) == 10 and 'data-replace-url="/account"' in enabled.text
    account = client.get("/account").text
    assert 'data-totp="on"' in account and "10 unused" in account
    assert not any(shown in account for shown in recovery)  # shown once
    assert client.get("/account/totp").headers["location"] == "/account"  # no second device over the first

    replayed = client.post("/account/totp/disable", data={"csrf_token": csrf, "code": code})
    assert replayed.status_code == 401 and "accepted once" in _field_error(replayed.text, "totp_code")
    wrong_password = client.post("/account/totp/disable", data={"csrf_token": csrf, "password": "guess guess 1"})
    assert wrong_password.status_code == 401 and _field_error(wrong_password.text, "totp_password")
    with services.db.read() as conn:
        assert get_user(conn, acme.viewer.id).totp_enabled
    off = client.post("/account/totp/disable", data={"csrf_token": csrf, "code": recovery[0]})
    assert off.status_code == 303
    assert 'data-totp="off"' in client.get("/account").text
    with services.db.read() as conn:
        assert not get_user(conn, acme.viewer.id).totp_enabled
    actions = _actions(services, acme.org_id)
    assert "user.totp_enable" in actions and actions.count("user.totp_disable") == 3  # two refused, one done


def test_a_token_is_shown_once_within_the_persons_role_and_revoked_for_good(services, acme):
    client, csrf = _signed_in(services, "member@acme.example")
    form = {"csrf_token": csrf, "token_name": "nightly report", "token_days": "7"}
    nonce = _nonce(client.get("/account").text)
    too_high = client.post("/account/tokens", data={**form, "token_role": "owner", "nonce": nonce})
    assert too_high.status_code == 403 and "cannot exceed" in _field_error(too_high.text, "token_role")
    too_long = client.post(
        "/account/tokens", data={**form, "token_role": "viewer", "token_days": "400", "nonce": _nonce(too_high.text)}
    )
    assert too_long.status_code == 400 and _field_error(too_long.text, "token_days")
    assert 'value="nightly report"' in too_long.text  # what was typed stays to be corrected

    made = client.post("/account/tokens", data={**form, "token_role": "viewer", "nonce": _nonce(too_long.text)})
    assert made.status_code == 200 and 'data-replace-url="/account"' in made.text
    full = _found(r'id="token-secret">(gkp-[^<]+)<', made.text)
    with services.db.read() as conn:
        principal = authenticate_token(conn, pepper=PEPPER, text=full, now=services.clock())
    assert (principal.role, principal.org_id, principal.user_id) == ("viewer", acme.org_id, acme.member.id)
    account = client.get("/account").text
    prefix = full.rsplit("-", 1)[0]
    assert prefix in account and full not in account  # listed, never shown again
    token_id = _found(r'action="/account/tokens/(pat_[^/]+)/revoke"', account)

    with services.db.write() as conn:  # someone else's token is as unknown as none
        _, foreign = create_token(
            conn, pepper=PEPPER, user_id=acme.owner.id, org_id=acme.org_id, role="owner", name="owner's",
            now=services.clock(),
        )  # fmt: skip
        foreign_id = authenticate_token(conn, pepper=PEPPER, text=foreign, now=services.clock()).token_id
    assert client.post(f"/account/tokens/{foreign_id}/revoke", data={"csrf_token": csrf}).status_code == 404

    revoked = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    assert f"Access token {prefix} is revoked" in client.get("/account").text
    with services.db.read() as conn:
        with pytest.raises(AdminAuthError, match="revoked"):
            authenticate_token(conn, pepper=PEPPER, text=full, now=services.clock())
        authenticate_token(conn, pepper=PEPPER, text=foreign, now=services.clock())  # untouched
    actions = _actions(services, acme.org_id)
    assert "token.create" in actions and "token.revoke" in actions


def test_every_account_form_needs_the_csrf_token_and_the_admin_token_has_no_account(services, acme):
    client, _ = _signed_in(services, "owner@acme.example")
    for path in ("/account/password", "/account/totp", "/account/totp/disable", "/account/tokens"):
        assert client.post(path, data={"csrf_token": "forged"}).status_code == 403, path
    operator = TestClient(build_dashboard(services), follow_redirects=False)
    csrf = _csrf(operator.get("/signin").text)
    operator.post("/signin", data={"csrf_token": csrf, "admin_token": services.settings.admin_token.get_secret_value()})
    assert operator.get("/account").headers["location"] == "/"


def test_wrong_current_passwords_count_in_the_sign_in_throttle(services, acme):
    client, csrf = _signed_in(services, "member@acme.example")
    attempt = scopes("testclient", "member@acme.example")[-1:]  # the account's window only
    for _ in range(ThrottleLimits().per_account - 1):  # failures elsewhere (the sign-in form) count too
        anyio.run(services.signin_throttle.fail, attempt)
    form = {"csrf_token": csrf, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD}
    wrong = client.post("/account/password", data={**form, "current_password": "a wrong guess 123"})
    assert wrong.status_code == 401
    right = client.post("/account/password", data={**form, "current_password": PASSWORD})
    assert right.status_code == 429 and "try again in" in _field_error(right.text, "current_password")
    assert 1 <= int(right.headers["retry-after"]) <= ThrottleLimits().window_seconds  # as the sign-in form's
    with services.db.read() as conn:  # refused before the password was even checked: nothing changed
        assert check_password(conn, "member@acme.example", PASSWORD).id == acme.member.id


def test_a_resent_token_form_makes_no_second_token(services, acme):
    client, csrf = _signed_in(services, "member@acme.example")
    form = {"csrf_token": csrf, "token_name": "nightly", "token_role": "viewer", "token_days": "7"}
    nonce = _nonce(client.get("/account").text)
    assert client.post("/account/tokens", data={**form, "nonce": nonce}).status_code == 200
    resent = client.post("/account/tokens", data={**form, "nonce": nonce})  # a double submit, or Back and resend
    assert resent.status_code == 409 and "already used" in _field_error(resent.text, "token_name")
    bare = client.post("/account/tokens", data=form)  # a form without its nonce
    assert bare.status_code == 409
    with services.db.read() as conn:
        assert [token.name for token in list_tokens(conn, acme.member.id)] == ["nightly"]
    again = client.post("/account/tokens", data={**form, "nonce": _nonce(bare.text)})  # the latest page's form
    assert again.status_code == 200


def test_a_throttled_second_factor_form_says_when_to_retry(services, acme):
    client, csrf = _signed_in(services, "viewer@acme.example")
    for _ in range(ThrottleLimits().per_account):
        anyio.run(services.signin_throttle.fail, scopes("testclient", "viewer@acme.example")[-1:])
    refused = client.post("/account/totp/disable", data={"csrf_token": csrf, "password": PASSWORD})
    assert refused.status_code == 429 and "try again in" in _field_error(refused.text, "totp_code")
    assert 1 <= int(refused.headers["retry-after"]) <= ThrottleLimits().window_seconds


def test_a_posted_set_up_form_never_replaces_an_active_second_factor(services, acme):
    client, csrf = _signed_in(services, "viewer@acme.example")
    now = services.clock()
    old = new_totp_secret()
    with services.db.write() as conn:  # turned on elsewhere (the API) while this session is open
        enable_totp(conn, acme.viewer.id, pepper=PEPPER, secret=old, code=pyotp.TOTP(old).at(now), now=now)
        sealed = conn.scalar(select(users.c.totp_sealed).where(users.c.id == acme.viewer.id))
    new = new_totp_secret()  # a stolen session's own device, posted straight to the confirm step
    posted = client.post("/account/totp", data={"csrf_token": csrf, "secret": new, "code": pyotp.TOTP(new).at(now)})
    assert posted.status_code == 303 and posted.headers["location"] == "/account"
    assert "already on" in client.get("/account").text
    with services.db.read() as conn:
        assert conn.scalar(select(users.c.totp_sealed).where(users.c.id == acme.viewer.id)) == sealed
