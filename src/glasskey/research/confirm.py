"""Confirming a research job: its preflight must admit it, then its rows are written, queued.

``confirm_job`` is what ``POST /v1/research/jobs`` and the demo do after the preflight: a job
that is not admitted is refused with the preflight's reason (403 ``model``, 402 ``wallet``, 429
``budget``, 503 ``route``) before anything is written or charged; the person's maximum must be
a non-negative integer of micros.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.errors import ClientError
from glasskey.keys.service import KeyRecord
from glasskey.research.jobs import create_job
from glasskey.research.preflight import refusal_error
from glasskey.research.spec import Prepared


def check_confirmed_max(value: Any, planned_max_micros: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClientError(
            "`max_charge_micros` (the most the job may charge, as confirmed after the preflight) must be a "
            f"non-negative integer; the preflight's maximum is {planned_max_micros}",
            param="max_charge_micros",
        )
    return value


def confirm_job(
    conn: Connection,
    key: KeyRecord,
    prepared: Prepared,
    result: dict[str, Any],
    confirmed: Any,
    now: datetime,
    *,
    instance_id: str,
) -> str:
    """The new job's id, queued and claimed by ``instance_id`` (the process that runs it); raises the
    preflight's refusal, or a 400 for a bad maximum."""
    refusal = refusal_error(result)
    if refusal is not None:
        raise refusal
    cost = result["cost"]
    return create_job(
        conn, key_id=key.id, org_id=key.org_id, plan=prepared.plan, files=prepared.files,
        risk_free_rate=prepared.spec.risk_free_rate, window=(prepared.spec.window_start, prepared.spec.window_end),
        confirmed_max_micros=check_confirmed_max(confirmed, cost["max_micros"]),
        planned_max_micros=cost["max_micros"], planned_estimate_micros=cost["estimated_micros"],
        expected_ms=(result["runtime"]["p50_ms"], result["runtime"]["p90_ms"]),
        call_max_micros=[c["max_charge_micros"] for c in result["plan"]["calls"]], now=now,
        instance_id=instance_id,
    )  # fmt: skip
