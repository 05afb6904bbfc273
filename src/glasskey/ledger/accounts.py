"""Ledger accounts and their balances.

A wallet is a credit-normal account: money in is a credit, a charge is a debit. Its balances
are read from the counters that every transfer updates in the same transaction:

* ``posted``    = credits_posted - debits_posted
* ``held``      = debits_pending (holds not yet posted or voided)
* ``available`` = posted - held, which never goes below the wallet's floor.

System accounts (the top-up source and revenue per settlement) have no floor: the top-up
source goes negative by exactly the money that entered the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from glasskey.store.tables import accounts

SYSTEM_TOPUP_SOURCE = "sys_topup_source"
SYSTEM_REVENUE = {"official": "sys_revenue_official", "routed": "sys_revenue_routed"}


@dataclass(frozen=True)
class Balance:
    account_id: str
    posted_micros: int
    held_micros: int
    available_micros: int
    floor_micros: int | None


def open_account(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    now: datetime,
    org_id: str | None = None,
    floor_micros: int | None = 0,
) -> None:
    conn.execute(
        accounts.insert().values(
            id=account_id,
            org_id=org_id,
            kind=kind,
            floor_micros=floor_micros,
            debits_posted=0,
            credits_posted=0,
            debits_pending=0,
            credits_pending=0,
            created_at=now,
        )
    )


def ensure_system_accounts(conn: Connection, now: datetime) -> None:
    """Create the system accounts once; safe to call at every start."""
    wanted = {SYSTEM_TOPUP_SOURCE: "topup_source"}
    wanted.update({account_id: f"revenue_{settlement}" for settlement, account_id in SYSTEM_REVENUE.items()})
    existing = set(conn.scalars(select(accounts.c.id).where(accounts.c.id.in_(list(wanted)))))
    for account_id, kind in wanted.items():
        if account_id not in existing:
            open_account(conn, account_id=account_id, kind=kind, now=now, floor_micros=None)


def get_balance(conn: Connection, account_id: str) -> Balance:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one()
    posted = row.credits_posted - row.debits_posted
    return Balance(
        account_id=account_id,
        posted_micros=posted,
        held_micros=row.debits_pending,
        available_micros=posted - row.debits_pending,
        floor_micros=row.floor_micros,
    )
