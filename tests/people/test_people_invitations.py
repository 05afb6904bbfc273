"""Invitations: a one-time, expiring link stored only as a hash, with a role below the inviter's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError
from glasskey.people import invitations
from glasskey.people.members import role_in
from glasskey.people.tables import invitations as invitations_table
from people_helpers import PEPPER, make_team


def _invite(db, role="member", actor_role="owner"):
    with db.write() as conn:
        team = make_team(conn)
        invitation, secret = invitations.invite(
            conn,
            pepper=PEPPER,
            actor_id=team.owner.id,
            actor_role=actor_role,
            org_id=team.org_id,
            email="New@Acme.example",
            role=role,
            now=NOW,
        )
    return team, invitation, secret


def test_the_link_works_once_and_makes_a_member_with_the_role(db):
    team, _invitation, secret = _invite(db)
    with db.read() as conn:
        stored = conn.execute(select(invitations_table)).one()._mapping
    assert all(secret not in str(value) for value in stored.values())
    with db.write() as conn:
        user, accepted = invitations.accept(
            conn, pepper=PEPPER, secret=secret, password="my own new passphrase", now=NOW + timedelta(hours=1)
        )
    assert user.email == "new@acme.example" and accepted.accepted_at is not None
    with db.read() as conn:
        assert role_in(conn, team.org_id, user.id) == "member"
    with db.write() as conn, pytest.raises(AdminAuthError):
        invitations.accept(conn, pepper=PEPPER, secret=secret, password="my own new passphrase", now=NOW)


def test_an_expired_or_wrong_link_is_refused(db):
    _team, _invitation, secret = _invite(db)
    with db.write() as conn, pytest.raises(AdminAuthError):
        invitations.accept(
            conn, pepper=PEPPER, secret=secret, password="my own new passphrase", now=NOW + timedelta(hours=72)
        )
    with db.write() as conn, pytest.raises(AdminAuthError):
        invitations.accept(conn, pepper=PEPPER, secret=secret + "x", password="my own new passphrase", now=NOW)


def test_nobody_invites_at_or_above_their_own_role(db):
    with pytest.raises(AdminAuthError):
        _invite(db, role="owner")
