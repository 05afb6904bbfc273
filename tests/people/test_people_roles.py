"""Roles: no role acts on an equal or higher role; only the operator makes owners."""

from __future__ import annotations

import pytest

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError, ClientError
from glasskey.people.members import add_member, change_role, list_members
from glasskey.people.roles import ROLES, can_act_on
from glasskey.people.users import create_user
from people_helpers import PASSWORD, make_team


@pytest.mark.parametrize("actor", ROLES)
@pytest.mark.parametrize("target", ROLES)
def test_no_role_acts_on_an_equal_or_higher_role(actor, target):
    order = {"viewer": 1, "member": 2, "billing": 3, "owner": 4}
    assert can_act_on(actor, target) is (order[actor] > order[target])
    assert can_act_on("operator", target)


def test_an_owner_manages_lower_roles_but_cannot_make_or_touch_an_owner(db):
    with db.write() as conn:
        team = make_team(conn)
        newcomer = create_user(conn, "new@acme.example", PASSWORD, NOW)
        with pytest.raises(AdminAuthError) as refused:
            add_member(conn, "owner", team.org_id, newcomer.id, "owner", NOW)
        assert refused.value.status_code == 403 and refused.value.code == "role_too_low"
        add_member(conn, "owner", team.org_id, newcomer.id, "billing", NOW)
        change_role(conn, "owner", team.org_id, team.viewer.id, "member")
        with pytest.raises(AdminAuthError):
            change_role(conn, "owner", team.org_id, team.owner.id, "viewer")  # an equal, even oneself
    with db.read() as conn:
        roles = {member.email: member.role for member in list_members(conn, team.org_id)}
    assert roles["new@acme.example"] == "billing" and roles["viewer@acme.example"] == "member"
    assert roles["owner@acme.example"] == "owner"


def test_a_member_cannot_grant_or_change_anything_at_or_above_member(db):
    with db.write() as conn:
        team = make_team(conn)
        newcomer = create_user(conn, "new@acme.example", PASSWORD, NOW)
        for role in ("owner", "billing", "member"):
            with pytest.raises(AdminAuthError):
                add_member(conn, "member", team.org_id, newcomer.id, role, NOW)
        with pytest.raises(AdminAuthError):
            change_role(conn, "member", team.org_id, team.billing.id, "viewer")
        with pytest.raises(ClientError):
            add_member(conn, "operator", team.org_id, newcomer.id, "superuser", NOW)
