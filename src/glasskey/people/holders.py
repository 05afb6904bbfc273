"""Who holds a key made by a person: that person, or a named service (script, agent, workflow) they answer for.

``create_person_key`` is how a signed-in person makes a key: the org is the principal's, the holder
is the principal (or a service they name, with the principal answering for it), and the policy of
anyone below owner (billing, member) is bound by the org's limits. Nothing about ownership is taken
from the request body.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update

from glasskey.errors import AdminAuthError, ClientError, NotFound
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key, get_key, list_keys
from glasskey.people.limits import bound_by_limits, bound_policy, get_limits
from glasskey.people.principal import Principal
from glasskey.people.roles import rank
from glasskey.people.tables import key_holders, users
from glasskey.store.tables import api_keys

SERVICE_NAME_MAX_LENGTH = 200


@dataclass(frozen=True)
class Holder:
    key_id: str
    holder_user_id: str | None
    service_name: str | None
    responsible_user_id: str

    def public(self) -> dict[str, Any]:
        return {
            "held_by": {"user_id": self.holder_user_id}
            if self.service_name is None
            else {"service": self.service_name},
            "responsible_user_id": self.responsible_user_id,
        }


def _holder(row: Any) -> Holder:
    return Holder(
        key_id=row.key_id,
        holder_user_id=row.holder_user_id,
        service_name=row.service_name,
        responsible_user_id=row.responsible_user_id,
    )


def holder_of(conn: Connection, key_id: str) -> Holder | None:
    row = conn.execute(select(key_holders).where(key_holders.c.key_id == key_id)).first()
    return _holder(row) if row is not None else None


def answers_for(holder: Holder | None, user_id: str | None) -> bool:
    """Whether ``user_id`` holds the key or answers for the service holding it."""
    return holder is not None and user_id is not None and user_id in (holder.holder_user_id, holder.responsible_user_id)


def create_person_key(
    conn: Connection,
    principal: Principal,
    *,
    pepper: str,
    name: str,
    policy: KeyPolicy,
    now: datetime,
    service: str | None = None,
) -> tuple[KeyRecord, str, Holder]:
    """A key in the principal's org, held by the principal or by ``service`` they answer for."""
    if principal.user_id is None or principal.org_id is None:
        raise ClientError("Only a person signed in to an org holds keys; the admin token uses POST /keys")
    if rank(principal.role) < rank("member"):
        raise AdminAuthError("A viewer cannot create keys", code="role_too_low", status_code=403)
    if service is not None and not (0 < len(service.strip()) <= SERVICE_NAME_MAX_LENGTH):
        raise ClientError(f"a service name has 1 to {SERVICE_NAME_MAX_LENGTH} characters", param="service")
    if bound_by_limits(principal.role):
        policy = bound_policy(get_limits(conn, principal.org_id), policy, now)
    owner = f"{service} (for {principal.email})" if service else principal.email
    record, full_key = create_key(
        conn, pepper=pepper, org_id=principal.org_id, name=name, policy=policy, now=now, owner=owner
    )
    conn.execute(
        key_holders.insert().values(
            key_id=record.id,
            org_id=principal.org_id,
            holder_user_id=None if service else principal.user_id,
            service_name=service.strip() if service else None,
            responsible_user_id=principal.user_id,
            created_at=now,
        )
    )
    holder = holder_of(conn, record.id)
    assert holder is not None
    return record, full_key, holder


def keys_of(conn: Connection, org_id: str, user_id: str) -> list[tuple[KeyRecord, Holder]]:
    """The person's own keys and their services' keys in the org."""
    rows = conn.execute(
        select(key_holders)
        .where(key_holders.c.org_id == org_id)
        .where(or_(key_holders.c.holder_user_id == user_id, key_holders.c.responsible_user_id == user_id))
    )
    holders = {row.key_id: _holder(row) for row in rows}
    return [(key, holders[key.id]) for key in list_keys(conn, org_id) if key.id in holders]


def hand_over(conn: Connection, key_id: str, to_user_id: str) -> None:
    """A service key now answered for by ``to_user_id`` (the key itself, its secret and policy, unchanged)."""
    conn.execute(update(key_holders).where(key_holders.c.key_id == key_id).values(responsible_user_id=to_user_id))


def key_in_org(conn: Connection, key_ref: str, org_id: str) -> KeyRecord:
    """The key, if it belongs to ``org_id``; a key of another org is as unknown as a missing one."""
    key = get_key(conn, key_ref)
    if key.org_id != org_id:
        raise NotFound(f"key {key_ref} does not exist")
    return key


def holder_view(conn: Connection, key: KeyRecord) -> dict[str, Any]:
    """Who holds the key and who answers for it, in the words every surface shows (``/v1/key`` too).

    A key made by the operator (admin token or CLI) has no holder row: its free-text owner is shown,
    and the operator answers for it.
    """
    # A key not stored yet (the dashboard's preview of a draft) has no holder either.
    return holder_views(conn, [key.id]).get(key.id) or {
        "kind": "unassigned",
        "name": key.owner,
        "responsible": "the operator",
    }


def holder_views(conn: Connection, key_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """``holder_view`` of many keys in one query: a page of receipts names each key's holder.

    Receipts do not store the holder (the request path writes nothing more for it); it is resolved
    when receipts are read, so a key handed over at offboarding shows who answers for it now.
    """
    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    held_by, answers = users.alias("held_by"), users.alias("answers")
    rows = conn.execute(
        select(
            api_keys.c.id,
            api_keys.c.owner,
            key_holders.c.key_id.label("held"),
            key_holders.c.service_name,
            held_by.c.email.label("holder_email"),
            answers.c.email.label("responsible_email"),
        )
        .select_from(
            api_keys.outerjoin(key_holders, key_holders.c.key_id == api_keys.c.id)
            .outerjoin(held_by, held_by.c.id == key_holders.c.holder_user_id)
            .outerjoin(answers, answers.c.id == key_holders.c.responsible_user_id)
        )
        .where(api_keys.c.id.in_(wanted))
    )
    views: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.held is None:
            views[row.id] = {"kind": "unassigned", "name": row.owner, "responsible": "the operator"}
        elif row.service_name is not None:
            views[row.id] = {"kind": "service", "name": row.service_name, "responsible": row.responsible_email or ""}
        else:
            views[row.id] = {
                "kind": "person",
                "name": row.holder_email or "",
                "responsible": row.responsible_email or "",
            }
    return views


def with_holders(conn: Connection, receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Receipts (``receipts.records``' dicts) with ``holder``: who held their key and who answers for it."""
    views = holder_views(conn, [receipt["key_id"] for receipt in receipts if receipt.get("key_id")])
    return [{**receipt, "holder": views.get(receipt.get("key_id") or "")} for receipt in receipts]
