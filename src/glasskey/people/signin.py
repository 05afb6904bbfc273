"""Signing in with an email, a password and (when turned on) a one-time code; each attempt audited.

Every failure answers the same way whatever went wrong with the email or password, so the answer
never tells whether an account exists. The audit row of a failure names the email tried (lower-cased,
cut to its column) and the client address; it is written in its own transaction by the caller,
since the failed attempt's own transaction rolls back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from glasskey.errors import ClientError, NotFound
from glasskey.orgs.service import get_org
from glasskey.people.audit import Actor, record
from glasskey.people.members import memberships_of
from glasskey.people.roles import OPERATOR
from glasskey.people.tokens import AccessToken, create_token
from glasskey.people.totp import check_second_factor
from glasskey.people.users import User, check_password, get_user


def sign_in(
    conn: Connection, *, pepper: str, email: str, password: str, code: str | None, now: datetime, actor: Actor
) -> User:
    """The user behind the credentials, with the sign-in recorded; ``AdminAuthError`` on any failure."""
    row = check_password(conn, email, password)
    check_second_factor(conn, row, pepper=pepper, code=code, now=now)
    user = get_user(conn, row.id)
    # Filed under each org the person belongs to, so every org's owners read their people's sign-ins
    # (one row per org); an operator account with no org files it under none (the operator's view).
    joined: list[str | None] = [membership.org_id for membership in memberships_of(conn, user.id)] or [None]
    for org_id in joined:
        signed_in = Actor(user.id, user.email, actor.address, actor.request_id)
        record(conn, signed_in, "signin", now, org_id=org_id, target=user.email)
    return user


def record_failed_sign_in(conn: Connection, *, email: str, reason: str, now: datetime, actor: Actor) -> None:
    record(conn, actor, "signin", now, target=email.strip().lower()[:200], outcome="failed", after={"reason": reason})


def token_after_sign_in(
    conn: Connection,
    *,
    pepper: str,
    user: User,
    org_ref: str | None,
    role: str | None,
    name: str,
    now: datetime,
    lifetime: timedelta,
) -> tuple[AccessToken, str]:
    """The access token a sign-in answers: in the org named (or the only one), at the role asked or held.

    An operator account with no membership gets an operator token; a person in several orgs names one.
    """
    joined = {membership.org_id: membership.role for membership in memberships_of(conn, user.id)}
    if org_ref is None and user.is_operator and not joined:
        return create_token(
            conn, pepper=pepper, user_id=user.id, org_id=None, role=OPERATOR, name=name, now=now, lifetime=lifetime
        )
    if org_ref is None:
        if len(joined) != 1:
            raise ClientError("Name the org to sign in to (`org_id`)", param="org_id")
        org_id = next(iter(joined))
    else:
        org_id = get_org(conn, org_ref).id
        if org_id not in joined:
            raise NotFound(f"org {org_ref} does not exist")
    return create_token(
        conn,
        pepper=pepper,
        user_id=user.id,
        org_id=org_id,
        role=role or joined[org_id],
        name=name,
        now=now,
        lifetime=lifetime,
    )
