"""Creating, finding, changing, revoking and authenticating keys.

Only the keyed hash of a secret is stored; the full key is returned once, by ``create_key``.
Authentication errors never repeat what the client sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from glasskey.errors import APIKeyError, ClientError, NotFound
from glasskey.ids import new_id
from glasskey.keys import secret as key_secret
from glasskey.keys.policy import KeyPolicy
from glasskey.store.tables import api_keys, models, orgs

ACTIVE, REVOKED = "active", "revoked"


@dataclass(frozen=True)
class KeyRecord:
    id: str
    public_id: str
    org_id: str
    name: str
    owner: str
    policy: KeyPolicy
    status: str
    created_at: datetime
    revoked_at: datetime | None
    secret_hash: str = ""

    @property
    def prefix(self) -> str:
        return f"{key_secret.PREFIX}-{self.public_id}"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "org_id": self.org_id,
            "name": self.name,
            "owner": self.owner,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            **self.policy.as_dict(),
        }


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        public_id=row.public_id,
        org_id=row.org_id,
        name=row.name,
        owner=row.owner,
        policy=KeyPolicy(
            allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None,
            settlement=row.settlement,
            lower_cost_routes=row.lower_cost_routes,
            backup_routes=row.backup_routes,
            strict_params=row.strict_params,
            budget_total_micros=row.budget_total_micros,
            budget_daily_micros=row.budget_daily_micros,
            rpm_limit=row.rpm_limit,
            expires_at=row.expires_at,
        ),
        status=row.status,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        secret_hash=row.secret_hash,
    )


def _policy_values(policy: KeyPolicy) -> dict[str, Any]:
    return {
        "allowed_models": list(policy.allowed_models) if policy.allowed_models is not None else None,
        "settlement": policy.settlement,
        "lower_cost_routes": policy.lower_cost_routes,
        "backup_routes": policy.backup_routes,
        "strict_params": policy.strict_params,
        "budget_total_micros": policy.budget_total_micros,
        "budget_daily_micros": policy.budget_daily_micros,
        "rpm_limit": policy.rpm_limit,
        "expires_at": policy.expires_at,
    }


def _check_policy(conn: Connection, policy: KeyPolicy) -> None:
    """A policy may only say what will happen: models the catalog knows (a typo would silently
    allow nothing), and lower-cost routes only where selection applies them (routed keys)."""
    if policy.lower_cost_routes and policy.settlement != "routed":
        raise ClientError(
            "lower-cost routes apply only to routed keys: an official key is always served by the "
            "operator's priority order at list price; turn lower_cost_routes off or settle routed",
            param="lower_cost_routes",
        )
    if policy.allowed_models is None:
        return
    known = set(conn.scalars(select(models.c.name).where(models.c.name.in_(policy.allowed_models))))
    unknown = [name for name in policy.allowed_models if name not in known]
    if unknown:
        raise ClientError(f"unknown model(s) in allowed_models: {', '.join(unknown)}", param="allowed_models")


def create_key(
    conn: Connection,
    *,
    pepper: str,
    org_id: str,
    name: str,
    policy: KeyPolicy,
    now: datetime,
    owner: str = "",
) -> tuple[KeyRecord, str]:
    """Create a key; returns its record and the full key, which is never available again."""
    if conn.scalar(select(orgs.c.id).where(orgs.c.id == org_id)) is None:
        raise NotFound(f"org {org_id} does not exist")
    if not name.strip():
        raise ClientError("a key needs a name", param="name")
    _check_policy(conn, policy)
    issued = key_secret.KEY.issue(pepper)
    key_id = new_id("key")
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            public_id=issued.public_id,
            secret_hash=issued.secret_hash,
            org_id=org_id,
            name=name,
            owner=owner,
            status=ACTIVE,
            created_at=now,
            revoked_at=None,
            **_policy_values(policy),
        )
    )
    return get_key(conn, key_id), issued.full_text


def get_key(conn: Connection, key_id: str) -> KeyRecord:
    """A key by its id or by its public prefix (``gk-<public id>``)."""
    public_id = key_secret.KEY.public_id_of(key_id)
    condition = api_keys.c.id == key_id if public_id is None else api_keys.c.public_id == public_id
    row = conn.execute(select(api_keys).where(condition)).first()
    if row is None:
        raise NotFound(f"key {key_id} does not exist")
    return _record(row)


def list_keys(conn: Connection, org_id: str | None = None) -> list[KeyRecord]:
    query = select(api_keys)
    if org_id is not None:
        query = query.where(api_keys.c.org_id == org_id)
    return [_record(row) for row in conn.execute(query.order_by(api_keys.c.created_at, api_keys.c.id))]


def update_key(
    conn: Connection, key_id: str, *, name: str | None = None, owner: str | None = None, **policy_changes: Any
) -> KeyRecord:
    current = get_key(conn, key_id)
    policy = replace(current.policy, **policy_changes)
    _check_policy(conn, policy)
    values: dict[str, Any] = _policy_values(policy)
    if name is not None:
        if not name.strip():
            raise ClientError("a key needs a name", param="name")
        values["name"] = name
    if owner is not None:
        values["owner"] = owner
    conn.execute(update(api_keys).where(api_keys.c.id == current.id).values(values))
    return get_key(conn, current.id)


def revoke_key(conn: Connection, key_id: str, now: datetime) -> KeyRecord:
    current = get_key(conn, key_id)
    if current.status != REVOKED:
        conn.execute(update(api_keys).where(api_keys.c.id == current.id).values(status=REVOKED, revoked_at=now))
    return get_key(conn, current.id)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise APIKeyError("Missing API key: send it as `Authorization: Bearer gk-...`", code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIKeyError("Malformed Authorization header: expected `Bearer gk-...`", code="invalid_api_key")
    return token.strip()


def find_by_public_id(conn: Connection, public_id: str) -> KeyRecord | None:
    row = conn.execute(select(api_keys).where(api_keys.c.public_id == public_id)).first()
    return _record(row) if row is not None else None


def verify_token(token: str, *, pepper: str, now: datetime, lookup: Callable[[str], KeyRecord | None]) -> KeyRecord:
    """The active key behind ``token``, found with ``lookup(public_id)``; failures echo nothing."""
    parsed = key_secret.parse(token)
    record = lookup(parsed[0]) if parsed is not None else None
    return verify_parsed(parsed, record, pepper=pepper, now=now)


def verify_parsed(parsed: tuple[str, str] | None, record: KeyRecord | None, *, pepper: str, now: datetime) -> KeyRecord:
    """``verify_token`` for a token already parsed and its record already looked up (the request path)."""
    if parsed is None:
        raise APIKeyError("Incorrect API key provided", code="invalid_api_key")
    # An unknown public id costs the same work as a wrong secret (``matches``).
    if not key_secret.matches(pepper, parsed[1], record.secret_hash if record is not None else None) or record is None:
        raise APIKeyError("Incorrect API key provided", code="invalid_api_key")
    check_usable(record, now)
    return record


def authenticate(conn: Connection, *, pepper: str, token: str, now: datetime) -> KeyRecord:
    """The active key behind ``token``; every failure is ``source: key`` and echoes nothing."""
    return verify_token(token, pepper=pepper, now=now, lookup=lambda public_id: find_by_public_id(conn, public_id))


def check_usable(record: KeyRecord, now: datetime) -> None:
    if record.status == REVOKED:
        raise APIKeyError(f"API key {record.prefix} has been revoked", code="key_revoked")
    if record.policy.expires_at is not None and record.policy.expires_at <= now:
        raise APIKeyError(
            f"API key {record.prefix} expired at {record.policy.expires_at.isoformat()}", code="key_expired"
        )
