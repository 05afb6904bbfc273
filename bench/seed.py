"""Seeding the glasskey under test: an org with funded wallets, a route per model, load keys; and the scale fill.

``seed_gateway`` uses glasskey's own domain functions, exactly as the demo and the tests do, so
the gateway it prepares is the one users get. ``fill_scale`` then makes a seeded database big
(10,000 keys, 1,000,000 receipts with their posted charges) with a few bulk ``INSERT … SELECT``
statements that clone rows the running gateway itself wrote: whatever columns the schema has
today are copied, and the ledger stays balanced (the accounts' counters move by the cloned sums).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, func, select, text

from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org, top_up
from glasskey.pricing.catalog import get_model
from glasskey.routing.routes import Route, create_route
from glasskey.services import build_services
from glasskey.settings import Settings, load_settings

ORG_NAME = "bench"
# Enough for millions of requests at these prices: a run never meets the wallet's floor.
WALLET_MICROS = 1_000_000 * 1_000_000
# Route credentials of the bench are sealed with this fixed key (its data is thrown away after a run).
ENCRYPTION_KEY = "YmVuY2gtZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc4OWE="
POSTGRES_ADMIN_URL = "postgresql://root@127.0.0.1:5432/postgres"
POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/{name}"


@dataclass(frozen=True)
class GatewaySeed:
    database_url: str
    data_dir: Path
    admin_token: str
    key_pepper: str
    org_id: str
    keys: tuple[str, ...]

    def settings(self) -> Settings:
        """glasskey's settings for this seed, to build its services in the current process."""
        return _settings(self.database_url, self.data_dir, self.admin_token, self.key_pepper)

    def env(self, port: int, base: dict[str, str]) -> dict[str, str]:
        """The environment of ``glasskey serve`` for this seed (any other GLASSKEY_* removed)."""
        env = {k: v for k, v in base.items() if not k.startswith("GLASSKEY_")}
        env.update(
            GLASSKEY_DATA_DIR=str(self.data_dir),
            GLASSKEY_DATABASE_URL=self.database_url,
            GLASSKEY_ADMIN_TOKEN=self.admin_token,
            GLASSKEY_KEY_PEPPER=self.key_pepper,
            GLASSKEY_ENCRYPTION_KEY=ENCRYPTION_KEY,
            # The fake upstreams listen on loopback.
            GLASSKEY_ALLOW_PRIVATE_UPSTREAMS="true",
            GLASSKEY_HOST="127.0.0.1",
            GLASSKEY_PORT=str(port),
            GLASSKEY_LOG_LEVEL="warning",
        )
        return env


def _settings(database_url: str, data_dir: Path, admin_token: str, key_pepper: str) -> Settings:
    return load_settings(
        environ={},
        data_dir=data_dir,
        database_url=database_url,
        admin_token=admin_token,
        key_pepper=key_pepper,
        encryption_key=ENCRYPTION_KEY,
        allow_private_upstreams=True,
    )


def seed_gateway(database_url: str, data_dir: Path, routes: dict[str, str], load_keys: int) -> GatewaySeed:
    """A fresh glasskey database with one funded org, one ``openai_compatible`` route per model, keys.

    ``routes`` maps a catalog model to the fake upstream's base URL (``http://127.0.0.1:P/v1``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_token, key_pepper = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    services = build_services(_settings(database_url, data_dir, admin_token, key_pepper))
    try:
        now = services.clock()
        with services.db.write() as conn:
            org = create_org(conn, ORG_NAME, now)
            for kind in ("credit", "routed"):
                top_up(conn, org.id, kind, WALLET_MICROS, now, memo="bench funding")
            for model, base_url in routes.items():
                prices = get_model(conn, model).official_prices
                route = Route(
                    id="",
                    model=model,
                    provider="openai_compatible",
                    base_url=base_url,
                    upstream_model=model,
                    settlement="routed",
                    prices=prices,
                    costs=prices,
                )
                create_route(conn, route, now)
            policy = KeyPolicy(allowed_models=tuple(routes), settlement="routed")
            keys = []
            for index in range(load_keys):
                _, full_key = create_key(
                    conn, pepper=services.pepper, org_id=org.id, name=f"bench-{index}", policy=policy, now=now
                )
                keys.append(full_key)
    finally:
        services.db.dispose()
    return GatewaySeed(database_url, data_dir, admin_token, key_pepper, org.id, tuple(keys))


# -- PostgreSQL databases of a run ---------------------------------------------------------


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a safe database name: {name!r}")
    return name


def create_postgres_database(name: str) -> str:
    """CREATE a fresh database for one target; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {_check_name(name)}")  # a checked name
    return POSTGRES_URL.format(name=name)


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_check_name(name)} WITH (FORCE)")


def postgres_backend_pids(name: str) -> list[int]:
    """The server processes (backends) serving connections to database ``name``: their CPU is the
    database's work for that target (PostgreSQL's shared background writers are not counted)."""
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (_check_name(name),)).fetchall()
    return [int(row[0]) for row in rows]


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:  # any failure means: skip the PostgreSQL target and say why
        return False


# -- the scale fill ------------------------------------------------------------------------


def _insert_clone(
    conn: Any,
    dialect: str,
    table: str,
    columns: list[str],
    overrides: dict[str, str],
    where: str,
    count: int,
    params: dict[str, Any],
) -> None:
    """INSERT ``count`` clones of the one row of ``table`` matching ``where``, with ``overrides``."""
    names = ", ".join(columns)
    values = ", ".join(overrides.get(c, f"t.{c}") for c in columns)
    if dialect == "sqlite":
        sql = (
            "WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series WHERE n < :count) "
            f"INSERT INTO {table} ({names}) SELECT {values} FROM series, {table} t WHERE {where}"
        )
    else:
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {values} "
            f"FROM generate_series(1, :count) AS series(n), {table} t WHERE {where}"
        )
    conn.execute(text(sql), {"count": count, **params})


def fill_scale(database_url: str, keys_total: int, receipts_total: int) -> dict[str, Any]:
    """Grow a database the gateway has served from to ``keys_total`` keys and ``receipts_total`` receipts.

    Each cloned receipt gets its own posted charge transfer (a clone of the template's), and the
    two accounts that transfer moves between are updated by the total, so ``audit()`` still holds.
    """
    started = time.monotonic()
    engine = create_engine(database_url)
    dialect = engine.dialect.name
    meta = MetaData()
    meta.reflect(engine, only=["receipts", "transfers", "api_keys", "accounts"])
    receipts, transfers, api_keys = meta.tables["receipts"], meta.tables["transfers"], meta.tables["api_keys"]
    pad = "printf('f%011d', {n})" if dialect == "sqlite" else "'f' || lpad(({n})::text, 11, '0')"
    try:
        with engine.begin() as conn:
            template = (
                conn.execute(
                    select(receipts)
                    .where(receipts.c.status == "succeeded", receipts.c.transfer_id.is_not(None))
                    .order_by(receipts.c.seq.desc())
                    .limit(1)
                )
                .mappings()
                .one()
            )
            charge = conn.execute(select(transfers).where(transfers.c.id == template["transfer_id"])).mappings().one()
            existing_keys = conn.execute(select(func.count()).select_from(api_keys)).scalar_one()
            fillers = max(keys_total - existing_keys, 1)
            receipts_now = conn.execute(select(func.count()).select_from(receipts)).scalar_one()
            clones = max(receipts_total - receipts_now, 0)

            key_columns = [c.name for c in api_keys.columns]
            _insert_clone(
                conn,
                dialect,
                "api_keys",
                key_columns,
                {
                    "id": "'key_fill_' || (n - 1)",
                    "public_id": pad.format(n="n - 1"),
                    "secret_hash": "'filler-key-no-secret'",
                    "name": "'filler ' || n",
                },
                "t.id = :template_key",
                fillers,
                {"template_key": template["key_id"]},
            )

            transfer_overrides = {"id": "'trf_fill_' || n", "request_id": "'req_fill_' || n"}
            if "idempotency_key" in transfers.c:
                transfer_overrides["idempotency_key"] = "NULL"
            if "key_id" in transfers.c:
                transfer_overrides["key_id"] = f"'key_fill_' || (n % {fillers})"
            _insert_clone(
                conn,
                dialect,
                "transfers",
                [c.name for c in transfers.columns],
                transfer_overrides,
                "t.id = :template_transfer",
                clones,
                {"template_transfer": charge["id"]},
            )

            receipt_columns = [c.name for c in receipts.columns if c.name != "seq"]
            _insert_clone(
                conn,
                dialect,
                "receipts",
                receipt_columns,
                {
                    "request_id": "'req_fill_' || n",
                    "transfer_id": "'trf_fill_' || n",
                    "key_id": f"'key_fill_' || (n % {fillers})",
                    "key_public_id": pad.format(n=f"n % {fillers}"),
                },
                "t.request_id = :template_receipt",
                clones,
                {"template_receipt": template["request_id"]},
            )

            posted = charge["posted_amount_micros"] if charge["posted_amount_micros"] is not None else 0
            total = posted * clones
            conn.execute(
                text("UPDATE accounts SET debits_posted = debits_posted + :total WHERE id = :id"),
                {"total": total, "id": charge["debit_account_id"]},
            )
            conn.execute(
                text("UPDATE accounts SET credits_posted = credits_posted + :total WHERE id = :id"),
                {"total": total, "id": charge["credit_account_id"]},
            )
        if dialect == "postgresql":
            # A real PostgreSQL would have analysed tables that grew this much (autovacuum).
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
        with engine.connect() as conn:
            counts = {
                "keys": conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one(),
                "receipts": conn.execute(text("SELECT count(*) FROM receipts")).scalar_one(),
                "transfers": conn.execute(text("SELECT count(*) FROM transfers")).scalar_one(),
            }
    finally:
        engine.dispose()
    filled_s = round(time.monotonic() - started, 1)
    return {**counts, "fill_seconds": filled_s, "dialect": dialect, "database_bytes": database_bytes(database_url)}


def database_bytes(database_url: str) -> int:
    """The size of the database on disk: the SQLite file and its WAL, or PostgreSQL's database."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split(":///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()
