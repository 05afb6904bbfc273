"""When a person leaves an org: a plan shown first, then carried out only as shown.

The plan lists the person's own keys (always revoked), the service keys they answer for (each
handed to another member or revoked, as the deciding owner says; revoked when nothing is said),
their access tokens for the org (revoked) and their membership (removed). ``preview`` returns the
plan with a ``fingerprint``; ``confirm`` recomputes the plan and refuses (409) unless the
fingerprint matches, so nothing happens that was not shown, even if a key appeared in between.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.errors import ClientError
from glasskey.keys.service import REVOKED, revoke_key
from glasskey.people.audit import Actor, record
from glasskey.people.holders import hand_over, keys_of
from glasskey.people.members import get_membership, remove_membership, role_in
from glasskey.people.roles import rank, require_above
from glasskey.people.tokens import revoke_tokens_of

REVOKE = "revoke"


@dataclass(frozen=True)
class Plan:
    org_id: str
    user_id: str
    email: str
    role: str
    personal_keys: list[dict[str, str]] = field(default_factory=list)
    service_keys: list[dict[str, str]] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        content = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()

    def content(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "user_id": self.user_id,
            "email": self.email,
            "role": self.role,
            "personal_keys": self.personal_keys,
            "service_keys": self.service_keys,
            "tokens": "revoked",
            "membership": "removed",
        }

    def public(self) -> dict[str, Any]:
        return {"object": "offboarding.plan", **self.content(), "fingerprint": self.fingerprint}


def preview(conn: Connection, actor_role: str, org_id: str, user_id: str, decisions: dict[str, str]) -> Plan:
    """The plan for ``user_id`` leaving ``org_id``; ``decisions`` maps a service key id to a user id or ``revoke``."""
    leaver = get_membership(conn, org_id, user_id)
    require_above(actor_role, leaver.role, "offboard")
    personal: list[dict[str, str]] = []
    services: list[dict[str, str]] = []
    decided = set()
    for key, holder in keys_of(conn, org_id, user_id):
        if key.status == REVOKED:
            continue
        if holder.service_name is None:
            personal.append({"key_id": key.id, "prefix": key.prefix, "name": key.name, "action": REVOKE})
            continue
        choice = decisions.get(key.id, REVOKE)
        decided.add(key.id)
        if choice != REVOKE:
            receiver = role_in(conn, org_id, choice)
            if choice == user_id or receiver is None or rank(receiver) < rank("member"):
                raise ClientError(
                    f"service key {key.id} can only be handed to another member of the org who may hold keys",
                    param=f"service_keys.{key.id}",
                )
        services.append(
            {
                "key_id": key.id,
                "prefix": key.prefix,
                "name": key.name,
                "service": holder.service_name,
                "action": REVOKE if choice == REVOKE else "hand_over",
                "to_user_id": "" if choice == REVOKE else choice,
            }
        )
    unknown = set(decisions) - decided
    if unknown:
        raise ClientError(f"not a service key of this person: {', '.join(sorted(unknown))}", param="service_keys")
    return Plan(org_id, user_id, leaver.email, leaver.role, personal, services)


def confirm(
    conn: Connection,
    actor: Actor,
    actor_role: str,
    org_id: str,
    user_id: str,
    decisions: dict[str, str],
    fingerprint: str,
    now: datetime,
) -> Plan:
    """Carry out the plan that ``preview`` showed with ``fingerprint``; 409 if it changed since."""
    plan = preview(conn, actor_role, org_id, user_id, decisions)
    if plan.fingerprint != fingerprint:
        raise ClientError(
            "The offboarding plan changed since it was shown (a key was added, revoked or handed over); preview again",
            code="plan_changed",
            status_code=409,
        )
    for item in plan.personal_keys + plan.service_keys:
        if item["action"] == REVOKE:
            revoke_key(conn, item["key_id"], now)
        else:
            hand_over(conn, item["key_id"], item["to_user_id"])
    revoke_tokens_of(conn, user_id, org_id, now)
    remove_membership(conn, org_id, user_id)
    record(conn, actor, "member.offboard", now, org_id=org_id, target=user_id, before=plan.content())
    return plan
