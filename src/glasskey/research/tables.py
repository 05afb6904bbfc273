"""The research tables, on the shared ``metadata`` (migration 0005 creates them).

A job is rows: the job itself (question, models, depth, confirmed maximum, plan, results), its
inputs (files stored once per key by content hash), its steps and its calls. Each call's id is
the request id it is sent with, so its receipt and ledger transfers are found by that id, and a
call id is never sent twice.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, LargeBinary, String, Table, Text

from glasskey.store.tables import UTCDateTime, metadata

research_files = Table(
    "research_files",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # "prices" or "document"
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_research_files_key_id_sha256", "key_id", "sha256"),
)

research_jobs = Table(
    "research_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False, index=True),
    Column("org_id", String(40), nullable=False),
    Column("question", Text, nullable=False),
    Column("quick_model", String(200), nullable=False),
    Column("deep_model", String(200), nullable=False),
    Column("depth", String(16), nullable=False),
    Column("risk_free_rate", String(32), nullable=False),
    # The data window asked for (ISO dates, inclusive); None takes every aligned date.
    Column("window_start", String(10), nullable=True),
    Column("window_end", String(10), nullable=True),
    # queued, running, interrupted, succeeded, failed, cancelled, capped
    Column("status", String(16), nullable=False),
    Column("step", String(16), nullable=True),
    Column("confirmed_max_micros", BigInteger, nullable=False),
    Column("planned_max_micros", BigInteger, nullable=False),
    Column("planned_estimate_micros", BigInteger, nullable=False),
    Column("expected_p50_ms", Integer, nullable=False),
    Column("expected_p90_ms", Integer, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("metrics", JSON, nullable=True),
    Column("analysis", Text, nullable=True),
    Column("report", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("cancel_requested", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    # The gateway process (``instances.id``) running the job now, claimed by one conditional
    # UPDATE (``jobs.claim_job``); its heartbeat is the claim's lease. None once it stops.
    Column("runner_instance_id", String(40), nullable=True),
    # The last resume: when, by which process, and how many there were.
    Column("resumed_at", UTCDateTime(), nullable=True),
    Column("resumed_by", String(40), nullable=True),
    Column("resume_count", Integer, nullable=False, default=0, server_default="0"),
)

research_job_inputs = Table(
    "research_job_inputs",
    metadata,
    Column("job_id", String(40), ForeignKey("research_jobs.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("file_id", String(40), ForeignKey("research_files.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
)

research_steps = Table(
    "research_steps",
    metadata,
    Column("job_id", String(40), ForeignKey("research_jobs.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("name", String(16), nullable=False),
    Column("model", String(200), nullable=True),
    Column("status", String(16), nullable=False),  # planned, running, succeeded, failed, skipped
    Column("calls_planned", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)

research_calls = Table(
    "research_calls",
    metadata,
    # The request id the call is sent with: its idempotency id, its receipt, its transfers.
    Column("id", String(40), primary_key=True),
    Column("job_id", String(40), ForeignKey("research_jobs.id"), nullable=False, index=True),
    Column("step", String(16), nullable=False),
    Column("position", Integer, nullable=False),
    Column("try_number", Integer, nullable=False, default=1),
    Column("model", String(200), nullable=False),
    Column("label", String(500), nullable=False),
    Column("document", String(200), nullable=True),
    Column("chunk", Integer, nullable=True),
    # planned, running, answered, succeeded, failed, malformed, abandoned, cancelled
    Column("status", String(16), nullable=False),
    Column("max_charge_micros", BigInteger, nullable=False),
    Column("charge_micros", BigInteger, nullable=False, default=0),
    Column("output", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)

RESEARCH_TABLES = (research_files, research_jobs, research_job_inputs, research_steps, research_calls)
