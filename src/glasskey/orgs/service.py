"""Orgs own two wallets, each a ledger account with a floor: ``credit`` and ``routed``.

Top-ups move money from the system top-up source into a wallet in one posted transfer; an
``Idempotency-Key`` makes a retried top-up return the first result and move nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from glasskey.errors import ClientError, NotFound
from glasskey.ids import new_id
from glasskey.ledger import SYSTEM_TOPUP_SOURCE, Balance, Transfer, create_posted, get_balance, open_account
from glasskey.limits import TOP_UP_MAX_MICROS, TOP_UPS_TOTAL_MAX_MICROS, check_range
from glasskey.store.tables import accounts, orgs, transfers

WALLET_KINDS = ("credit", "routed")


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Wallet:
    org_id: str
    kind: str
    account_id: str
    balance: Balance

    def public(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "kind": self.kind,
            "account_id": self.account_id,
            "posted_micros": self.balance.posted_micros,
            "held_micros": self.balance.held_micros,
            "available_micros": self.balance.available_micros,
            "floor_micros": self.balance.floor_micros,
        }


def create_org(conn: Connection, name: str, now: datetime) -> Org:
    if not name.strip():
        raise ClientError("an org needs a name", param="name")
    if conn.scalar(select(orgs.c.id).where(orgs.c.name == name)) is not None:
        raise ClientError(f"an org named {name!r} already exists", param="name", status_code=409)
    org = Org(id=new_id("org"), name=name, created_at=now)
    conn.execute(orgs.insert().values(id=org.id, name=org.name, created_at=now))
    for kind in WALLET_KINDS:
        open_account(conn, account_id=new_id("wal"), kind=kind, org_id=org.id, now=now, floor_micros=0)
    return org


def get_org(conn: Connection, org_id: str) -> Org:
    row = conn.execute(select(orgs).where((orgs.c.id == org_id) | (orgs.c.name == org_id))).first()
    if row is None:
        raise NotFound(f"org {org_id} does not exist")
    return Org(id=row.id, name=row.name, created_at=row.created_at)


def list_orgs(conn: Connection) -> list[Org]:
    return [
        Org(id=r.id, name=r.name, created_at=r.created_at) for r in conn.execute(select(orgs).order_by(orgs.c.name))
    ]


def wallet_account_id(conn: Connection, org_id: str, kind: str) -> str:
    if kind not in WALLET_KINDS:
        raise ClientError(f"wallet kind must be one of {', '.join(WALLET_KINDS)}", param="kind")
    account_id = conn.scalar(select(accounts.c.id).where(accounts.c.org_id == org_id, accounts.c.kind == kind))
    if account_id is None:
        raise NotFound(f"org {org_id} has no {kind} wallet")
    return str(account_id)


def get_wallet(conn: Connection, org_id: str, kind: str) -> Wallet:
    account_id = wallet_account_id(conn, org_id, kind)
    return Wallet(org_id=org_id, kind=kind, account_id=account_id, balance=get_balance(conn, account_id))


def list_wallets(conn: Connection, org_id: str) -> list[Wallet]:
    return [get_wallet(conn, org_id, kind) for kind in WALLET_KINDS]


def _check_total_top_ups(conn: Connection, amount_micros: int, idempotency_key: str | None) -> None:
    """Refuse a top-up that would take all top-ups past their cap, so no ledger counter can overflow.

    The top-up source is debited by every top-up and by nothing else, so its ``debits_posted`` is
    the sum of all of them (``glasskey.limits`` says why that bounds every counter). A replay of an
    earlier top-up moves nothing, so it is never refused here.
    """
    total = conn.scalar(select(accounts.c.debits_posted).where(accounts.c.id == SYSTEM_TOPUP_SOURCE)) or 0
    if total + amount_micros <= TOP_UPS_TOTAL_MAX_MICROS:
        return
    if idempotency_key is not None and conn.scalar(
        select(transfers.c.id).where(transfers.c.idempotency_key == idempotency_key)
    ):
        return
    raise ClientError(
        f"this top-up would take the money ever topped up on this gateway past {TOP_UPS_TOTAL_MAX_MICROS:,} "
        "micros, the ledger's limit (docs/security.md)",
        code="value_too_large",
        param="amount_micros",
    )


def top_up(
    conn: Connection,
    org_id: str,
    kind: str,
    amount_micros: int,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    memo: str = "",
) -> Transfer:
    if amount_micros <= 0:
        raise ClientError("a top-up amount must be positive", param="amount_micros")
    check_range("amount_micros", amount_micros, TOP_UP_MAX_MICROS, 1)
    account_id = wallet_account_id(conn, org_id, kind)
    _check_total_top_ups(conn, amount_micros, f"topup:{idempotency_key}" if idempotency_key else None)
    return create_posted(
        conn,
        debit_account_id=SYSTEM_TOPUP_SOURCE,
        credit_account_id=account_id,
        amount_micros=amount_micros,
        now=now,
        kind="topup",
        idempotency_key=f"topup:{idempotency_key}" if idempotency_key else None,
        memo=memo or f"top-up of {kind} wallet",
    )
