"""Org memberships: who belongs to which org, with which role, and who may change that.

Adding, re-roling and removing members obey ``roles.require_above``: the acting role must be
strictly above both the member's current role and the role granted. The acting role comes from
the authenticated principal (``people.principal``), never from the request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import ClientError, NotFound
from glasskey.people.roles import check_role, require_above
from glasskey.people.tables import memberships, users


@dataclass(frozen=True)
class Membership:
    org_id: str
    user_id: str
    email: str
    role: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "user_id": self.user_id,
            "email": self.email,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
        }


def _query() -> Any:
    return select(memberships, users.c.email).join(users, users.c.id == memberships.c.user_id)


def _membership(row: Any) -> Membership:
    return Membership(org_id=row.org_id, user_id=row.user_id, email=row.email, role=row.role, created_at=row.created_at)


def role_in(conn: Connection, org_id: str, user_id: str) -> str | None:
    return conn.scalar(
        select(memberships.c.role).where(memberships.c.org_id == org_id).where(memberships.c.user_id == user_id)
    )


def get_membership(conn: Connection, org_id: str, user_id: str) -> Membership:
    row = conn.execute(_query().where(memberships.c.org_id == org_id).where(memberships.c.user_id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of org {org_id}")
    return _membership(row)


def list_members(conn: Connection, org_id: str) -> list[Membership]:
    rows = conn.execute(
        _query().where(memberships.c.org_id == org_id).order_by(memberships.c.created_at, users.c.email)
    )
    return [_membership(row) for row in rows]


def memberships_of(conn: Connection, user_id: str) -> list[Membership]:
    rows = conn.execute(_query().where(memberships.c.user_id == user_id).order_by(memberships.c.created_at))
    return [_membership(row) for row in rows]


def add_member(conn: Connection, actor_role: str, org_id: str, user_id: str, role: str, now: datetime) -> Membership:
    require_above(actor_role, check_role(role), "grant the role of")
    if role_in(conn, org_id, user_id) is not None:
        raise ClientError(f"user {user_id} is already a member of this org", param="email", status_code=409)
    conn.execute(memberships.insert().values(org_id=org_id, user_id=user_id, role=role, created_at=now))
    return get_membership(conn, org_id, user_id)


def change_role(conn: Connection, actor_role: str, org_id: str, user_id: str, role: str) -> Membership:
    current = get_membership(conn, org_id, user_id)
    require_above(actor_role, current.role, "change")
    require_above(actor_role, check_role(role), "grant the role of")
    conn.execute(
        update(memberships)
        .where(memberships.c.org_id == org_id)
        .where(memberships.c.user_id == user_id)
        .values(role=role)
    )
    return get_membership(conn, org_id, user_id)


def remove_membership(conn: Connection, org_id: str, user_id: str) -> None:
    """Only through offboarding, which first deals with the person's keys (``people.offboarding``)."""
    conn.execute(memberships.delete().where(memberships.c.org_id == org_id).where(memberships.c.user_id == user_id))
