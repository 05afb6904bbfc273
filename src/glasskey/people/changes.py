"""Changes to orgs, keys, routes, prices, wallets, limits and roles, each audited by the one function that makes it.

The admin API, the dashboard and the CLI call these instead of the bare domain functions, so a change
is recorded the same way whichever surface made it: who (the ``Actor``, with the address and request
id when there is one), the org, the target as ``kind:id`` and, for a change, the fields it changed as
before → after (a top-up: its amount and the wallet's balance before and after). What is recorded is
the objects' ``public()`` form: never a key's secret, a route's credential only as its mask.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, get_key
from glasskey.keys.service import create_key as _create_key
from glasskey.keys.service import revoke_key as _revoke_key
from glasskey.keys.service import update_key as _update_key
from glasskey.ledger import Transfer
from glasskey.orgs.service import Org, get_wallet
from glasskey.orgs.service import create_org as _create_org
from glasskey.orgs.service import top_up as _top_up
from glasskey.people.audit import Actor, record
from glasskey.people.limits import OrgLimits, get_limits
from glasskey.people.limits import set_limits as _set_limits
from glasskey.people.members import Membership, get_membership
from glasskey.people.members import change_role as _change_role
from glasskey.pricing.catalog import Model, Prices, get_model
from glasskey.pricing.catalog import set_official_prices as _set_official_prices
from glasskey.routing.routes import Route, get_route
from glasskey.routing.routes import create_route as _create_route
from glasskey.routing.routes import update_route as _update_route


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields whose value differs, as they were and as they are."""
    names = [name for name in {**before, **after} if before.get(name) != after.get(name)]
    return {name: before.get(name) for name in names}, {name: after.get(name) for name in names}


def _changed(
    conn: Connection,
    actor: Actor,
    now: datetime,
    action: str,
    target: str,
    org_id: str | None,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    was, now_is = changed_fields(before, after)
    record(conn, actor, action, now, org_id=org_id, target=target, before=was, after=now_is)


def create_key(
    conn: Connection,
    actor: Actor,
    now: datetime,
    *,
    pepper: str,
    org_id: str,
    name: str,
    policy: KeyPolicy,
    owner: str = "",
) -> tuple[KeyRecord, str]:
    key, full_key = _create_key(conn, pepper=pepper, org_id=org_id, name=name, policy=policy, now=now, owner=owner)
    record(conn, actor, "key.create", now, org_id=key.org_id, target=f"key:{key.id}", after=key.public())
    return key, full_key


def update_key(conn: Connection, actor: Actor, now: datetime, key_ref: str, **changes: Any) -> KeyRecord:
    before = get_key(conn, key_ref)
    after = _update_key(conn, before.id, **changes)
    _changed(conn, actor, now, "key.update", f"key:{after.id}", after.org_id, before.public(), after.public())
    return after


def revoke_key(conn: Connection, actor: Actor, now: datetime, key_ref: str) -> KeyRecord:
    before = get_key(conn, key_ref)
    after = _revoke_key(conn, before.id, now)
    _changed(conn, actor, now, "key.revoke", f"key:{after.id}", after.org_id, before.public(), after.public())
    return after


def create_route(conn: Connection, actor: Actor, now: datetime, route: Route) -> Route:
    created = _create_route(conn, route, now)
    record(conn, actor, "route.create", now, target=f"route:{created.id}", after=created.public())
    return created


def update_route(conn: Connection, actor: Actor, now: datetime, route_id: str, **changes: Any) -> Route:
    before = get_route(conn, route_id)
    after = _update_route(conn, route_id, **changes)
    _changed(conn, actor, now, "route.update", f"route:{after.id}", None, before.public(), after.public())
    return after


def top_up(
    conn: Connection,
    actor: Actor,
    now: datetime,
    org_id: str,
    kind: str,
    amount_micros: int,
    *,
    idempotency_key: str | None = None,
    memo: str = "",
) -> Transfer:
    """A replayed top-up moves nothing and is not recorded again."""
    before = get_wallet(conn, org_id, kind).balance.posted_micros
    transfer = _top_up(conn, org_id, kind, amount_micros, now, idempotency_key=idempotency_key, memo=memo)
    if not transfer.replayed:
        after = get_wallet(conn, org_id, kind).balance.posted_micros
        record(
            conn,
            actor,
            "wallet.topup",
            now,
            org_id=org_id,
            target=f"wallet:{org_id}/{kind}",
            before={"posted_micros": before},
            after={"posted_micros": after, "amount_micros": transfer.amount_micros, "transfer_id": transfer.id},
        )
    return transfer


def set_limits(conn: Connection, actor: Actor, now: datetime, org_id: str, limits: OrgLimits) -> OrgLimits:
    before = get_limits(conn, org_id)
    after = _set_limits(conn, org_id, limits, now)
    _changed(conn, actor, now, "org.limits", f"org:{org_id}", org_id, before.as_dict(), after.as_dict())
    return after


def change_role(
    conn: Connection, actor: Actor, now: datetime, actor_role: str, org_id: str, user_id: str, role: str
) -> Membership:
    before = get_membership(conn, org_id, user_id)
    after = _change_role(conn, actor_role, org_id, user_id, role)
    _changed(conn, actor, now, "member.role", f"member:{user_id}", org_id, before.public(), after.public())
    return after


def create_org(conn: Connection, actor: Actor, now: datetime, name: str) -> Org:
    org = _create_org(conn, name, now)
    record(conn, actor, "org.create", now, org_id=org.id, target=f"org:{org.id}", after=org.public())
    return org


def _price(model: Model) -> dict[str, Any]:
    return {**model.official_prices.as_dict(), "price_date": model.price_date, "price_source": model.price_source}


def set_official_prices(
    conn: Connection, actor: Actor, now: datetime, name: str, prices: Prices, *, price_date: str, source: str
) -> Model:
    before = get_model(conn, name)
    after = _set_official_prices(conn, name, prices, price_date=price_date, source=source)
    _changed(conn, actor, now, "model.price", f"model:{after.name}", None, _price(before), _price(after))
    return after
