"""Personal access tokens: hash-only storage, shown once, scoped, never above their person, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError, ClientError
from glasskey.keys.secret import hash_secret
from glasskey.people.members import change_role, remove_membership
from glasskey.people.tables import access_tokens
from glasskey.people.tokens import TOKEN, authenticate_token, create_token, revoke_token
from glasskey.people.users import change_password, create_user
from people_helpers import PASSWORD, PEPPER, make_team


def _authenticate(db, text, now=NOW):
    with db.read() as conn:
        return authenticate_token(conn, pepper=PEPPER, text=text, now=now)


def test_a_token_is_stored_only_as_a_peppered_hash_and_shown_once(db):
    with db.write() as conn:
        team = make_team(conn)
        token, full = create_token(
            conn, pepper=PEPPER, user_id=team.member.id, org_id=team.org_id, role="member", name="ci", now=NOW
        )
    parsed = TOKEN.parse(full)
    assert parsed is not None
    public_id, secret = parsed
    assert full.startswith("gkp-") and public_id == token.public_id
    with db.read() as conn:
        row = conn.execute(select(access_tokens)).one()._mapping
    assert row["secret_hash"] == hash_secret(PEPPER, secret)
    assert all(secret not in str(value) for value in row.values())
    assert "token" not in token.public() and secret not in str(token.public())
    principal = _authenticate(db, full)
    assert (principal.user_id, principal.org_id, principal.role) == (team.member.id, team.org_id, "member")


def test_wrong_expired_and_revoked_tokens_are_refused(db):
    with db.write() as conn:
        team = make_team(conn)
        token, full = create_token(
            conn,
            pepper=PEPPER,
            user_id=team.viewer.id,
            org_id=team.org_id,
            role="viewer",
            name="t",
            now=NOW,
            lifetime=timedelta(hours=1),
        )
    forged = full[:-1] + ("A" if full[-1] != "A" else "B")
    for text in (forged, "gkp-nope", "gk-" + full[4:]):
        with pytest.raises(AdminAuthError) as refused:
            _authenticate(db, text)
        assert refused.value.code == "invalid_access_token" and text not in refused.value.message
    with pytest.raises(AdminAuthError) as expired:
        _authenticate(db, full, NOW + timedelta(hours=1))
    assert expired.value.code == "access_token_expired"
    with db.write() as conn:
        revoke_token(conn, token, NOW)
    with pytest.raises(AdminAuthError) as revoked:
        _authenticate(db, full)
    assert revoked.value.code == "access_token_revoked"


def test_a_token_never_exceeds_its_person_and_follows_a_demotion_or_departure(db):
    with db.write() as conn:
        team = make_team(conn)
        with pytest.raises(AdminAuthError):
            create_token(
                conn, pepper=PEPPER, user_id=team.member.id, org_id=team.org_id, role="owner", name="x", now=NOW
            )
        _token, full = create_token(
            conn, pepper=PEPPER, user_id=team.billing.id, org_id=team.org_id, role="billing", name="b", now=NOW
        )
    with db.write() as conn:
        change_role(conn, "owner", team.org_id, team.billing.id, "viewer")
    assert _authenticate(db, full).role == "viewer"
    with db.write() as conn:
        remove_membership(conn, team.org_id, team.billing.id)
    with pytest.raises(AdminAuthError):
        _authenticate(db, full)


def test_a_password_change_ends_earlier_tokens(db):
    with db.write() as conn:
        team = make_team(conn)
        _token, full = create_token(
            conn, pepper=PEPPER, user_id=team.owner.id, org_id=team.org_id, role="owner", name="o", now=NOW
        )
        change_password(conn, team.owner.id, PASSWORD, "a whole new passphrase", NOW)
    with pytest.raises(AdminAuthError) as ended:
        _authenticate(db, full)
    assert ended.value.code == "access_token_revoked"


def test_only_operator_accounts_get_operator_tokens_and_lifetimes_are_bounded(db):
    with db.write() as conn:
        team = make_team(conn)
        operator = create_user(conn, "ops@example.com", PASSWORD, NOW, is_operator=True)
        with pytest.raises(AdminAuthError):
            create_token(conn, pepper=PEPPER, user_id=team.owner.id, org_id=None, role="operator", name="x", now=NOW)
        with pytest.raises(ClientError):
            create_token(
                conn,
                pepper=PEPPER,
                user_id=operator.id,
                org_id=None,
                role="operator",
                name="x",
                now=NOW,
                lifetime=timedelta(days=400),
            )
        _token, full = create_token(
            conn, pepper=PEPPER, user_id=operator.id, org_id=None, role="operator", name="o", now=NOW
        )
    assert _authenticate(db, full).is_operator
