"""Gateway processes (instances): who took each hold, who is dead, and the holds a dead one left.

Every serving process has an instance id (``Services.instance_id``), a row in ``instances`` with
its heartbeat, and puts its id on every hold it takes (``transfers.instance_id``). A process killed
mid-request (SIGKILL, a crash, the machine lost) leaves its holds pending and writes no receipt;
the expiry sweep would release them only after ``hold_ttl_seconds`` (15 minutes). Instead, a
serving process voids at once the pending holds of instances it finds dead, releases their
budgets as the sweep does, and writes each request a receipt with ``status: interrupted``.

A stream records what it has forwarded about once a second (``gateway.progress``). A hold with
such a record is not voided but posted for it: the usage recorded (estimated from the forwarded
text, unless the upstream had reported it), at the route's prices, capped by the hold, as the
relay charges a stream whose client left mid-answer. Output forwarded after the last record (up
to about a second) is not charged. A hold without a record is voided and charges nothing.

Who is dead:

* **SQLite**: only one process may serve a SQLite file, so at start-up every other instance is
  dead (a CLI command never registers, and never takes holds).
* **PostgreSQL**: several processes share the database. A process that died is told at once by
  its advisory lock, free since its connections closed (``gateway.liveness``): its holds are
  voided within about two seconds by any running process, or at the start of the next one. An
  instance also beats every ``HEARTBEAT_SECONDS``; one whose ``last_seen`` is older than
  ``DEAD_AFTER_BEATS`` beats is dead too (the fallback for a process hung with its connection
  open, or cut off from the database: if it comes back, each request whose hold was voided keeps
  its ``interrupted`` receipt and is not charged: ``gateway.accounting.Settlement`` flags
  ``interrupted_before_settlement``).

Holds of an instance that never registered (none are taken so) are left to the expiry sweep.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from glasskey.errors import GatewayError
from glasskey.gateway.progress import Progress, forget, recorded
from glasskey.keys.budget import settle_budget
from glasskey.ledger import POSTED, VOIDED, ResolvePending, Transfer, TransferNotPending
from glasskey.ledger.accounts import SYSTEM_REVENUE
from glasskey.receipts.records import Receipt, write_receipt
from glasskey.store.batch import Batch
from glasskey.store.database import Database
from glasskey.store.tables import accounts, api_keys, instances, receipts, transfers

HEARTBEAT_SECONDS = 10.0
DEAD_AFTER_BEATS = 3
# Holds voided per transaction: a bound on one recovery's transaction, the rest follow in the next.
RECOVERY_BATCH = 500
_INTERRUPTED_MESSAGE = (
    "The gateway process serving this request stopped (a crash or a kill) before the request was settled. "
    "Its hold was released and nothing was charged. Whether the client had already received part of an "
    "answer is not known after a crash."
)
_INTERRUPTED_CHARGED_MESSAGE = (
    "The gateway process serving this request stopped (a crash or a kill) mid-stream, before the request "
    "was settled. It is charged for the output the client had received by the last progress record "
    "(estimated unless the upstream had reported usage), capped by its hold; the rest of the hold was released."
)


def register(conn: Connection, instance_id: str, now: datetime) -> None:
    """Record a serving instance, seen now."""
    conn.execute(insert(instances).values(id=instance_id, started_at=now, last_seen=now))


def beat(conn: Connection, instance_id: str, now: datetime) -> None:
    """The instance is alive now (re-registered if a recovery elsewhere took its row for dead)."""
    if conn.execute(update(instances).where(instances.c.id == instance_id).values(last_seen=now)).rowcount == 0:
        register(conn, instance_id, now)


def dead_after(now: datetime) -> datetime:
    """The ``last_seen`` before which an instance is dead (PostgreSQL)."""
    return now - timedelta(seconds=HEARTBEAT_SECONDS * DEAD_AFTER_BEATS)


def _dead(conn: Connection, instance_id: str, now: datetime, also_dead: Collection[str]) -> Any:
    """A query of the ids of dead instances, as seen by ``instance_id``: on PostgreSQL, those past
    their heartbeats and those ``also_dead`` (their liveness lock was found free)."""
    others = select(instances.c.id).where(instances.c.id != instance_id)
    if conn.dialect.name == "sqlite":
        return others
    past_heartbeats = instances.c.last_seen < dead_after(now)
    return others.where(or_(past_heartbeats, instances.c.id.in_(list(also_dead))) if also_dead else past_heartbeats)


def void_dead_holds(conn: Connection, instance_id: str, now: datetime, also_dead: Collection[str] = ()) -> int:
    """Void up to ``RECOVERY_BATCH`` pending holds of dead instances, each with an interrupted receipt.

    Runs in the caller's transaction; returns how many holds it voided (call again while it is
    the whole batch). Once a dead instance has no pending hold left, its row is removed.
    ``also_dead``: instances known dead by other means (``gateway.liveness``), on PostgreSQL.
    """
    dead = _dead(conn, instance_id, now, also_dead)
    rows = conn.execute(
        select(transfers)
        .where(transfers.c.status == "pending", transfers.c.instance_id.in_(dead))
        .limit(RECOVERY_BATCH)
    )
    voided = 0
    for row in list(rows):
        transfer = Transfer.from_row(row)
        progress = recorded(conn, transfer.id)
        charge = min(progress.charge_micros, transfer.amount_micros) if progress is not None else 0
        command = (
            ResolvePending(transfer.id, POSTED, charge, now)
            if charge > 0
            else ResolvePending(transfer.id, VOIDED, None, now)
        )
        batch = Batch.now(conn)
        try:
            with conn.begin_nested():
                command.send(batch)
                command.finish(batch)
        except TransferNotPending:  # settled or swept meanwhile: nothing left to do
            continue
        if transfer.key_id and transfer.budget_period:
            settle_budget(conn, transfer.key_id, transfer.budget_period, transfer.amount_micros, charge)
        if transfer.request_id is not None and not has_receipt(conn, transfer.request_id):
            write_receipt(conn, interrupted_receipt(conn, transfer, now, progress, charge))
        if progress is not None:
            forget(conn, transfer.id)
        voided += 1
    if voided < RECOVERY_BATCH:
        still_holding = select(transfers.c.instance_id).where(
            transfers.c.status == "pending", transfers.c.instance_id.is_not(None)
        )
        conn.execute(delete(instances).where(instances.c.id.in_(dead), instances.c.id.not_in(still_holding)))
    return voided


def has_receipt(conn: Connection, request_id: str) -> bool:
    """Whether the request already has its receipt (an interrupted one, written here)."""
    return conn.scalar(select(receipts.c.request_id).where(receipts.c.request_id == request_id)) is not None


def interrupted_receipt(
    conn: Connection, transfer: Transfer, now: datetime, progress: Progress | None = None, charge_micros: int = 0
) -> Receipt:
    """The receipt of a request whose process died while it held ``transfer``: charged
    ``charge_micros`` for the ``progress`` its stream had recorded, or nothing without one."""
    wallet = conn.execute(
        select(accounts.c.org_id, accounts.c.kind).where(accounts.c.id == transfer.debit_account_id)
    ).first()
    public_id = None
    if transfer.key_id is not None:
        public_id = conn.scalar(select(api_keys.c.public_id).where(api_keys.c.id == transfer.key_id))
    settlement = next((name for name, account in SYSTEM_REVENUE.items() if account == transfer.credit_account_id), None)
    assert transfer.request_id is not None
    error = GatewayError(_INTERRUPTED_CHARGED_MESSAGE if charge_micros else _INTERRUPTED_MESSAGE, code="interrupted")
    receipt = Receipt(
        request_id=transfer.request_id,
        endpoint="unknown",
        created_at=transfer.created_at,
        status="interrupted",
        http_status=error.status_code,
        key_id=transfer.key_id,
        key_public_id=public_id,
        org_id=wallet.org_id if wallet is not None else None,
        # The lifecycle writes "hold for <model>" as the hold's memo; the model is not stored elsewhere.
        requested_model=transfer.memo.removeprefix("hold for ") if transfer.memo.startswith("hold for ") else None,
        settlement=settlement,
        wallet_kind=wallet.kind if wallet is not None else None,
        # Without a progress record (below), what the client was sent before the crash is lost
        # with the process: the usage is an estimate of zero, and the receipt says so.
        usage_source="estimated",
        hold_micros=transfer.amount_micros,
        charge_micros=0,
        latency_ms=max(0, int((now - transfer.created_at).total_seconds() * 1000)),
        error_source=error.source,
        error_code=error.code,
        error_message=error.message,
        transfer_id=transfer.id,
        flags=["interrupted_output_unknown"],
    )
    if progress is not None:
        # What the stream had recorded it forwarded (gateway.progress): its usage, route and prices.
        receipt.stream = True
        receipt.route_id, receipt.provider = progress.route_id, progress.provider
        receipt.upstream_model = progress.upstream_model
        receipt.input_tokens, receipt.output_tokens = progress.usage.input_tokens, progress.usage.output_tokens
        receipt.cached_tokens = progress.usage.cached_tokens
        receipt.usage_source = progress.usage_source
        receipt.input_price_per_mtok_micros = progress.prices.input_per_mtok_micros
        receipt.output_price_per_mtok_micros = progress.prices.output_per_mtok_micros
        receipt.cached_price_per_mtok_micros = progress.prices.cached_per_mtok_micros
        receipt.charge_micros = charge_micros
        receipt.flags = ["interrupted_output_recorded"]
    return receipt


def start(db: Database, instance_id: str, now: datetime, also_dead: Collection[str] = ()) -> int:
    """Register a serving instance and void every hold that dead instances left; how many."""
    with db.write() as conn:
        register(conn, instance_id, now)
    return void_all(db, instance_id, now, also_dead)


def heartbeat(db: Database, instance_id: str, now: datetime) -> int:
    """Beat, and (PostgreSQL: other processes may have died since) void what dead instances left."""
    with db.write() as conn:
        beat(conn, instance_id, now)
    return void_all(db, instance_id, now) if db.dialect != "sqlite" else 0


def void_all(db: Database, instance_id: str, now: datetime, also_dead: Collection[str] = ()) -> int:
    """Void every hold of dead instances, ``RECOVERY_BATCH`` per transaction; how many."""
    total = 0
    while True:
        with db.write() as conn:
            voided = void_dead_holds(conn, instance_id, now, also_dead)
        total += voided
        if voided < RECOVERY_BATCH:
            return total
