"""``glasskey serve --workers N``: N gateway processes on one port, under uvicorn's supervisor.

Why uvicorn's own supervisor rather than N processes each binding with SO_REUSEPORT: it binds the
port once and hands the socket to every worker, restarts a worker that dies (a crash or a
``kill -9`` does not leave the port short of a process), and forwards SIGTERM to every worker, so
one signal drains them all; it adds no dependency. SO_REUSEPORT spreads connections a little more
evenly in the kernel, but would need a supervisor of our own for the rest. Several hosts each run
their own ``glasskey serve`` behind a load balancer (docs/deployment.md).

Each worker is a whole gateway: its own services, database pool and group-commit writer. They share
only the database and, when ``GLASSKEY_REDIS_URL`` is set, Redis. The parent migrates the schema
and seeds the catalog once before any worker starts, so workers never race on them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from glasskey.cli.base import server_options, tune_collector
from glasskey.settings import Settings, load_settings

WORKERS_MAX = 64


def refuse_sqlite(settings: Settings, workers: int) -> None:
    """Several workers need PostgreSQL: say why and what to use instead."""
    if workers > 1 and settings.effective_database_url.startswith("sqlite"):
        raise click.ClickException(
            f"--workers {workers} needs PostgreSQL: SQLite allows one writer per database file, and each "
            "worker has its own writer, so the workers would wait on each other's locks and fail under load. "
            "Set GLASSKEY_DATABASE_URL=postgresql+psycopg://USER@HOST/DB (and GLASSKEY_REDIS_URL to share "
            "rate limits, breakers and cache invalidation), or run one worker."
        )


def export_settings(config_file: Path | None, overrides: dict[str, object]) -> None:
    """Hand the parent's settings to the workers, which are new interpreters reading the environment:
    the settings file it found, and the command line's overrides (which win, as they do here)."""
    if config_file is not None:
        os.environ["GLASSKEY_CONFIG"] = str(config_file.resolve())
    for name, value in overrides.items():
        os.environ[f"GLASSKEY_{name.upper()}"] = str(value)


def exit_zero_after_sigterm() -> None:
    """Make SIGTERM's graceful shutdown end in exit status 0.

    uvicorn drains on SIGTERM and then raises the signal again under the handler it found at start,
    so that the default handler ends the process as killed by SIGTERM (status 143): to systemd or
    a container runtime, a failure. With this handler in place first, the signal raised again after
    the drain does nothing and the process exits 0, as a graceful stop should."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)


def run_workers(settings: Settings, workers: int, shutdown_deadline_seconds: float) -> None:
    """Serve with ``workers`` processes on one port until SIGTERM or Ctrl-C (the caller migrated)."""
    import uvicorn

    exit_zero_after_sigterm()
    uvicorn.run(
        "glasskey.cli.workers:worker_app",
        factory=True,
        workers=workers,
        **server_options(settings, shutdown_deadline_seconds),
    )


def worker_app() -> object:
    """One worker's app (uvicorn calls this in each worker process): its own services and writer."""
    from glasskey.app import build_app
    from glasskey.services import build_services
    from glasskey.serving import AddressCap

    settings = load_settings()
    services = build_services(settings, migrate=False)
    tune_collector()
    # Per worker: the cap of requests in flight from one address holds in each process.
    return AddressCap(build_app(services), settings.connections_per_address_max)
