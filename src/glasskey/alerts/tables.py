"""The tables of alerts, on the shared ``metadata`` of ``glasskey.store.tables``.

``alert_rules``: an org's thresholds, one row per (kind, subject). ``alert_webhooks``: an org's
webhook URL and its signing secret, sealed with the route credentials' Fernet vault (never stored
in the clear). ``alert_firing``: the alerts firing now, one row each while its condition holds, so an
alert is sent once when its threshold is crossed and again only after it cleared.
``alert_deliveries`` and ``alert_delivery_attempts``: the webhook's outbox and its log, with each
answer's status code and a bounded excerpt of its body. ``alert_sweeps``: the lease on the sweep's
evaluation round, so that of many gateway processes only one evaluates per period.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from glasskey.store.tables import UTCDateTime, metadata

URL_MAX_LENGTH = 2048

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    # wallet_balance | key_budget | key_failure_rate
    Column("kind", String(32), nullable=False),
    # "wallet:credit", "wallet:routed", "keys" (every key of the org) or "key:<key id>"
    Column("subject", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("balance_below_micros", BigInteger, nullable=True),
    Column("budget_percents", JSON, nullable=True),
    Column("failure_rate_percent", Integer, nullable=True),
    Column("failure_window_minutes", Integer, nullable=True),
    Column("failure_min_requests", Integer, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "kind", "subject"),
)

alert_webhooks = Table(
    "alert_webhooks",
    metadata,
    Column("org_id", String(40), ForeignKey("orgs.id"), primary_key=True),
    Column("url", String(URL_MAX_LENGTH), nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

alert_firing = Table(
    "alert_firing",
    metadata,
    Column("org_id", String(40), ForeignKey("orgs.id"), primary_key=True),
    # What fires, with its threshold: "key_budget_total:<key id>:80", "wallet_balance:routed:5000000", ...
    Column("alert", String(200), primary_key=True),
    Column("since", UTCDateTime(), nullable=False),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    # alert.fired | alert.cleared | alert.test
    Column("event", String(32), nullable=False),
    Column("body", Text, nullable=False),
    # pending | delivered | failed | dropped
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_alert_deliveries_org_id_created_at", "org_id", "created_at"),
    Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)

alert_delivery_attempts = Table(
    "alert_delivery_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("alert_deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("url", String(URL_MAX_LENGTH), nullable=False),
    Column("status_code", Integer, nullable=True),
    # At most alerts.delivery.EXCERPT_CHARS_MAX characters of the receiver's answer.
    Column("excerpt", Text, nullable=True),
    Column("error", Text, nullable=True),
)

alert_sweeps = Table(
    "alert_sweeps",
    metadata,
    # "evaluate": the one round of evaluation that the gateway processes share.
    Column("name", String(32), primary_key=True),
    # When the next round may start: the holder's lease end while a round runs, else the next period.
    Column("due_at", UTCDateTime(), nullable=False),
    Column("holder", String(40), nullable=False),
)
