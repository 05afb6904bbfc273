"""A person's keys: the holder comes from the principal; a member's key stays within the org's limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest_helpers import NOW
from glasskey.errors import AdminAuthError
from glasskey.keys.policy import KeyPolicy
from glasskey.people.holders import create_person_key, keys_of
from glasskey.people.limits import OrgLimits, set_limits
from glasskey.people.principal import Principal
from people_helpers import PEPPER, make_team

LIMITS = OrgLimits(
    allowed_models=("gpt-4o-mini",),
    settlements=("routed",),
    budget_total_max_micros=5_000_000,
    budget_daily_max_micros=1_000_000,
    rpm_max=60,
    key_lifetime_max_seconds=7 * 86400,
)


def _setup(db):
    with db.write() as conn:
        team = make_team(conn)
        set_limits(conn, team.org_id, LIMITS, NOW)
    return team


def _as(team, role):
    user = team.of(role)
    return Principal(role=role, user_id=user.id, email=user.email, org_id=team.org_id)


def test_a_members_key_left_open_is_closed_at_the_org_limits(db):
    team = _setup(db)
    with db.write() as conn:
        record, full_key, holder = create_person_key(
            conn, _as(team, "member"), pepper=PEPPER, name="k", policy=KeyPolicy(), now=NOW
        )
    policy = record.policy
    assert policy.allowed_models == ("gpt-4o-mini",) and policy.settlement == "routed"
    assert (policy.budget_total_micros, policy.budget_daily_micros, policy.rpm_limit) == (5_000_000, 1_000_000, 60)
    assert policy.expires_at == NOW + timedelta(days=7)
    assert holder.holder_user_id == team.member.id and holder.responsible_user_id == team.member.id
    assert full_key.startswith("gk-") and record.owner == "member@acme.example"


@pytest.mark.parametrize(
    "policy, limit",
    [
        (KeyPolicy(allowed_models=("gpt-4o-mini", "gpt-4o")), "allowed_models"),
        (KeyPolicy(settlement="official"), "settlements"),
        (KeyPolicy(budget_total_micros=5_000_001), "budget_total_max_micros"),
        (KeyPolicy(budget_daily_micros=2_000_000), "budget_daily_max_micros"),
        (KeyPolicy(rpm_limit=61), "rpm_max"),
        (KeyPolicy(expires_at=NOW + timedelta(days=8)), "key_lifetime_max_seconds"),
    ],
)
def test_a_member_cannot_exceed_any_org_limit(db, policy, limit):
    team = _setup(db)
    with db.write() as conn, pytest.raises(AdminAuthError) as refused:
        create_person_key(conn, _as(team, "member"), pepper=PEPPER, name="k", policy=policy, now=NOW)
    assert refused.value.status_code == 403 and limit in refused.value.message
    with db.read() as conn:
        assert keys_of(conn, team.org_id, team.member.id) == []


def test_billing_is_bound_by_the_org_limits_like_a_member(db):
    # Billing may make keys (roles.md) and is below owner: the owner's limits hold for its keys too.
    team = _setup(db)
    with db.write() as conn:
        record, _, _ = create_person_key(
            conn, _as(team, "billing"), pepper=PEPPER, name="k", policy=KeyPolicy(), now=NOW
        )
        assert (record.policy.rpm_limit, record.policy.budget_total_micros) == (60, 5_000_000)
        assert record.policy.allowed_models == ("gpt-4o-mini",) and record.policy.expires_at == NOW + timedelta(days=7)
        with pytest.raises(AdminAuthError) as refused:
            create_person_key(
                conn, _as(team, "billing"), pepper=PEPPER, name="k", policy=KeyPolicy(rpm_limit=100_000), now=NOW
            )
    assert refused.value.status_code == 403 and "rpm_max" in refused.value.message


def test_an_owner_is_not_bound_by_the_limits_they_set_and_a_viewer_makes_no_keys(db):
    team = _setup(db)
    with db.write() as conn:
        record, _, _ = create_person_key(
            conn, _as(team, "owner"), pepper=PEPPER, name="k", policy=KeyPolicy(rpm_limit=1000), now=NOW
        )
        assert record.policy.rpm_limit == 1000
        with pytest.raises(AdminAuthError):
            create_person_key(conn, _as(team, "viewer"), pepper=PEPPER, name="k", policy=KeyPolicy(), now=NOW)


def test_a_service_key_is_held_by_the_service_and_answered_for_by_its_maker(db):
    team = _setup(db)
    with db.write() as conn:
        record, _, holder = create_person_key(
            conn, _as(team, "member"), pepper=PEPPER, name="nightly", policy=KeyPolicy(), now=NOW, service="report-bot"
        )
    assert holder.service_name == "report-bot" and holder.holder_user_id is None
    assert holder.responsible_user_id == team.member.id
    assert holder.public() == {"held_by": {"service": "report-bot"}, "responsible_user_id": team.member.id}
    assert record.owner == "report-bot (for member@acme.example)"
    with db.read() as conn:
        assert [key.id for key, _ in keys_of(conn, team.org_id, team.member.id)] == [record.id]
        assert keys_of(conn, team.org_id, team.billing.id) == []
