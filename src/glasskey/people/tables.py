"""The tables of people and teams, on the shared ``metadata`` of ``glasskey.store.tables``.

No column holds a password, a token secret or a recovery code: only argon2id hashes (passwords,
recovery codes) or peppered HMACs (access tokens, invitation links). A TOTP seed must be read back
to check a code, so it is stored sealed (AES-GCM under a key derived from the key pepper).
``audit_events`` is written only by INSERT: each row carries the hash of the one before it.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from glasskey.store.tables import UTCDateTime, metadata

EMAIL_MAX_LENGTH = 254

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(EMAIL_MAX_LENGTH), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("is_operator", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("totp_sealed", Text, nullable=True),
    # The last TOTP time step accepted: a code is never accepted twice (replay).
    Column("totp_last_step", BigInteger, nullable=True),
    # Bumped at every password change: sessions and tokens made before it stop working.
    Column("credential_version", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("password_changed_at", UTCDateTime(), nullable=False),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("code_hash", String(200), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

memberships = Table(
    "memberships",
    metadata,
    Column("org_id", String(40), ForeignKey("orgs.id"), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), primary_key=True, index=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    # None with role "operator": an operator account's token, not bound to one org.
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("credential_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# What an org's owner lets members give their keys; a missing row or a null column is no limit.
org_limits = Table(
    "org_limits",
    metadata,
    Column("org_id", String(40), ForeignKey("orgs.id"), primary_key=True),
    Column("allowed_models", JSON, nullable=True),
    Column("settlements", JSON, nullable=True),
    Column("budget_total_max_micros", BigInteger, nullable=True),
    Column("budget_daily_max_micros", BigInteger, nullable=True),
    Column("rpm_max", Integer, nullable=True),
    Column("key_lifetime_max_seconds", BigInteger, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Who holds a key made by a person: that person, or a named service the person answers for.
key_holders = Table(
    "key_holders",
    metadata,
    Column("key_id", String(40), ForeignKey("api_keys.id"), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("holder_user_id", String(40), ForeignKey("users.id"), nullable=True),
    Column("service_name", String(200), nullable=True),
    Column("responsible_user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("email", String(EMAIL_MAX_LENGTH), nullable=False),
    Column("role", String(16), nullable=False),
    Column("invited_by", String(80), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("accepted_at", UTCDateTime(), nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(80), nullable=False),
    Column("org_id", String(40), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False, default=""),
    Column("outcome", String(16), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Column("address", String(64), nullable=False, default=""),
    Column("request_id", String(40), nullable=False, default=""),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_org_id_seq", "org_id", "seq"),
    # ChangeLog asks whether a request already recorded itself (one event per change).
    Index("ix_audit_events_request_id", "request_id"),
)

# The newest event's sequence number and hash, MAC'd with the chain key and updated in the same
# transaction as each append: removing trailing events leaves the head naming one that is gone.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)
