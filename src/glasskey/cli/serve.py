"""``glasskey serve``, ``demo`` and ``db upgrade`` (``orgs`` is in cli/orgs.py)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from alembic.runtime.migration import MigrationContext

from glasskey.cli.base import (
    main,
    run_server,
    settings_file,
    settings_of,
)
from glasskey.cli.workers import WORKERS_MAX, exit_zero_after_sigterm, export_settings, refuse_sqlite, run_workers
from glasskey.data_dir import prepare_data_dir
from glasskey.demo import demo_settings, format_demo_banner, seed_demo
from glasskey.people.audit import chain_key
from glasskey.research.demo import demo_research_line, run_demo_job
from glasskey.routing.credentials import CredentialVault
from glasskey.services import build_services
from glasskey.startup import prepare_database
from glasskey.store.database import Database


@main.command()
@click.option("--host", default=None, help="Listen address (default: the host setting).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Listen port (default: the port setting).")
@click.option(
    "--workers",
    type=click.IntRange(1, WORKERS_MAX),
    default=1,
    show_default=True,
    help="Gateway processes on the one port, each with its own writer (more than one needs PostgreSQL).",
)
@click.option(
    "--shutdown-deadline",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds that requests and streams in flight have to finish before they are cut.",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int, shutdown_deadline: float) -> None:
    """Run the gateway, the admin API and the dashboard."""
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings_of(ctx, **overrides)
    refuse_sqlite(settings, workers)
    # Migrations, the catalog and the system accounts, once, before any worker starts.
    services = build_services(settings)
    if workers > 1:
        services.close()
        export_settings(settings_file(ctx.find_root().params.get("config")), overrides)
        run_workers(settings, workers, shutdown_deadline)
        return
    exit_zero_after_sigterm()
    try:
        run_server(services, shutdown_deadline)
    finally:
        services.db.dispose()


def port_taken(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be listened on now (bound the way uvicorn binds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@main.command()
@click.option("--host", default="127.0.0.1", envvar="GLASSKEY_HOST", show_default=True, help="Listen address.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8787,
    envvar="GLASSKEY_PORT",
    show_default=True,
    help="Listen port; a port already taken stops the demo before it seeds anything.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./glasskey-data"),
    envvar="GLASSKEY_DATA_DIR",
    show_default=True,
    help="Where the SQLite database and the demo's glasskey.toml live.",
)
@click.option("--no-serve", is_flag=True, help="Seed and print the keys, then exit without serving.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, data_dir: Path, no_serve: bool) -> None:
    """Seed a demo org, wallets, simulated routes and two keys on SQLite, then serve."""
    if not no_serve and port_taken(host, port):
        # Before anything is seeded or printed: export lines for someone else's server would mislead.
        raise click.ClickException(f"port {port} is taken on {host}: use --port")
    if ctx.find_root().params.get("config") is not None:
        click.echo(f"note: demo mode reads {data_dir / 'glasskey.toml'}, not --config / GLASSKEY_CONFIG", err=True)
    settings = demo_settings(data_dir, host, port)
    services = build_services(settings)
    try:
        seeded = seed_demo(services)
        click.echo(format_demo_banner(seeded))
        # The research assistant's sample job, run once on the simulated provider with the routed key.
        routed = next(key for key in seeded.keys if key.settlement == "routed")
        click.echo(demo_research_line(services, run_demo_job(services, routed.record)))
        if not no_serve:
            run_server(services)
    finally:
        services.db.dispose()


# --- db ----------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Bring the database schema up to the newest revision."""
    settings = settings_of(ctx)
    if not settings.database_url:
        prepare_data_dir(settings.data_dir, create_database=True)
    database = Database(
        settings.effective_database_url, audit_chain_key=chain_key(settings.key_pepper.get_secret_value())
    )
    try:
        # With the vault, revision 0003 seals the route credentials stored in plaintext. The system
        # accounts and the catalog too: the CLI's admin verbs take a database at head as prepared.
        vault = CredentialVault(settings.encryption_keys)
        prepare_database(database, vault, datetime.now(UTC), allow_private=settings.allow_private_upstreams)
        with database.read() as conn:
            revision = ", ".join(MigrationContext.configure(conn).get_current_heads())
    finally:
        database.dispose()
    click.echo(f"database schema at revision {revision}")
