"""Invitations: an owner invites an email to an org with a role; a one-time link lets the invitee in.

The link's secret is shown once to the inviter (to copy, or to send by mail where mail is set up)
and stored only as a peppered HMAC. It expires (``INVITATION_LIFETIME``) and works once: accepting
it is a conditional UPDATE, so two uses racing each other cannot both win. The invitee sets a
password (a new account) or proves theirs (an existing one) and becomes a member with the role.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import AdminAuthError, ClientError, NotFound, shown
from glasskey.ids import new_id
from glasskey.keys.secret import hash_secret
from glasskey.people.members import add_member, role_in
from glasskey.people.roles import check_role, require_above
from glasskey.people.tables import invitations, users
from glasskey.people.users import User, check_password, create_user, get_user, normalize_email

INVITATION_LIFETIME = timedelta(hours=72)
INVALID_LINK = "This invitation link is not valid: it is wrong, expired or already used"


@dataclass(frozen=True)
class Invitation:
    id: str
    org_id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "org_id": self.org_id,
            "email": self.email,
            "role": self.role,
            "invited_by": self.invited_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "accepted_at": self.accepted_at.isoformat() if self.accepted_at else None,
        }


def invitation_status(invitation: Invitation, now: datetime) -> str:
    """``accepted``, ``ended`` (expired, or revoked: a revocation makes the link expire now) or ``pending``."""
    if invitation.accepted_at is not None:
        return "accepted"
    return "ended" if invitation.expires_at <= now else "pending"


def _invitation(row: Any) -> Invitation:
    return Invitation(
        id=row.id,
        org_id=row.org_id,
        email=row.email,
        role=row.role,
        invited_by=row.invited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        accepted_at=row.accepted_at,
    )


def invite(
    conn: Connection, *, pepper: str, actor_id: str, actor_role: str, org_id: str, email: str, role: str, now: datetime
) -> tuple[Invitation, str]:
    """A new invitation and its secret (the only time it exists in clear)."""
    require_above(actor_role, check_role(role), "invite as")
    address = normalize_email(email)
    existing = conn.scalar(select(users.c.id).where(users.c.email == address))
    if existing is not None and role_in(conn, org_id, existing) is not None:
        raise ClientError(f"{address} is already a member of this org", param="email", status_code=409)
    secret = secrets.token_urlsafe(32)
    invitation_id = new_id("inv")
    conn.execute(
        invitations.insert().values(
            id=invitation_id,
            token_hash=hash_secret(pepper, secret),
            org_id=org_id,
            email=address,
            role=role,
            invited_by=actor_id,
            created_at=now,
            expires_at=now + INVITATION_LIFETIME,
            accepted_at=None,
        )
    )
    row = conn.execute(select(invitations).where(invitations.c.id == invitation_id)).one()
    return _invitation(row), secret


def list_invitations(conn: Connection, org_id: str) -> list[Invitation]:
    rows = conn.execute(select(invitations).where(invitations.c.org_id == org_id).order_by(invitations.c.created_at))
    return [_invitation(row) for row in rows]


def revoke_invitation(conn: Connection, org_id: str, invitation_id: str, now: datetime) -> Invitation:
    """End a link that was not used yet: it expires now, so it can no longer be accepted.

    An invitation of another org is as unknown as a missing one; an accepted one is refused (409).
    """
    row = conn.execute(
        select(invitations).where(invitations.c.id == invitation_id).where(invitations.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"invitation {shown(invitation_id)} does not exist")
    if row.accepted_at is not None:
        raise ClientError("This invitation was already accepted: remove the member instead", status_code=409)
    if row.expires_at > now:
        conn.execute(
            update(invitations)
            .where(invitations.c.id == row.id)
            .where(invitations.c.accepted_at.is_(None))
            .values(expires_at=now)
        )
    return _invitation(conn.execute(select(invitations).where(invitations.c.id == row.id)).one())


def accept(conn: Connection, *, pepper: str, secret: str, password: str, now: datetime) -> tuple[User, Invitation]:
    """Use the link once: the invitee's account (made now, or proven by its password) joins the org."""
    row = conn.execute(select(invitations).where(invitations.c.token_hash == hash_secret(pepper, secret))).first()
    if row is None or row.accepted_at is not None or row.expires_at <= now:
        raise AdminAuthError(INVALID_LINK, code="invalid_invitation")
    taken = conn.execute(
        update(invitations)
        .where(invitations.c.id == row.id)
        .where(invitations.c.accepted_at.is_(None))
        .values(accepted_at=now)
    ).rowcount
    if taken != 1:
        raise AdminAuthError(INVALID_LINK, code="invalid_invitation")
    if conn.scalar(select(users.c.id).where(users.c.email == row.email)) is None:
        user = create_user(conn, row.email, password, now)
    else:
        user = get_user(conn, check_password(conn, row.email, password).id)
    # The inviter's right to grant the role was checked when the invitation was made.
    add_member(conn, "operator", row.org_id, user.id, row.role, now)
    accepted = conn.execute(select(invitations).where(invitations.c.id == row.id)).one()
    return user, _invitation(accepted)
