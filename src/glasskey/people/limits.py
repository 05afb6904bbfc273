"""Org limits: what an org's owner lets members give their keys, and the check every member key passes.

An owner sets the models the org's people may use, the settlements allowed, the largest total and
daily budget and rpm a person below owner may give a key, and the longest such a key may live. Every
role below owner that makes keys (``BOUND_ROLES``: billing and member) is bound: a limit left out of
the key's policy is filled in at the ceiling, and a value above the ceiling is refused (403, naming
the limit). Owners and the operator are not bound by them: the owner sets them, and could raise them
anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from glasskey.errors import AdminAuthError
from glasskey.keys.policy import KeyPolicy
from glasskey.people.tables import org_limits

# The roles whose keys the org's limits bind: every role below owner that may make a key (a viewer
# makes none). Billing is here because it is below owner, not because it is about money.
BOUND_ROLES = frozenset({"billing", "member"})


def bound_by_limits(role: str) -> bool:
    """Whether a person with ``role`` in an org makes keys within the org's limits."""
    return role in BOUND_ROLES


@dataclass(frozen=True)
class OrgLimits:
    allowed_models: tuple[str, ...] | None = None
    settlements: tuple[str, ...] | None = None
    budget_total_max_micros: int | None = None
    budget_daily_max_micros: int | None = None
    rpm_max: int | None = None
    key_lifetime_max_seconds: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
            "settlements": list(self.settlements) if self.settlements is not None else None,
            "budget_total_max_micros": self.budget_total_max_micros,
            "budget_daily_max_micros": self.budget_daily_max_micros,
            "rpm_max": self.rpm_max,
            "key_lifetime_max_seconds": self.key_lifetime_max_seconds,
        }


def get_limits(conn: Connection, org_id: str) -> OrgLimits:
    row = conn.execute(select(org_limits).where(org_limits.c.org_id == org_id)).first()
    if row is None:
        return OrgLimits()
    return OrgLimits(
        allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None,
        settlements=tuple(row.settlements) if row.settlements is not None else None,
        budget_total_max_micros=row.budget_total_max_micros,
        budget_daily_max_micros=row.budget_daily_max_micros,
        rpm_max=row.rpm_max,
        key_lifetime_max_seconds=row.key_lifetime_max_seconds,
    )


def set_limits(conn: Connection, org_id: str, limits: OrgLimits, now: datetime) -> OrgLimits:
    values = {**limits.as_dict(), "updated_at": now}
    if conn.execute(select(org_limits.c.org_id).where(org_limits.c.org_id == org_id)).first() is None:
        conn.execute(org_limits.insert().values(org_id=org_id, **values))
    else:
        conn.execute(org_limits.update().where(org_limits.c.org_id == org_id).values(**values))
    return get_limits(conn, org_id)


def _over(limit: str, detail: str) -> AdminAuthError:
    return AdminAuthError(
        f"Over the org's limit {limit}: {detail}. Ask an owner to raise it.", code="over_org_limit", status_code=403
    )


def _capped(value: int | None, ceiling: int | None, limit: str) -> int | None:
    """The value, or the ceiling when left out; refused when above it."""
    if ceiling is None:
        return value
    if value is None:
        return ceiling
    if value > ceiling:
        raise _over(limit, f"{value} is more than {ceiling}")
    return value


def bound_policy(limits: OrgLimits, policy: KeyPolicy, now: datetime) -> KeyPolicy:
    """The policy a bound person's key gets under the org's limits, or a 403 naming the limit it exceeds."""
    models = policy.allowed_models
    if limits.allowed_models is not None:
        if models is None:
            models = limits.allowed_models
        outside = [name for name in models if name not in limits.allowed_models]
        if outside:
            raise _over("allowed_models", f"{', '.join(outside)} not allowed in this org")
    if limits.settlements is not None and policy.settlement not in limits.settlements:
        raise _over("settlements", f"settlement {policy.settlement} not allowed in this org")
    expires_at = policy.expires_at
    if limits.key_lifetime_max_seconds is not None:
        latest = now + timedelta(seconds=limits.key_lifetime_max_seconds)
        if expires_at is None:
            expires_at = latest
        elif expires_at > latest:
            raise _over("key_lifetime_max_seconds", f"the key would expire after {latest.isoformat()}")
    return replace(
        policy,
        allowed_models=models,
        budget_total_micros=_capped(
            policy.budget_total_micros, limits.budget_total_max_micros, "budget_total_max_micros"
        ),
        budget_daily_micros=_capped(
            policy.budget_daily_micros, limits.budget_daily_max_micros, "budget_daily_max_micros"
        ),
        rpm_limit=_capped(policy.rpm_limit, limits.rpm_max, "rpm_max"),
        expires_at=expires_at,
    )
