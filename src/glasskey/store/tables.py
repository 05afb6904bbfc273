"""The database schema: every table of glasskey, in SQLAlchemy Core.

Amounts are ``BigInteger`` micro-dollars; prices are micros per one million tokens. Timestamps
are timezone-aware UTC (``UTCDateTime`` restores the zone SQLite forgets).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are refused; use datetime.now(UTC)")
        # SQLite keeps the wall-clock digits only, so every instant is stored as UTC.
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return utc_datetime(value)


def utc_datetime(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite gives text without a zone)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# A ledger account. Wallets are accounts with an org and a floor; system accounts (top-up
# source, revenue per settlement) have no org and no floor. The four counters are maintained
# in the same transaction as every transfer, and audit() proves them against the transfers.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("floor_micros", BigInteger, nullable=True),
    Column("debits_posted", BigInteger, nullable=False, default=0),
    Column("credits_posted", BigInteger, nullable=False, default=0),
    Column("debits_pending", BigInteger, nullable=False, default=0),
    Column("credits_pending", BigInteger, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "kind"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("debit_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("posted_amount_micros", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(40), nullable=True, index=True),
    # A charge hold also holds the key's budget; these let the expiry sweep release it.
    Column("key_id", String(40), nullable=True),
    Column("budget_period", String(16), nullable=True),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("memo", String(500), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    # The gateway process that took a hold (``gateway.instances``): a later process voids the
    # pending holds of one it finds dead at once, instead of waiting for their expiry.
    Column("instance_id", String(40), nullable=True),
    Index("ix_transfers_status_expires_at", "status", "expires_at"),
    Index("ix_transfers_debit_account_id_created_at", "debit_account_id", "created_at"),
    Index("ix_transfers_credit_account_id_created_at", "credit_account_id", "created_at"),
)

# Every gateway process that served, with its heartbeat (``gateway.instances``): on PostgreSQL an
# instance whose ``last_seen`` is too old is dead, and its pending holds are voided with a receipt.
instances = Table(
    "instances",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
)

# What a stream in flight had forwarded to its client, recorded about once a second by its relay
# (``gateway.progress``): if the process dies mid-stream, the next one charges the hold for it.
stream_progress = Table(
    "stream_progress",
    metadata,
    Column("transfer_id", String(40), primary_key=True),
    Column("route_id", String(40), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("upstream_model", String(200), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("usage_source", String(32), nullable=False),
    Column("input_price_per_mtok_micros", BigInteger, nullable=False),
    Column("output_price_per_mtok_micros", BigInteger, nullable=False),
    Column("cached_price_per_mtok_micros", BigInteger, nullable=False),
    Column("charge_micros", BigInteger, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False, default=""),
    Column("allowed_models", JSON, nullable=True),
    Column("settlement", String(16), nullable=False),
    Column("lower_cost_routes", Boolean, nullable=False, default=False),
    Column("backup_routes", Boolean, nullable=False, default=False),
    # Refuse (400) best-effort parameters a route's provider cannot honour instead of dropping them.
    Column("strict_params", Boolean, nullable=False, default=False, server_default=false()),
    Column("budget_total_micros", BigInteger, nullable=True),
    Column("budget_daily_micros", BigInteger, nullable=True),
    Column("rpm_limit", Integer, nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# What a key has spent and holds, per period ("total" or a UTC day "YYYY-MM-DD"), updated with a
# conditional UPDATE in the same transaction as the wallet hold so budgets hold under races.
key_spend = Table(
    "key_spend",
    metadata,
    Column("key_id", String(40), ForeignKey("api_keys.id"), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("spent_micros", BigInteger, nullable=False, default=0),
    Column("held_micros", BigInteger, nullable=False, default=0),
)

models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("vendor", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("input_price_per_mtok_micros", BigInteger, nullable=False),
    Column("output_price_per_mtok_micros", BigInteger, nullable=False),
    Column("cached_price_per_mtok_micros", BigInteger, nullable=False),
    Column("max_output_tokens", Integer, nullable=False),
    Column("context_window_tokens", Integer, nullable=False),
    Column("price_date", String(10), nullable=False),
    Column("price_source", String(300), nullable=False, default=""),
    Column("price_overridden", Boolean, nullable=False, default=False),
)

routes = Table(
    "routes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(200), ForeignKey("models.name"), nullable=False, index=True),
    Column("provider", String(40), nullable=False),
    Column("base_url", String(500), nullable=False, default=""),
    Column("upstream_model", String(200), nullable=False),
    Column("credential", Text, nullable=True),
    Column("settlement", String(16), nullable=False),
    Column("input_price_per_mtok_micros", BigInteger, nullable=False),
    Column("output_price_per_mtok_micros", BigInteger, nullable=False),
    Column("cached_price_per_mtok_micros", BigInteger, nullable=False),
    Column("input_cost_per_mtok_micros", BigInteger, nullable=False),
    Column("output_cost_per_mtok_micros", BigInteger, nullable=False),
    Column("cached_cost_per_mtok_micros", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False, default=100),
    Column("weight", Integer, nullable=False, default=1),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("options", JSON, nullable=False, default=dict),
    # An operator's override of the route's breaker ("open" or "closed"); stored so that every
    # gateway process and the CLI see the same force.
    Column("forced_circuit", String(16), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(40), nullable=False, unique=True),
    Column("key_id", String(40), nullable=True),
    Column("key_public_id", String(32), nullable=True),
    Column("org_id", String(40), nullable=True),
    Column("endpoint", String(40), nullable=False),
    Column("requested_model", String(200), nullable=True),
    Column("settlement", String(16), nullable=True),
    Column("wallet_kind", String(16), nullable=True),
    Column("provider", String(40), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("route_id", String(40), nullable=True),
    Column("attempts", JSON, nullable=False, default=list),
    Column("stream", Boolean, nullable=False, default=False),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("usage_source", String(24), nullable=False, default="none"),
    Column("input_price_per_mtok_micros", BigInteger, nullable=True),
    Column("output_price_per_mtok_micros", BigInteger, nullable=True),
    Column("cached_price_per_mtok_micros", BigInteger, nullable=True),
    Column("hold_micros", BigInteger, nullable=False, default=0),
    Column("charge_micros", BigInteger, nullable=False, default=0),
    Column("latency_ms", Integer, nullable=False, default=0),
    Column("ttft_ms", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error_source", String(16), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("transfer_id", String(40), nullable=True),
    Column("flags", JSON, nullable=False, default=list),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_receipts_key_id_seq", "key_id", "seq"),
    Index("ix_receipts_org_id_seq", "org_id", "seq"),
    Index("ix_receipts_status_seq", "status", "seq"),
)

# The answer body of a request whose caller asked it kept (``Lifecycle.chat(keep_answer=True)``: the
# research runner's calls), written by the settlement in the same transaction as the charge and
# the receipt. A caller that crashed after the charge finds the answer here by its request id,
# instead of sending (and paying for) the call again.
kept_answers = Table(
    "kept_answers",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Failed authentications at the gateway, counted per client address, public id and minute (issue 18
# #6). Only the first few failures of each address and public id per minute get a receipt; every
# failure is counted here, so a flood of garbage keys adds a row per address and minute, not per
# request. ``public_id`` is set only for a public id that names a known key: random ones would
# otherwise add a row each. Rows of one (address, public id, minute) may repeat (two processes
# flushing at once); readers add them up.
auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("public_id", String(32), nullable=True),
    Column("minute", UTCDateTime(), nullable=False),
    Column("count", BigInteger, nullable=False),
    Index("ix_auth_failures_minute", "minute"),
)
