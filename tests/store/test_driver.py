"""Driver statements: rows written on the DB-API connection read back as SQLAlchemy writes them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from conftest_helpers import NOW
from glasskey.receipts.records import Attempt, Receipt, get_receipt, write_receipt
from glasskey.store.database import Database
from glasskey.store.tables import receipts


def test_a_receipt_written_by_the_driver_reads_back_with_its_timestamp_and_json(db: Database) -> None:
    created = NOW + timedelta(microseconds=123_456)
    receipt = Receipt(
        request_id="req_driver",
        endpoint="chat.completions",
        created_at=created,
        attempts=[Attempt("rt_a", "openai", "gpt-4o-mini", "failed", 12, 503, "http_503", "busy")],
        flags=["usage_missing_estimated"],
        stream=True,
        charge_micros=42,
    )
    with db.write() as conn:
        write_receipt(conn, receipt)
    with db.read() as conn:
        public = get_receipt(conn, "req_driver")
        stored_at = conn.scalar(select(receipts.c.created_at).where(receipts.c.request_id == "req_driver"))
    assert stored_at == created
    assert public["attempts"][0]["http_status"] == 503
    assert public["attempts"][0]["error_message"] == "busy"
    assert public["flags"] == ["usage_missing_estimated"]
    assert public["stream"] is True
    assert public["charge_micros"] == 42
