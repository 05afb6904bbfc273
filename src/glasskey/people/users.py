"""People's accounts: create, find, list, change a password, and check an email and password.

An email is stored lower-cased and is the sign-in name. Only the argon2id hash of a password is
stored. Changing a password bumps ``credential_version``, which ends every dashboard session and
every access token made before the change. A failed check never says whether the email exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from glasskey.errors import AdminAuthError, ClientError, NotFound
from glasskey.ids import new_id
from glasskey.people.passwords import check_policy, hash_password, verify_password
from glasskey.people.tables import EMAIL_MAX_LENGTH, users

ACTIVE, DISABLED = "active", "disabled"
WRONG_CREDENTIALS = "Incorrect email or password"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    is_operator: bool
    status: str
    totp_enabled: bool
    credential_version: int
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "operator": self.is_operator,
            "status": self.status,
            "totp_enabled": self.totp_enabled,
            "created_at": self.created_at.isoformat(),
        }


def _user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        is_operator=row.is_operator,
        status=row.status,
        totp_enabled=row.totp_sealed is not None,
        credential_version=row.credential_version,
        created_at=row.created_at,
    )


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    local, at, domain = cleaned.partition("@")
    if not at or not local or "." not in domain or len(cleaned) > EMAIL_MAX_LENGTH:
        raise ClientError("an email looks like name@example.com", param="email")
    if any(char.isspace() or ord(char) < 32 for char in cleaned) or "@" in domain:
        raise ClientError("an email looks like name@example.com", param="email")
    return cleaned


def create_user(conn: Connection, email: str, password: str, now: datetime, *, is_operator: bool = False) -> User:
    address = normalize_email(email)
    check_policy(password, email=address)
    if conn.scalar(select(users.c.id).where(users.c.email == address)) is not None:
        raise ClientError(f"a user with the email {address} already exists", param="email", status_code=409)
    user_id = new_id("usr")
    conn.execute(
        users.insert().values(
            id=user_id,
            email=address,
            password_hash=hash_password(password),
            is_operator=is_operator,
            status=ACTIVE,
            totp_sealed=None,
            totp_last_step=None,
            credential_version=1,
            created_at=now,
            password_changed_at=now,
        )
    )
    return get_user(conn, user_id)


def get_user(conn: Connection, ref: str) -> User:
    """A user by id or by email."""
    condition = users.c.id == ref if ref.startswith("usr_") else users.c.email == ref.strip().lower()
    row = conn.execute(select(users).where(condition)).first()
    if row is None:
        raise NotFound(f"user {ref} does not exist")
    return _user(row)


def list_users(conn: Connection) -> list[User]:
    return [_user(row) for row in conn.execute(select(users).order_by(users.c.created_at, users.c.id))]


def count_operators(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(users).where(users.c.is_operator)) or 0)


def check_password(conn: Connection, email: str, password: str) -> Any:
    """The user's row when the email and password match an active account; one error otherwise."""
    row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    matches = verify_password(row.password_hash if row is not None else None, password)
    if row is None or not matches or row.status != ACTIVE:
        raise AdminAuthError(WRONG_CREDENTIALS, code="invalid_credentials")
    return row


def change_password(conn: Connection, user_id: str, current: str, new: str, now: datetime) -> User:
    """Check the current password, apply the policy, and end every earlier session and token."""
    user = get_user(conn, user_id)
    check_password(conn, user.email, current)
    check_policy(new, email=user.email)
    conn.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(
            password_hash=hash_password(new),
            password_changed_at=now,
            credential_version=users.c.credential_version + 1,
        )
    )
    return get_user(conn, user.id)
