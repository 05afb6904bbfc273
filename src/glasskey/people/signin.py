"""Signing in with an email, a password and (when turned on) a one-time code; each attempt audited.

Every failure answers the same way whatever went wrong with the email or password, so the answer
never tells whether an account exists. The audit row of a failure names the email tried (lower-cased,
cut to its column) and the client address; it is written in its own transaction by the caller,
since the failed attempt's own transaction rolls back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from glasskey.people.audit import Actor, record
from glasskey.people.totp import check_second_factor
from glasskey.people.users import User, check_password, get_user


def sign_in(
    conn: Connection, *, pepper: str, email: str, password: str, code: str | None, now: datetime, actor: Actor
) -> User:
    """The user behind the credentials, with the sign-in recorded; ``AdminAuthError`` on any failure."""
    row = check_password(conn, email, password)
    check_second_factor(conn, row, pepper=pepper, code=code, now=now)
    user = get_user(conn, row.id)
    record(conn, Actor(user.id, user.email, actor.address, actor.request_id), "signin", now, target=user.email)
    return user


def record_failed_sign_in(conn: Connection, *, email: str, reason: str, now: datetime, actor: Actor) -> None:
    record(conn, actor, "signin", now, target=email.strip().lower()[:200], outcome="failed", after={"reason": reason})
