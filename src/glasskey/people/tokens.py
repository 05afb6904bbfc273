"""Personal access tokens for the admin API: ``gkp-<public id>-<secret>``, hashed like keys, shown once.

A token belongs to one person, is scoped to one org and one role (never above the person's role
there), expires (at most ``TOKEN_LIFETIME_MAX``), and can be revoked. At each use the role in
force is the lower of the token's and the person's current one, so demoting or removing someone
takes effect at once; a password change (``credential_version``) ends every earlier token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import AdminAuthError, ClientError, NotFound
from glasskey.ids import new_id
from glasskey.keys.secret import SecretFormat, matches
from glasskey.people.members import role_in
from glasskey.people.principal import Principal
from glasskey.people.roles import OPERATOR, at_most, check_role, rank
from glasskey.people.tables import access_tokens, users
from glasskey.people.users import ACTIVE

TOKEN = SecretFormat("gkp")
TOKEN_LIFETIME_DEFAULT = timedelta(days=30)
TOKEN_LIFETIME_MAX = timedelta(days=365)
NAME_MAX_LENGTH = 200
WRONG_TOKEN = "Incorrect access token"


@dataclass(frozen=True)
class AccessToken:
    id: str
    public_id: str
    user_id: str
    org_id: str | None
    role: str
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @property
    def prefix(self) -> str:
        return f"{TOKEN.prefix}-{self.public_id}"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "user_id": self.user_id,
            "org_id": self.org_id,
            "role": self.role,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _token(row: Any) -> AccessToken:
    return AccessToken(
        id=row.id,
        public_id=row.public_id,
        user_id=row.user_id,
        org_id=row.org_id,
        role=row.role,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def create_token(
    conn: Connection,
    *,
    pepper: str,
    user_id: str,
    org_id: str | None,
    role: str,
    name: str,
    now: datetime,
    lifetime: timedelta = TOKEN_LIFETIME_DEFAULT,
) -> tuple[AccessToken, str]:
    """A token for ``user_id`` in ``org_id`` with ``role``; returns it and its full text (never again)."""
    user = conn.execute(select(users).where(users.c.id == user_id)).first()
    if user is None or user.status != ACTIVE:
        raise NotFound(f"user {user_id} does not exist")
    if not name.strip() or len(name) > NAME_MAX_LENGTH:
        raise ClientError(f"a token needs a name of 1 to {NAME_MAX_LENGTH} characters", param="name")
    if not timedelta(0) < lifetime <= TOKEN_LIFETIME_MAX:
        raise ClientError(f"a token lives at most {TOKEN_LIFETIME_MAX.days} days", param="expires_in_days")
    if role == OPERATOR:
        if not user.is_operator or org_id is not None:
            raise AdminAuthError("Only an operator account has operator tokens", code="role_too_low", status_code=403)
    else:
        check_role(role)
        held = role_in(conn, org_id, user_id) if org_id is not None else None
        if held is None or not at_most(role, held):
            raise AdminAuthError(
                f"A token's role cannot exceed its person's role in the org ({held or 'none'})",
                code="role_too_low",
                status_code=403,
            )
    issued = TOKEN.issue(pepper)
    token_id = new_id("pat")
    conn.execute(
        access_tokens.insert().values(
            id=token_id,
            public_id=issued.public_id,
            secret_hash=issued.secret_hash,
            user_id=user_id,
            org_id=org_id,
            role=role,
            name=name,
            credential_version=user.credential_version,
            created_at=now,
            expires_at=now + lifetime,
            revoked_at=None,
        )
    )
    return get_token(conn, token_id), issued.full_text


def get_token(conn: Connection, token_id: str) -> AccessToken:
    public_id = TOKEN.public_id_of(token_id)
    condition = access_tokens.c.id == token_id if public_id is None else access_tokens.c.public_id == public_id
    row = conn.execute(select(access_tokens).where(condition)).first()
    if row is None:
        raise NotFound(f"access token {token_id} does not exist")
    return _token(row)


def list_tokens(conn: Connection, user_id: str) -> list[AccessToken]:
    rows = conn.execute(
        select(access_tokens).where(access_tokens.c.user_id == user_id).order_by(access_tokens.c.created_at)
    )
    return [_token(row) for row in rows]


def revoke_token(conn: Connection, token: AccessToken, now: datetime) -> AccessToken:
    if token.revoked_at is None:
        conn.execute(update(access_tokens).where(access_tokens.c.id == token.id).values(revoked_at=now))
    return get_token(conn, token.id)


def revoke_own_token(conn: Connection, user_id: str, token_ref: str, now: datetime) -> AccessToken:
    """Revoke one of ``user_id``'s tokens; another person's answers 404, exactly like one that does not exist."""
    token = get_token(conn, token_ref)
    if token.user_id != user_id:
        raise NotFound(f"access token {token_ref} does not exist")
    return revoke_token(conn, token, now)


def revoke_tokens_of(conn: Connection, user_id: str, org_id: str, now: datetime) -> int:
    result = conn.execute(
        update(access_tokens)
        .where(access_tokens.c.user_id == user_id)
        .where(access_tokens.c.org_id == org_id)
        .where(access_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)


def authenticate_token(conn: Connection, *, pepper: str, text: str, now: datetime) -> Principal:
    """The principal behind a token; every failure is one 401 that echoes nothing sent."""
    parsed = TOKEN.parse(text)
    row = None
    if parsed is not None:
        row = conn.execute(
            select(
                access_tokens,
                users.c.email,
                users.c.status,
                users.c.is_operator,
                users.c.credential_version.label("user_credential_version"),
            )
            .join(users, users.c.id == access_tokens.c.user_id)
            .where(access_tokens.c.public_id == parsed[0])
        ).first()
    # An unknown public id costs the same work as a wrong secret, as for keys (``matches``).
    if parsed is None or not matches(pepper, parsed[1], row.secret_hash if row is not None else None) or row is None:
        raise AdminAuthError(WRONG_TOKEN, code="invalid_access_token")
    prefix = f"{TOKEN.prefix}-{row.public_id}"
    if row.revoked_at is not None:
        raise AdminAuthError(f"Access token {prefix} has been revoked", code="access_token_revoked")
    if row.expires_at <= now:
        raise AdminAuthError(
            f"Access token {prefix} expired at {row.expires_at.isoformat()}", code="access_token_expired"
        )
    if row.status != ACTIVE or row.credential_version != row.user_credential_version:
        raise AdminAuthError(
            f"Access token {prefix} ended when its person's password changed or the account was disabled",
            code="access_token_revoked",
        )
    if row.role == OPERATOR:
        if not row.is_operator:
            raise AdminAuthError(f"Access token {prefix} is no longer an operator's", code="access_token_revoked")
        return Principal(role=OPERATOR, user_id=row.user_id, email=row.email, token_id=row.id)
    held = role_in(conn, row.org_id, row.user_id)
    if held is None:
        raise AdminAuthError(f"Access token {prefix}: its person left the org", code="access_token_revoked")
    role = row.role if rank(row.role) <= rank(held) else held
    return Principal(role=role, user_id=row.user_id, email=row.email, org_id=row.org_id, token_id=row.id)
