"""Gateway instances: who is dead on each engine, and what the holds of a dead one become.

The end-to-end story (a process killed, the next one voiding its holds at start-up) is
``test_crash_interrupted.py``; these tests drive ``gateway.instances`` directly, on both engines.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from conftest_helpers import NOW
from gateway.test_accounting import receipt_row, run, setup
from glasskey.gateway import instances
from glasskey.gateway.accounting import Held, Hold, Settled, Settlement
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.keys.policy import KeyPolicy
from glasskey.ledger import SYSTEM_REVENUE, audit, get_balance, get_transfer
from glasskey.store import tables
from glasskey.store.database import Database
from glasskey.store.tables import receipts

POLICY = KeyPolicy(settlement="routed", budget_total_micros=1_000_000)


def held_by(db: Database, instance_id: str) -> tuple[Held, str, str]:
    """A hold of 200,000 micros taken by ``instance_id``: (held, wallet, key id)."""
    wallet, key_id = setup(db, wallet_micros=500_000, policy=POLICY)
    hold = Hold(
        key_id=key_id,
        policy=POLICY,
        wallet_kind="routed",
        wallet_account_id=wallet,
        revenue_account_id=SYSTEM_REVENUE["routed"],
        amount_micros=200_000,
        now=NOW,
        expires_at=NOW + timedelta(minutes=15),
        request_id="req_acc",
        memo="hold for gpt-4o-mini",
        instance_id=instance_id,
    )
    held = run(db, hold)
    assert isinstance(held, Held)
    return held, wallet, key_id


def test_a_live_instance_is_dead_only_on_sqlite_where_one_process_serves_a_file(db: Database):
    with db.write() as conn:
        instances.register(conn, "inst_other", NOW)
        instances.register(conn, "inst_self", NOW)
    held, _, _ = held_by(db, "inst_other")
    with db.write() as conn:
        voided = instances.void_dead_holds(conn, "inst_self", NOW + timedelta(seconds=1))
        status = get_transfer(conn, held.transfer_id).status
    if db.dialect == "sqlite":
        assert (voided, status) == (1, "voided")
    else:  # beating a second ago: alive on PostgreSQL, until three heartbeats go missing
        assert (voided, status) == (0, "pending")
        later = NOW + timedelta(seconds=instances.HEARTBEAT_SECONDS * instances.DEAD_AFTER_BEATS + 1)
        with db.write() as conn:
            instances.beat(conn, "inst_self", later)
            assert instances.void_dead_holds(conn, "inst_self", later) == 1
    with db.read() as conn:
        assert set(conn.scalars(select(tables.instances.c.id))) == {"inst_self"}
        audit(conn).raise_if_broken()


def test_a_dead_instances_hold_is_voided_with_an_interrupted_receipt_and_its_budget_released(db: Database):
    with db.write() as conn:
        instances.register(conn, "inst_dead", NOW - timedelta(minutes=5))
    held, wallet, key_id = held_by(db, "inst_dead")
    with db.write() as conn:
        assert instances.void_dead_holds(conn, "inst_self", NOW) == 1
        assert instances.void_dead_holds(conn, "inst_self", NOW) == 0  # once
    with db.read() as conn:
        receipt = conn.execute(select(receipts).where(receipts.c.request_id == "req_acc")).one()
        assert get_balance(conn, wallet).held_micros == 0
        assert get_spend(conn, key_id, TOTAL).held_micros == 0
        audit(conn).raise_if_broken()
    assert (receipt.status, receipt.error_source, receipt.error_code) == ("interrupted", "gateway", "interrupted")
    assert (receipt.charge_micros, receipt.hold_micros, receipt.transfer_id) == (0, 200_000, held.transfer_id)
    assert receipt.usage_source == "estimated" and receipt.requested_model == "gpt-4o-mini"


def test_a_process_taken_for_dead_that_settles_later_keeps_the_interrupted_receipt_and_charges_nothing(
    db: Database,
):
    # A gateway cut off from PostgreSQL for longer than three heartbeats comes back and settles.
    with db.write() as conn:
        instances.register(conn, "inst_cut_off", NOW - timedelta(minutes=5))
    held, wallet, key_id = held_by(db, "inst_cut_off")
    with db.write() as conn:
        instances.void_dead_holds(conn, "inst_self", NOW)
    settled = run(db, Settlement(held, 70_000, receipt_row("req_acc"), NOW))
    assert isinstance(settled, Settled)
    with db.read() as conn:
        rows = list(conn.execute(select(receipts).where(receipts.c.request_id == "req_acc")))
        assert get_balance(conn, wallet).available_micros == 500_000
        assert get_spend(conn, key_id, TOTAL).spent_micros == 0
        audit(conn).raise_if_broken()
    assert settled.charge_micros == 0 and "interrupted_before_settlement" in settled.flags
    assert [row.status for row in rows] == ["interrupted"]
