"""Admin endpoints for an org's people: members and their roles, offboarding, and the org's limits.

The acting role is the principal's; the org is the path's (checked against the principal by the
guard) or the principal's own. No body names the user or org to act for.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictInt

from glasskey.admin.access import actor_of, error_responses, principal_of
from glasskey.admin.common import Body, Micros, Settlement, list_body
from glasskey.limits import KEY_LIFETIME_MAX_SECONDS, RPM_LIMIT_MAX
from glasskey.orgs.service import get_org
from glasskey.people import changes as audited
from glasskey.people import offboarding
from glasskey.people.audit import record
from glasskey.people.limits import OrgLimits, get_limits
from glasskey.people.members import add_member, list_members
from glasskey.people.roles import Role
from glasskey.people.tables import EMAIL_MAX_LENGTH
from glasskey.people.users import get_user
from glasskey.services import Services


class MemberBody(Body):
    email: str = Field(min_length=3, max_length=EMAIL_MAX_LENGTH, description="an existing account's email")
    role: Role


class RoleBody(Body):
    role: Role


class OffboardingBody(Body):
    service_keys: dict[str, str] = Field(
        default_factory=dict, description="service key id → the user id who takes it over, or `revoke` (default)"
    )


class ConfirmBody(OffboardingBody):
    fingerprint: str = Field(min_length=64, max_length=64, description="the preview's fingerprint")


class LimitsBody(Body):
    allowed_models: list[str] | None = None
    settlements: list[Settlement] | None = None
    budget_total_max_micros: Micros | None = None
    budget_daily_max_micros: Micros | None = None
    rpm_max: StrictInt | None = Field(default=None, ge=0, le=RPM_LIMIT_MAX)
    key_lifetime_max_seconds: StrictInt | None = Field(default=None, gt=0, le=KEY_LIFETIME_MAX_SECONDS)

    def limits(self) -> OrgLimits:
        return OrgLimits(
            allowed_models=tuple(self.allowed_models) if self.allowed_models is not None else None,
            settlements=tuple(self.settlements) if self.settlements is not None else None,
            budget_total_max_micros=self.budget_total_max_micros,
            budget_daily_max_micros=self.budget_daily_max_micros,
            rpm_max=self.rpm_max,
            key_lifetime_max_seconds=self.key_lifetime_max_seconds,
        )


def members_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["members"])

    @router.get(
        "/orgs/{org_id}/members",
        summary="List an org's members",
        description="Each with email and role.",
        responses=error_responses(404),
    )
    def read_members(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([member.public() for member in list_members(conn, get_org(conn, org_id).id)])

    @router.post(
        "/orgs/{org_id}/members",
        status_code=201,
        summary="Add a member",
        description="Adds an existing account with a role below the caller's (only the operator makes owners).",
        responses=error_responses(403, 404, 409),
    )
    def add(org_id: str, body: MemberBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            member = add_member(conn, principal_of(request).role, org.id, get_user(conn, body.email).id, body.role, now)
            record(
                conn, actor_of(request), "member.add", now, org_id=org.id, target=member.email, after=member.public()
            )
        return member.public()

    @router.patch(
        "/orgs/{org_id}/members/{user_id}",
        summary="Change a member's role",
        description="Only on a member whose role is below the caller's, and only to a role below the caller's.",
        responses=error_responses(403, 404),
    )
    def update(org_id: str, user_id: str, body: RoleBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            member = audited.change_role(
                conn, actor_of(request), now, principal_of(request).role, org.id, user_id, body.role
            )
        return member.public()

    @router.post(
        "/orgs/{org_id}/members/{user_id}/offboarding/preview",
        summary="Preview a member's offboarding",
        description=(
            "What would happen if the member left now: their own keys revoked, each service key they answer for "
            "handed to the member named in `service_keys` or revoked, their tokens revoked, their membership "
            "removed. Nothing changes; the answer's `fingerprint` confirms exactly this plan."
        ),
        responses=error_responses(403, 404),
    )
    def preview(org_id: str, user_id: str, body: OffboardingBody, request: Request) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            return offboarding.preview(conn, principal_of(request).role, org.id, user_id, body.service_keys).public()

    @router.post(
        "/orgs/{org_id}/members/{user_id}/offboarding/confirm",
        summary="Carry out a member's offboarding",
        description="Carries out the previewed plan; 409 if anything changed since the preview (preview again).",
        responses=error_responses(403, 404, 409),
    )
    def confirm(org_id: str, user_id: str, body: ConfirmBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            plan = offboarding.confirm(
                conn,
                actor_of(request),
                principal_of(request).role,
                org.id,
                user_id,
                body.service_keys,
                body.fingerprint,
                now,
            )
        return {**plan.public(), "object": "offboarding.done"}

    @router.get(
        "/orgs/{org_id}/limits",
        summary="Get the org's limits",
        description="What members may give keys.",
        responses=error_responses(404),
    )
    def read_limits(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return {"object": "org.limits", **get_limits(conn, get_org(conn, org_id).id).as_dict()}

    @router.put(
        "/orgs/{org_id}/limits",
        summary="Set the org's limits",
        description=(
            "Models and settlements, the largest total and daily budget and rpm, and the longest lifetime of a key "
            "made by anyone below owner (billing, member). `null` is no limit. Keys already made keep theirs."
        ),
        responses=error_responses(404),
    )
    def write_limits(org_id: str, body: LimitsBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            after = audited.set_limits(conn, actor_of(request), now, org.id, body.limits())
        return {"object": "org.limits", **after.as_dict()}

    return router
