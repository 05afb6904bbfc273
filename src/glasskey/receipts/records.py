"""Writing and reading receipts.

A receipt is written in the same transaction as the ledger movement that settles its request,
so a receipt's charge and its posted transfer can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from glasskey.errors import ClientError, NotFound, shown, storable_text
from glasskey.money import format_micros
from glasskey.store.batch import Batch
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import receipts

MAX_PAGE = 200
# What a route's provider could not honour (``providers.best_effort``) is one of the receipt's flags,
# ``dropped_params:seed,user``, read back as its ``dropped_params`` list: no column of its own.
DROPPED_PARAMS_FLAG = "dropped_params:"
REQUEST_ID_MAX_CHARS = 200


@dataclass
class Attempt:
    route_id: str
    provider: str
    upstream_model: str
    status: str  # "succeeded" | "failed"
    latency_ms: int
    http_status: int | None = None
    error_class: str | None = None
    error_message: str | None = None


@dataclass
class Receipt:
    request_id: str
    endpoint: str
    created_at: datetime
    status: str = "failed"
    http_status: int = 500
    key_id: str | None = None
    key_public_id: str | None = None
    org_id: str | None = None
    requested_model: str | None = None
    settlement: str | None = None
    wallet_kind: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    route_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    usage_source: str = "none"
    input_price_per_mtok_micros: int | None = None
    output_price_per_mtok_micros: int | None = None
    cached_price_per_mtok_micros: int | None = None
    hold_micros: int = 0
    charge_micros: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None
    error_source: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    transfer_id: str | None = None
    flags: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        # A shallow copy: dataclasses.asdict deep-copies every value, which costs more than the insert.
        values = dict(self.__dict__)
        values["attempts"] = [_storable_attempt(a.__dict__) for a in self.attempts]
        values["flags"] = list(self.flags)
        # The texts a client or an upstream chose: a NUL (refused by PostgreSQL) or a lone surrogate
        # (refused by both drivers) must cost this receipt a character, never its batch its commit.
        for name in _CHOSEN_TEXTS:
            text = values[name]
            if text and (not text.isascii() or "\x00" in text):
                values[name] = storable_text(text)
        return values


# Receipt fields whose text comes from outside glasskey (a request body, a bearer token, an upstream).
_CHOSEN_TEXTS = ("requested_model", "key_public_id", "upstream_model", "error_message")


def _storable_attempt(attempt: dict[str, Any]) -> dict[str, Any]:
    values = dict(attempt)
    message = values.get("error_message")
    if message is not None:
        values["error_message"] = storable_text(message)
    return values


_COLUMNS = [column.name for column in receipts.columns if column.name != "seq"]
# Run on the driver connection (see ``store.driver``): one insert per request, off SQLAlchemy's
# per-statement machinery; the JSON and timestamp columns keep SQLAlchemy's encodings.
_INSERT = DriverStatement(
    f"INSERT INTO receipts ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + name for name in _COLUMNS)})",
    {"attempts": receipts.c.attempts.type, "flags": receipts.c.flags.type, "created_at": receipts.c.created_at.type},
)


def write_receipt(target: Batch | Connection, receipt: Receipt) -> None:
    """Insert ``receipt`` as it is now (its row is copied: later changes to it cannot reach it)."""
    insert_receipt_row(Batch.of(target), receipt.row())


def insert_receipt_row(batch: Batch, row: dict[str, Any]) -> None:
    """Insert a ``Receipt.row()``: in the writer, with its batch's other receipts in one executemany."""
    batch.insert(_INSERT, row)


def _public(row: Any) -> dict[str, Any]:
    # Column names come back as quoted_name (a str subclass) that orjson refuses as keys.
    m = {str(k): v for k, v in row._asdict().items()}
    m.pop("seq", None)
    m["created_at"] = m["created_at"].isoformat()
    m["charge_usd"] = format_micros(m["charge_micros"])
    m["key"] = f"gk-{m['key_public_id']}" if m["key_public_id"] else None
    m["dropped_params"] = _dropped_params(m["flags"] or [])
    m["object"] = "receipt"
    return m


def _dropped_params(flags: list[str]) -> list[str]:
    """The best-effort parameters the serving provider could not honour (``providers.best_effort``)."""
    for flag in flags:
        if flag.startswith(DROPPED_PARAMS_FLAG):
            return flag.removeprefix(DROPPED_PARAMS_FLAG).split(",")
    return []


def get_receipt(conn: Connection, request_id: str, *, key_id: str | None = None) -> dict[str, Any]:
    """One receipt; with ``key_id``, only if that key made the request (others look absent)."""
    if len(request_id) > REQUEST_ID_MAX_CHARS or "\x00" in request_id:  # no such id was ever given
        raise NotFound(f"receipt {shown(request_id)} does not exist")
    query = select(receipts).where(receipts.c.request_id == request_id)
    if key_id is not None:
        query = query.where(receipts.c.key_id == key_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"receipt {shown(request_id)} does not exist")
    return _public(row)


@dataclass(frozen=True)
class ReceiptPage:
    data: list[dict[str, Any]]
    next_cursor: str | None


def list_receipts(
    conn: Connection,
    *,
    key_id: str | None = None,
    org_id: str | None = None,
    status: str | None = None,
    model: str | None = None,
    error_source: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ReceiptPage:
    """Receipts newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(receipts)
    for column, value in (
        (receipts.c.key_id, key_id),
        (receipts.c.org_id, org_id),
        (receipts.c.status, status),
        (receipts.c.requested_model, model),
        (receipts.c.error_source, error_source),
    ):
        if value is not None:
            query = query.where(column == storable_text(value))
    if cursor:
        try:
            before = int(cursor)
        except ValueError:
            raise ClientError("cursor is not one this API returned", param="cursor") from None
        query = query.where(receipts.c.seq < before)
    rows = list(conn.execute(query.order_by(receipts.c.seq.desc()).limit(limit + 1)))
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return ReceiptPage(data=[_public(r) for r in rows[:limit]], next_cursor=next_cursor)
