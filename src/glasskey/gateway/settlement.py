"""Settling a request's hold: post the charge and release the rest, or charge directly if the hold is gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection

from glasskey.errors import NotFound
from glasskey.gateway.run import Hold, Run
from glasskey.keys.budget import settle_budget
from glasskey.ledger import (
    InsufficientFunds,
    TransferNotPending,
    create_posted,
    send_post_pending,
    send_void_pending,
)


def send_settlement(conn: Connection, run: Run, hold: Hold, charge: int, now: datetime) -> Callable[[], int]:
    """Post or void the hold; if it is gone (expired, or its batch never committed), charge directly.

    Its statement is sent in the writer's pipeline (``ledger.send_pending``): call the result, once
    the pipeline has run, for what was charged."""
    if charge > 0:
        resolving = send_post_pending(conn, hold.transfer_id, charge, now)
    else:
        resolving = send_void_pending(conn, hold.transfer_id, now)

    def settled() -> int:
        key_id = run.receipt.key_id
        try:
            resolving()
        except NotFound:
            # The hold's batch failed to commit, taking its budget hold with it.
            run.notes.append("hold_lost_before_settlement")
            return charge_without_hold(conn, run, hold, charge, now)
        except TransferNotPending:
            # The sweep released both the wallet hold and the budget hold already.
            run.notes.append("hold_expired_before_settlement")
            return charge_without_hold(conn, run, hold, charge, now)
        if key_id is not None:
            settle_budget(conn, key_id, hold.budget_period, hold.amount_micros, charge)
        return charge

    return settled


def charge_without_hold(conn: Connection, run: Run, hold: Hold, charge: int, now: datetime) -> int:
    """A charge whose hold is gone: one posted transfer, still refused below the wallet's floor."""
    if charge == 0:
        return 0
    try:
        posted = create_posted(
            conn,
            debit_account_id=hold.wallet_account_id,
            credit_account_id=hold.revenue_account_id,
            amount_micros=charge,
            now=now,
            kind="charge",
            request_id=run.receipt.request_id,
            memo="charge without its hold",
        )
    except InsufficientFunds:
        run.notes.append("unbilled_wallet_empty_without_hold")
        run.receipt.transfer_id = None
        return 0
    run.receipt.transfer_id = posted.id
    if run.receipt.key_id is not None:
        settle_budget(conn, run.receipt.key_id, hold.budget_period, 0, charge)
    return charge
