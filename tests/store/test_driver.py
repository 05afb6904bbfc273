"""Driver statements: rows written on the DB-API connection read back as SQLAlchemy writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Connection, select

from conftest_helpers import NOW
from glasskey.errors import WalletError
from glasskey.receipts.records import Attempt, Receipt, get_receipt, write_receipt
from glasskey.store.database import Database
from glasskey.store.driver import DriverStatement, Pipeline, Savepoint, sending
from glasskey.store.tables import UTCDateTime, orgs, receipts


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


def test_a_savepoint_undoes_only_its_own_writes(db: Database) -> None:
    insert = DriverStatement(
        "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
    )
    with db.write() as conn:
        insert.execute(conn, {"id": "org_kept", "name": "kept", "created_at": NOW})
        with pytest.raises(WalletError), Savepoint(conn):
            insert.execute(conn, {"id": "org_undone", "name": "undone", "created_at": NOW})
            raise WalletError("refused on purpose")
        with Savepoint(conn):
            insert.execute(conn, {"id": "org_after", "name": "after", "created_at": NOW})
    with db.read() as conn:
        names = set(conn.scalars(select(orgs.c.name)))
        created_at = conn.scalar(select(orgs.c.created_at).where(orgs.c.id == "org_kept"))
    assert names == {"kept", "after"}
    assert created_at == NOW


INSERT_ORG = DriverStatement(
    "INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", {"created_at": UTCDateTime()}
)


def org_names(conn: Connection) -> set[str]:
    return set(conn.scalars(select(orgs.c.name)))


def test_statements_sent_in_a_pipeline_run_together_when_it_is_flushed(db: Database) -> None:
    pipeline = Pipeline()
    with db.write() as conn:
        sending(pipeline)
        try:
            first = INSERT_ORG.send(conn, {"id": "org_first", "name": "first", "created_at": NOW})
            second = INSERT_ORG.send(conn, {"id": "org_second", "name": "second", "created_at": NOW})
        finally:
            sending(None)
        seen_before_flush = org_names(conn)
        if db.dialect == "postgresql":
            with pytest.raises(RuntimeError, match="never flushed"):
                _ = first.cursor
        pipeline.flush(conn)
        assert org_names(conn) == {"first", "second"}
        assert first.cursor.rowcount == 1 and second.cursor.rowcount == 1
    if db.dialect == "postgresql":  # PostgreSQL waits for the flush; SQLite has no round trips to save
        assert seen_before_flush == set()
    else:
        assert seen_before_flush == {"first", "second"}


def test_a_statement_sent_outside_a_pipeline_runs_at_once(db: Database) -> None:
    with db.write() as conn:
        sent = INSERT_ORG.send(conn, {"id": "org_now", "name": "now", "created_at": NOW})
        assert sent.cursor.rowcount == 1
        assert org_names(conn) == {"now"}
