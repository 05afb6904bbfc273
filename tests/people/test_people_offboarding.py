"""Offboarding: the plan is shown first, then carried out only as shown."""

from __future__ import annotations

import pytest

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError, ClientError
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import get_key
from glasskey.people import offboarding
from glasskey.people.audit import Actor, list_events
from glasskey.people.holders import create_person_key, holder_of
from glasskey.people.members import role_in
from glasskey.people.principal import Principal
from glasskey.people.tokens import create_token, list_tokens
from people_helpers import PEPPER, make_team

OWNER_ACTOR = Actor("usr_owner", "owner@acme.example")


def _leaver_with_keys(db):
    with db.write() as conn:
        team = make_team(conn)
        me = Principal(role="member", user_id=team.member.id, email=team.member.email, org_id=team.org_id)
        personal, _, _ = create_person_key(conn, me, pepper=PEPPER, name="mine", policy=KeyPolicy(), now=NOW)
        bot, _, _ = create_person_key(conn, me, pepper=PEPPER, name="bot", policy=KeyPolicy(), now=NOW, service="bot")
        agent, _, _ = create_person_key(
            conn, me, pepper=PEPPER, name="agent", policy=KeyPolicy(), now=NOW, service="agent"
        )
        create_token(conn, pepper=PEPPER, user_id=team.member.id, org_id=team.org_id, role="member", name="t", now=NOW)
    return team, personal, bot, agent


def test_the_preview_changes_nothing_and_the_confirmation_does_exactly_what_it_showed(db):
    team, personal, bot, agent = _leaver_with_keys(db)
    decisions = {bot.id: team.billing.id}
    with db.read() as conn:
        plan = offboarding.preview(conn, "owner", team.org_id, team.member.id, decisions)
        assert role_in(conn, team.org_id, team.member.id) == "member"  # nothing happened yet
    assert [item["key_id"] for item in plan.personal_keys] == [personal.id]
    actions = {item["key_id"]: (item["action"], item["to_user_id"]) for item in plan.service_keys}
    assert actions == {bot.id: ("hand_over", team.billing.id), agent.id: ("revoke", "")}
    with db.write() as conn:
        offboarding.confirm(conn, OWNER_ACTOR, "owner", team.org_id, team.member.id, decisions, plan.fingerprint, NOW)
    with db.read() as conn:
        assert get_key(conn, personal.id).status == "revoked"
        assert get_key(conn, agent.id).status == "revoked"
        assert get_key(conn, bot.id).status == "active"
        handed = holder_of(conn, bot.id)
        assert handed is not None and handed.responsible_user_id == team.billing.id
        assert role_in(conn, team.org_id, team.member.id) is None
        assert all(token.revoked_at is not None for token in list_tokens(conn, team.member.id))
        assert list_events(conn, org_id=team.org_id, action="member.offboard")[0]["target"] == team.member.id


def test_a_plan_that_changed_since_the_preview_is_refused(db):
    team, _personal, _bot, _agent = _leaver_with_keys(db)
    with db.read() as conn:
        plan = offboarding.preview(conn, "owner", team.org_id, team.member.id, {})
    with db.write() as conn:
        me = Principal(role="member", user_id=team.member.id, email=team.member.email, org_id=team.org_id)
        create_person_key(conn, me, pepper=PEPPER, name="late", policy=KeyPolicy(), now=NOW)
    with db.write() as conn, pytest.raises(ClientError) as refused:
        offboarding.confirm(conn, OWNER_ACTOR, "owner", team.org_id, team.member.id, {}, plan.fingerprint, NOW)
    assert refused.value.status_code == 409 and refused.value.code == "plan_changed"


def test_keys_go_only_to_members_who_may_hold_them_and_only_higher_roles_offboard(db):
    team, _personal, bot, _agent = _leaver_with_keys(db)
    with db.read() as conn:
        for receiver in (team.viewer.id, team.member.id, "usr_nobody"):
            with pytest.raises(ClientError):
                offboarding.preview(conn, "owner", team.org_id, team.member.id, {bot.id: receiver})
        with pytest.raises(AdminAuthError):
            offboarding.preview(conn, "member", team.org_id, team.member.id, {})
        with pytest.raises(AdminAuthError):
            offboarding.preview(conn, "owner", team.org_id, team.owner.id, {})
