"""Answers kept with their charge: a caller that crashes after paying reads the answer back.

A request's charge and receipt commit in one transaction (``accounting.Settlement``). A caller
that records the answer only after that (the research runner, in its own row) could crash in
between: the call is charged, its answer lost, and a resume would send it again and pay twice.
Such a caller asks ``Lifecycle.chat(..., keep_answer=True)``; the settlement then writes the answer
body in the same transaction as the charge, and the caller finds it by the request id. Only
answers that were charged are kept (a request whose hold another process voided keeps nothing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from glasskey.store.batch import Batch
from glasskey.store.driver import DriverStatement
from glasskey.store.tables import kept_answers

_INSERT = DriverStatement(
    "INSERT INTO kept_answers (request_id, body, created_at) VALUES (:request_id, :body, :created_at)",
    {"body": kept_answers.c.body.type, "created_at": kept_answers.c.created_at.type},
)


def keep_answer(batch: Batch, request_id: str, body: dict[str, Any], now: datetime) -> None:
    """Insert the answer in the batch's transaction (nothing in the batch reads it back)."""
    batch.insert(_INSERT, {"request_id": request_id, "body": body, "created_at": now})


def kept_answer(conn: Connection, request_id: str) -> dict[str, Any] | None:
    """The answer kept for ``request_id``, or None (never sent, failed, or not asked to be kept)."""
    body = conn.scalar(select(kept_answers.c.body).where(kept_answers.c.request_id == request_id))
    return dict(body) if body is not None else None
