"""Two-phase transfers: ``pending`` (a hold) then ``posted`` or ``voided`` (or ``expired``).

Every transfer moves an amount from a debit account to a credit account, and the account
counters change in the same transaction as the transfer row, so debits always equal credits.
A debit that would take an account with a floor below it is refused by the very ``UPDATE``
that applies it (a conditional update takes the row lock), so concurrent holds cannot
overspend a wallet, on one process or many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select
from sqlalchemy.exc import IntegrityError

from glasskey.errors import ClientError, GlasskeyError, InvariantViolation, NotFound, WalletError
from glasskey.ids import new_id
from glasskey.store.batch import Batch
from glasskey.store.driver import DriverStatement, Sent
from glasskey.store.tables import UTCDateTime, accounts, transfers, utc_datetime

PENDING, POSTED, VOIDED, EXPIRED = "pending", "posted", "voided", "expired"


class InsufficientFunds(WalletError):
    """The debit would take the account below its floor."""


class TransferNotPending(GlasskeyError):
    """The transfer was already posted, voided or expired (or its hold has run out)."""

    status_code = 409
    code = "transfer_not_pending"


@dataclass(frozen=True)
class Transfer:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount_micros: int
    posted_amount_micros: int | None
    status: str
    kind: str
    request_id: str | None
    key_id: str | None
    budget_period: str | None
    idempotency_key: str | None
    memo: str
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None
    replayed: bool = False

    def row(self) -> dict[str, object]:
        # Spelled out: dataclasses.asdict deep-copies, which costs more than the insert.
        return {
            "id": self.id,
            "debit_account_id": self.debit_account_id,
            "credit_account_id": self.credit_account_id,
            "amount_micros": self.amount_micros,
            "posted_amount_micros": self.posted_amount_micros,
            "status": self.status,
            "kind": self.kind,
            "request_id": self.request_id,
            "key_id": self.key_id,
            "budget_period": self.budget_period,
            "idempotency_key": self.idempotency_key,
            "memo": self.memo,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]], *, replayed: bool = False) -> Transfer:
        m = row._mapping
        return cls(
            id=m["id"],
            debit_account_id=m["debit_account_id"],
            credit_account_id=m["credit_account_id"],
            amount_micros=m["amount_micros"],
            posted_amount_micros=m["posted_amount_micros"],
            status=m["status"],
            kind=m["kind"],
            request_id=m["request_id"],
            key_id=m["key_id"],
            budget_period=m["budget_period"],
            idempotency_key=m["idempotency_key"],
            memo=m["memo"],
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            resolved_at=m["resolved_at"],
            replayed=replayed,
        )


def _floor_ok(amount: str) -> str:
    """The condition under which a debit of the parameter ``amount`` keeps the account above its floor."""
    return f"(floor_micros IS NULL OR credits_posted - debits_posted - debits_pending - :{amount} >= floor_micros)"


# The statements of every request, written once and run on the driver connection (see
# ``store.driver``). Each is a single statement, so each takes its row lock atomically.
_FLOOR_OK = _floor_ok("amount")
_DEBIT = {
    True: DriverStatement(
        f"UPDATE accounts SET debits_pending = debits_pending + :amount WHERE id = :id AND {_FLOOR_OK}"
    ),
    False: DriverStatement(
        f"UPDATE accounts SET debits_posted = debits_posted + :amount WHERE id = :id AND {_FLOOR_OK}"
    ),
}
# Every change to a credit side is this one increment, so that a batch's holds, postings and
# releases of one (revenue) account sum into a single UPDATE (Batch.increment).
_CREDIT = DriverStatement(
    "UPDATE accounts SET credits_pending = credits_pending + :pending, credits_posted = credits_posted + :posted "
    "WHERE id = :id"
)
_RELEASE_DEBIT = DriverStatement(
    "UPDATE accounts SET debits_pending = debits_pending - :held, debits_posted = debits_posted + :posted "
    "WHERE id = :id"
)
_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount_micros, posted_amount_micros, status, kind, request_id, "
    "key_id, budget_period, idempotency_key, memo, created_at, expires_at, resolved_at"
)
_RESOLVE = DriverStatement(
    "UPDATE transfers SET status = :new_status, posted_amount_micros = :posted_amount, resolved_at = :resolved "
    f"WHERE id = :transfer_id AND status = 'pending' RETURNING {_COLUMNS}",
    {"resolved": UTCDateTime()},
)
_INSERT = DriverStatement(
    f"INSERT INTO transfers ({_COLUMNS}) VALUES (:id, :debit_account_id, :credit_account_id, :amount_micros, "
    ":posted_amount_micros, :status, :kind, :request_id, :key_id, :budget_period, :idempotency_key, :memo, "
    ":created_at, :expires_at, :resolved_at)",
    {"created_at": UTCDateTime(), "expires_at": UTCDateTime(), "resolved_at": UTCDateTime()},
)


# PostgreSQL answers every statement over a round trip that the writer waits for, so there a hold's
# debit and its transfer row are one statement, and so are a settlement's resolve and its release:
# a data-modifying WITH does the second part only if the first found its row. (SQLite, in-process,
# has no such statements and no round trips to save; it runs the two statements.)
_TIMESTAMP = "TIMESTAMP WITH TIME ZONE"
_HOLD_ONE_TRIP = DriverStatement(
    "WITH debited AS (UPDATE accounts SET debits_pending = debits_pending + :amount_micros "
    f"WHERE id = :debit_account_id AND {_floor_ok('amount_micros')} "
    f"RETURNING id) INSERT INTO transfers ({_COLUMNS}) SELECT :id, :debit_account_id, :credit_account_id, "
    "CAST(:amount_micros AS BIGINT), CAST(:posted_amount_micros AS BIGINT), :status, :kind, :request_id, :key_id, "
    f"CAST(:budget_period AS VARCHAR), CAST(:idempotency_key AS VARCHAR), :memo, CAST(:created_at AS {_TIMESTAMP}), "
    f"CAST(:expires_at AS {_TIMESTAMP}), CAST(:resolved_at AS {_TIMESTAMP}) FROM debited",
    {"created_at": UTCDateTime(), "expires_at": UTCDateTime(), "resolved_at": UTCDateTime()},
)
_RESOLVE_ONE_TRIP = DriverStatement(
    "WITH resolved AS (UPDATE transfers SET status = :new_status, "
    "posted_amount_micros = CAST(:posted_amount AS BIGINT), resolved_at = :resolved "
    f"WHERE id = :transfer_id AND status = 'pending' AND :posted <= amount_micros RETURNING {_COLUMNS}), "
    "released AS (UPDATE accounts SET debits_pending = debits_pending - resolved.amount_micros, "
    "debits_posted = debits_posted + :posted FROM resolved WHERE accounts.id = resolved.debit_account_id) "
    "SELECT * FROM resolved",
    {"resolved": UTCDateTime()},
)


def _one_trip(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _from_returned(row: tuple[Any, ...]) -> Transfer:
    """A transfer from a driver row in ``_COLUMNS`` order."""
    return Transfer(*row[:12], *(utc_datetime(value) for value in row[12:]))


def _debit(batch: Batch, account_id: str, amount: int, *, pending: bool) -> None:
    if batch.execute(_DEBIT[pending], {"amount": amount, "id": account_id}).rowcount != 1:
        raise _refusal(batch.conn, account_id, amount)


def _refusal(conn: Connection, account_id: str, amount: int) -> NotFound | InsufficientFunds:
    """Why a debit changed no row."""
    if conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id)) is None:
        return NotFound(f"account {account_id} does not exist")
    return InsufficientFunds(f"insufficient balance in account {account_id} for {amount} micros")


def _credit(batch: Batch, account_id: str, amount: int, *, pending: bool) -> None:
    # A credit is never refused and nothing in a batch reads it back, so the writer applies a
    # batch's credits of one account in one statement (Batch.increment). The account was checked
    # to exist when the debit side was chosen: accounts are never deleted.
    amounts = {"pending": amount, "posted": 0} if pending else {"pending": 0, "posted": amount}
    batch.increment(_CREDIT, {"id": account_id}, amounts)


def _check_amount(amount_micros: int) -> None:
    if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
        raise TypeError("amounts are integer micros")
    if amount_micros < 0:
        raise ClientError("amounts are never negative")


def pending_transfer(
    *,
    debit_account_id: str,
    credit_account_id: str,
    amount_micros: int,
    now: datetime,
    expires_at: datetime,
    kind: str = "charge",
    request_id: str | None = None,
    key_id: str | None = None,
    budget_period: str | None = None,
    memo: str = "",
) -> Transfer:
    """The transfer a ``CreatePending`` takes: its id is chosen here, once, so the command can run again."""
    _check_amount(amount_micros)
    return Transfer(
        id=new_id("tr"),
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount_micros=amount_micros,
        posted_amount_micros=None,
        status=PENDING,
        kind=kind,
        request_id=request_id,
        key_id=key_id,
        budget_period=budget_period,
        idempotency_key=None,
        memo=memo,
        created_at=now,
        expires_at=expires_at,
        resolved_at=None,
    )


class CreatePending:
    """Hold ``transfer.amount_micros`` on the debit account until it is posted, voided or expired.

    ``send`` debits the account's pending side (refused by the same statement below its floor) and
    inserts the transfer row; ``finish`` reads whether it happened, and raises the refusal
    (``InsufficientFunds``, ``NotFound``) if not, having written nothing.
    """

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer
        self._sent: Sent | None = None
        self._debited = False

    def send(self, batch: Batch) -> None:
        transfer = self.transfer
        if _one_trip(batch.conn):
            self._sent = batch.send(_HOLD_ONE_TRIP, transfer.row())
            return
        debit = {"amount": transfer.amount_micros, "id": transfer.debit_account_id}
        self._debited = batch.execute(_DEBIT[True], debit).rowcount == 1
        if self._debited:
            batch.execute(_INSERT, transfer.row())

    def finish(self, batch: Batch) -> Transfer:
        transfer = self.transfer
        sent = self._sent
        if not (self._debited or (sent is not None and sent.cursor.rowcount == 1)):
            # Neither the debit nor the row happened.
            raise _refusal(batch.conn, transfer.debit_account_id, transfer.amount_micros)
        _credit(batch, transfer.credit_account_id, transfer.amount_micros, pending=True)
        return transfer


def create_pending(conn: Connection, **fields: Any) -> Transfer:
    """A ``CreatePending`` run at once, outside the writer (``pending_transfer`` takes ``fields``)."""
    command = CreatePending(pending_transfer(**fields))
    batch = Batch.now(conn)
    command.send(batch)
    return command.finish(batch)


def create_posted(
    target: Connection | Batch,
    *,
    debit_account_id: str,
    credit_account_id: str,
    amount_micros: int,
    now: datetime,
    kind: str,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    memo: str = "",
) -> Transfer:
    """Move money in one step (a top-up). A replayed ``idempotency_key`` returns the first transfer."""
    _check_amount(amount_micros)
    batch = target if isinstance(target, Batch) else Batch.now(target)
    conn = batch.conn
    if idempotency_key is not None:
        existing = _by_idempotency_key(conn, idempotency_key)
        if existing is not None:
            return _replay(existing, debit_account_id, credit_account_id, amount_micros)
    transfer_id = new_id("tr")
    try:
        # The row and both sides move together: a refused debit takes the row back with it,
        # even when the caller catches the refusal and commits the rest of its work.
        with conn.begin_nested():
            conn.execute(
                transfers.insert().values(
                    id=transfer_id,
                    debit_account_id=debit_account_id,
                    credit_account_id=credit_account_id,
                    amount_micros=amount_micros,
                    posted_amount_micros=amount_micros,
                    status=POSTED,
                    kind=kind,
                    request_id=request_id,
                    idempotency_key=idempotency_key,
                    memo=memo,
                    created_at=now,
                    expires_at=None,
                    resolved_at=now,
                )
            )
            _debit(batch, debit_account_id, amount_micros, pending=False)
            _credit(batch, credit_account_id, amount_micros, pending=False)
    except IntegrityError:
        # A concurrent request with the same key won the insert; answer with its transfer.
        existing = _by_idempotency_key(conn, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, debit_account_id, credit_account_id, amount_micros)
    return get_transfer(conn, transfer_id)


def _by_idempotency_key(conn: Connection, key: str) -> Transfer | None:
    row = conn.execute(select(transfers).where(transfers.c.idempotency_key == key)).first()
    return Transfer.from_row(row, replayed=True) if row is not None else None


def _replay(existing: Transfer, debit: str, credit: str, amount: int) -> Transfer:
    if (existing.debit_account_id, existing.credit_account_id, existing.amount_micros) != (
        debit,
        credit,
        amount,
    ):
        raise ClientError(
            "this Idempotency-Key was already used for a different transfer",
            code="idempotency_key_reused",
            param="Idempotency-Key",
            status_code=409,
        )
    return existing


class ResolvePending:
    """Post ``posted_amount`` of a pending transfer (at most its hold) or void it, releasing the hold.

    ``send`` resolves the row and releases the debit account's pending side (one statement on
    PostgreSQL); ``finish`` reads the answer, credits the other side, and raises
    ``TransferNotPending`` (it was already resolved or expired) or ``NotFound``, having written nothing.
    """

    def __init__(self, transfer_id: str, status: str, posted_amount: int | None, now: datetime) -> None:
        if posted_amount is not None:
            _check_amount(posted_amount)
        self.transfer_id = transfer_id
        self.status = status
        self.posted_amount = posted_amount
        self.now = now
        self._sent: Sent | None = None
        self._resolved: Transfer | None = None

    @property
    def _posted(self) -> int:
        return self.posted_amount or 0

    def send(self, batch: Batch) -> None:
        params = {
            "transfer_id": self.transfer_id,
            "new_status": self.status,
            "posted_amount": self.posted_amount,
            "resolved": self.now,
        }
        if _one_trip(batch.conn):
            self._sent = batch.send(_RESOLVE_ONE_TRIP, {**params, "posted": self._posted})
            return
        # Both statements now: the wallet's hold is released before the batch's next write runs
        # (a hold on the same wallet may need what this frees), as the one-trip statement does.
        row = batch.execute(_RESOLVE, params).fetchone()
        self._resolved = _from_returned(row) if row is not None else None
        if self._resolved is not None and self._posted <= self._resolved.amount_micros:
            release = {
                "held": self._resolved.amount_micros,
                "posted": self._posted,
                "id": self._resolved.debit_account_id,
            }
            batch.execute(_RELEASE_DEBIT, release)

    def finish(self, batch: Batch) -> Transfer:
        transfer = self._resolved
        if self._sent is not None:
            row = self._sent.cursor.fetchone()
            transfer = _from_returned(row) if row is not None else None
        posted = self._posted
        if transfer is None:
            current = get_transfer(batch.conn, self.transfer_id)  # NotFound when it does not exist at all
            if current.status == PENDING:  # only the one-trip statement leaves it so: it checks the amount first
                raise _above_hold(posted, current.amount_micros, self.transfer_id)
            raise TransferNotPending(f"transfer {self.transfer_id} is {current.status}")
        held = transfer.amount_micros
        if posted > held:
            raise _above_hold(posted, held, self.transfer_id)
        batch.increment(_CREDIT, {"id": transfer.credit_account_id}, {"pending": -held, "posted": posted})
        return transfer


def _above_hold(posted: int, held: int, transfer_id: str) -> InvariantViolation:
    # The caller's transaction rolls back: a charge above its hold is a bug, never money.
    return InvariantViolation(f"posting {posted} above the hold of {held} on {transfer_id}")


def _resolve_now(conn: Connection, command: ResolvePending) -> Transfer:
    batch = Batch.now(conn)
    command.send(batch)
    return command.finish(batch)


def post_pending(conn: Connection, transfer_id: str, amount_micros: int, now: datetime) -> Transfer:
    """Post ``amount_micros`` (at most the hold) and release the rest of the hold, at once."""
    return _resolve_now(conn, ResolvePending(transfer_id, POSTED, amount_micros, now))


def void_pending(conn: Connection, transfer_id: str, now: datetime) -> Transfer:
    """Release the whole hold, charging nothing, at once."""
    return _resolve_now(conn, ResolvePending(transfer_id, VOIDED, None, now))


def expire_pending(conn: Connection, now: datetime, *, limit: int = 1000) -> list[Transfer]:
    """Release holds whose time ran out and that nobody posted or voided; returns them.

    A hold past its time that has not been swept yet can still be posted: the sweep, not the
    clock, ends a hold, so a slow request and the sweep never both settle it.
    """
    stale = list(
        conn.scalars(
            select(transfers.c.id)
            .where(and_(transfers.c.status == PENDING, transfers.c.expires_at <= now))
            .limit(limit)
        )
    )
    expired = []
    for transfer_id in stale:
        try:
            expired.append(_resolve_now(conn, ResolvePending(transfer_id, EXPIRED, None, now)))
        except TransferNotPending:
            continue
    return expired


def get_transfer(conn: Connection, transfer_id: str) -> Transfer:
    row = conn.execute(select(transfers).where(transfers.c.id == transfer_id)).first()
    if row is None:
        raise NotFound(f"transfer {transfer_id} does not exist")
    return Transfer.from_row(row)


def list_transfers(
    conn: Connection, account_id: str, *, limit: int = 100, before: datetime | None = None
) -> list[Transfer]:
    """Transfers touching one account, newest first."""
    query = select(transfers).where(
        or_(transfers.c.debit_account_id == account_id, transfers.c.credit_account_id == account_id)
    )
    if before is not None:
        query = query.where(transfers.c.created_at < before)
    rows = conn.execute(query.order_by(transfers.c.created_at.desc(), transfers.c.id.desc()).limit(limit))
    return [Transfer.from_row(row) for row in rows]
