"""Admin endpoints for invitations: an owner invites an email with a role; the invitee accepts with the link.

The link's secret is answered once, to the inviter. Accepting needs no admin credential (the secret
is one), so failed attempts count in the sign-in throttle like wrong passwords.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from glasskey.admin.access import actor_of, client_address, error_responses, principal_of, request_id_of
from glasskey.admin.common import Body, list_body
from glasskey.errors import AdminAuthError
from glasskey.orgs.service import get_org
from glasskey.people import invitations
from glasskey.people.audit import Actor, record
from glasskey.people.mail import send_invitation
from glasskey.people.passwords import PASSWORD_MAX_LENGTH
from glasskey.people.roles import Role
from glasskey.people.tables import EMAIL_MAX_LENGTH
from glasskey.people.throttle import Throttle, scopes
from glasskey.services import Services

INVITE_NOTE = "This link works once and is shown only now: send it to the invitee. glasskey keeps only its hash."


class InvitationBody(Body):
    email: str = Field(min_length=3, max_length=EMAIL_MAX_LENGTH)
    role: Role


class AcceptBody(Body):
    token: str = Field(min_length=1, max_length=200, description="the secret of the invitation link")
    password: str = Field(
        min_length=1, max_length=PASSWORD_MAX_LENGTH, description="a new password, or the existing account's"
    )


def invitations_router(services: Services, throttle: Throttle) -> APIRouter:
    router = APIRouter(tags=["members"])

    @router.get(
        "/orgs/{org_id}/invitations",
        summary="List invitations",
        description="Never a link's secret.",
        responses=error_responses(404),
    )
    def read_invitations(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([item.public() for item in invitations.list_invitations(conn, get_org(conn, org_id).id)])

    @router.post(
        "/orgs/{org_id}/invitations",
        status_code=201,
        summary="Invite someone",
        description=(
            "A one-time link for the email, with a role below the caller's, expiring in 72 hours. With "
            "`GLASSKEY_SMTP_URL` set the link is mailed to the invitee and not shown; otherwise (or if mail fails, "
            "with `mail_error` saying why) the answer holds the link (`link`, the dashboard's page) and its secret "
            "(`token`, for `POST /invitations/accept`), shown once."
        ),
        responses=error_responses(403, 404, 409),
    )
    def invite(org_id: str, body: InvitationBody, request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            invitation, secret = invitations.invite(
                conn,
                pepper=services.pepper,
                actor_id=principal.user_id or "operator",
                actor_role=principal.role,
                org_id=org.id,
                email=body.email,
                role=body.role,
                now=now,
            )
            record(
                conn,
                actor_of(request),
                "invitation.create",
                now,
                org_id=org.id,
                target=invitation.email,
                after=invitation.public(),
            )
        base = services.settings.effective_public_url
        link = f"{base}/invitation?token={secret}"
        smtp_url = services.settings.smtp_url.get_secret_value()
        mail_error = None
        if smtp_url:
            mail_error = send_invitation(
                smtp_url,
                to=invitation.email,
                org_name=org.name,
                role=invitation.role,
                link=link,
                expires_at=invitation.expires_at,
            )
            if mail_error is None:
                return {**invitation.public(), "mailed_to": invitation.email}
        return {
            **invitation.public(),
            "link": link,
            "token": secret,
            "accept_url": f"{base}/admin/api/invitations/accept",
            "token_note": INVITE_NOTE,
            "mail_error": mail_error,
        }

    @router.post(
        "/orgs/{org_id}/invitations/{invitation_id}/revoke",
        summary="Revoke an invitation",
        description="The link stops working at once (it expires now). An accepted invitation answers 409.",
        responses=error_responses(403, 404, 409),
    )
    def revoke(org_id: str, invitation_id: str, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            ended = invitations.revoke_invitation(conn, org.id, invitation_id, now)
            record(
                conn,
                actor_of(request),
                "invitation.revoke",
                now,
                org_id=org.id,
                target=ended.email,
                after=ended.public(),
            )
        return {**ended.public(), "status": invitations.invitation_status(ended, now)}

    @router.post(
        "/invitations/accept",
        summary="Accept an invitation",
        description=(
            "No admin credential: the link's secret is the credential. Sets the new account's password (or checks an "
            "existing account's) and adds the membership. A link works once; failures are throttled like sign-ins."
        ),
        responses=error_responses(401, 429),
    )
    async def accept(body: AcceptBody, request: Request) -> dict[str, Any]:
        attempt = scopes(client_address(request))
        await throttle.check(attempt)
        now = services.clock()
        try:
            with services.db.write() as conn:
                user, invitation = invitations.accept(
                    conn, pepper=services.pepper, secret=body.token, password=body.password, now=now
                )
                actor = Actor(user.id, user.email, client_address(request), request_id_of(request))
                record(conn, actor, "invitation.accept", now, org_id=invitation.org_id, target=user.email)
        except AdminAuthError:
            # A wrong link (or a wrong password for an existing account) is a guess; a weak new password is not.
            await throttle.fail(attempt)
            raise
        return {
            "object": "invitation.accepted",
            "user": user.public(),
            "org_id": invitation.org_id,
            "role": invitation.role,
        }

    return router
