"""The ``glasskey`` command group and what its verbs share: serve, demo, and the everyday admin verbs.

Admin verbs open the database in this process (``cli.context``: the settings, the database and the
vault, not the gateway's services) and call the same domain functions as the admin API, so the CLI
and the API cannot disagree; a change they commit is announced to running gateways as the API's
are. The one exception is ``routes health``: route health
lives in the memory of the running server, so that verb asks the server's admin API. A wrong
setting exits with status 2 and a message naming it; an expected domain failure (unknown org,
reused idempotency key, unreachable gateway, ...) exits with 1.
Secrets are printed only where a human must copy them: a new key, and the demo banner.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from glasskey.errors import GlasskeyError
from glasskey.money import dollars_to_micros, format_usd
from glasskey.people.audit import Actor, record
from glasskey.people.roles import OPERATOR

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from glasskey.cli.context import AdminServices
    from glasskey.services import Services
    from glasskey.settings import Settings

# The health board is one small JSON document; a gateway slower than this is itself the news.
HEALTH_TIMEOUT_SECONDS = 10.0
CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])


class SettingsProblem(click.ClickException):
    exit_code = 2


class GlasskeyGroup(click.Group):
    """Turns expected failures anywhere below it into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        # Only a command that runs reads settings (pydantic and its validators); ``--help`` never does.
        from glasskey.settings import SettingsError

        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise SettingsProblem(str(exc)) from None
        except GlasskeyError as exc:
            raise click.ClickException(exc.message) from None


# Each top-level command: the module that defines it, and its one-line help. A module is imported
# only when one of its commands runs, so ``glasskey --help`` loads neither the database stack nor
# the web framework (bench/cli_startup.py measures it); tests hold the help lines to the modules'.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("glasskey.cli.serve", "Run the gateway, the admin API and the dashboard."),
    "demo": ("glasskey.cli.serve", "Seed a demo org, wallets, simulated routes and two keys on SQLite, then serve."),
    "db": ("glasskey.cli.serve", "The database schema."),
    "orgs": ("glasskey.cli.orgs", "Teams that own wallets and keys."),
    "keys": ("glasskey.cli.keys", "API keys and what they may do."),
    "wallets": ("glasskey.cli.ledger", "An org's credit and routed balances."),
    "receipts": ("glasskey.cli.ledger", "What each request did and what it cost."),
    "models": ("glasskey.cli.routes", "The model catalog and its official prices."),
    "routes": ("glasskey.cli.routes", "Ways to serve a model: provider, settlement, prices, priority, health."),
    "research": (
        "glasskey.cli.research",
        "Research jobs on a key's quick and deep models (research support, not financial advice).",
    ),
    "users": ("glasskey.cli.people", "People's accounts (email and password, optional second factor)."),
    "members": ("glasskey.cli.people", "Who belongs to an org, with which role."),
    "tokens": ("glasskey.cli.people", "Personal access tokens for the admin API (gkp-...)."),
    "audit": ("glasskey.cli.people", "The append-only audit log."),
    "alerts": ("glasskey.cli.alerts", "Notices, alert rules, the webhook and its delivery log."),
}


class LazyGroup(GlasskeyGroup):
    """The top-level group: a command's module is imported the first time the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(LAZY_COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            # Importing the module registers its commands on this group (``@main.group()``).
            importlib.import_module(LAZY_COMMANDS[cmd_name][0])
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            loaded = self.commands.get(name)
            if loaded is not None:
                rows.append((name, loaded.get_short_help_str(formatter.width)))
            else:
                rows.append((name, LAZY_COMMANDS[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class UsdType(click.ParamType[int]):
    """A dollar amount given as text, parsed to integer micros without ever becoming a float."""

    name = "usd"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            micros = dollars_to_micros(str(value).strip().removeprefix("$"))
        except (ValueError, InvalidOperation):
            self.fail(f"{value!r} is not a dollar amount with at most six decimals", param, ctx)
        if self.positive and micros <= 0:
            self.fail(f"{value!r}: the amount must be positive, e.g. 10 or 0.50", param, ctx)
        if micros < 0:
            self.fail(f"{value!r} is negative; amounts given to glasskey never are", param, ctx)
        return micros


class IsoDatetimeType(click.ParamType[datetime]):
    name = "iso8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date-time", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} needs a time zone, e.g. {value}Z or {value}+00:00", param, ctx)
        return parsed


USD = UsdType()
POSITIVE_USD = UsdType(positive=True)
ISO_DATETIME = IsoDatetimeType()


# --- helpers -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


DATA_DIR_DEFAULT = Path("./glasskey-data")
SETTINGS_FILE_NAME = "glasskey.toml"


def settings_file(config: Path | None, environ: dict[str, str] | None = None) -> Path | None:
    """The settings file the CLI reads, in this order: ``--config``, ``GLASSKEY_CONFIG``, then
    ``glasskey.toml`` in the data directory (``GLASSKEY_DATA_DIR``, default ``./glasskey-data``)
    if it exists, which is where ``glasskey demo`` keeps its secrets. ``GLASSKEY_*`` variables
    override what the file says."""
    env = os.environ if environ is None else environ
    if config is not None:
        return config
    if env.get("GLASSKEY_CONFIG"):
        return Path(env["GLASSKEY_CONFIG"])
    found = Path(env.get("GLASSKEY_DATA_DIR") or DATA_DIR_DEFAULT) / SETTINGS_FILE_NAME
    return found if found.is_file() else None


def settings_of(ctx: click.Context, **overrides: Any) -> Settings:
    from glasskey.settings import load_settings  # see GlasskeyGroup.invoke

    return load_settings(config_file=settings_file(ctx.find_root().params.get("config")), **overrides)


def admin_of(ctx: click.Context) -> AdminServices:
    # Imported when a verb runs, not when the CLI starts: ``--help`` never pays for the database
    # stack (see LAZY_COMMANDS). An admin verb never loads the gateway's services (cli.context).
    from glasskey.cli.context import open_admin

    admin = open_admin(settings_of(ctx))
    ctx.call_on_close(admin.db.dispose)
    return admin


# Who the CLI is in the audit log: it holds the database, so it acts as the operator.
CLI_ACTOR = Actor(OPERATOR, "cli", address="cli")


@contextmanager
def writing(ctx: click.Context, *, audit: bool = True) -> Iterator[tuple[AdminServices, Connection]]:
    """One write transaction; a verb that succeeds is written to the audit log in it (never its arguments,
    which may hold a credential). Verbs that write their own, richer events pass ``audit=False``.

    Once committed, the change is announced to running gateways (Redis pub/sub, when configured),
    as the admin API announces its own: their caches drop it at once instead of within their TTL."""
    admin = admin_of(ctx)
    verb = ctx.command_path.partition(" ")[2]  # without the program's name, which varies
    with admin.db.write() as conn:
        yield admin, conn
        if audit:
            record(conn, CLI_ACTOR, f"cli {verb}", admin.clock(), target=f"glasskey {verb}")
    if not admin.announce(f"cli {verb}"):
        click.echo(
            "warning: the change is saved, but Redis could not be told; running gateways see it within their cache TTL",
            err=True,
        )


@contextmanager
def reading(ctx: click.Context) -> Iterator[tuple[AdminServices, Connection]]:
    admin = admin_of(ctx)
    with admin.db.read() as conn:
        yield admin, conn


# The collector tuned for a long-lived server: what start-up built lives as long as the process,
# so it is frozen (no collection walks it again), and the young generation is large enough that
# collections come every few hundred requests rather than every few. Measured with bench.cost at
# c=16: about 5% more throughput and a lower p99 (52 ms instead of 66 ms at the median of three).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def server_options(settings: Settings, shutdown_deadline_seconds: float | None = None) -> dict[str, Any]:
    """uvicorn's options for the gateway, for one process (``run_server``) or several (``cli.workers``).

    ``shutdown_deadline_seconds``: on SIGTERM, how long requests and streams in flight may finish
    before they are cancelled (None: as long as they take)."""
    from glasskey.serving import server_limits  # only serving needs it: the CLI starts lean

    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "auto",
        "access_log": False,
        "timeout_graceful_shutdown": shutdown_deadline_seconds,
        # The HTTP protocol (httptools with its headers bounded), connection limits and the logging
        # configuration (GLASSKEY_LOG_LEVEL): serving.server_limits.
        **server_limits(settings),
    }


def run_server(services: Services, shutdown_deadline_seconds: float | None = None) -> None:
    # Imported here for the same reason as in admin_of: only serving needs them.
    import uvicorn

    from glasskey.app import build_app
    from glasskey.serving import AddressCap

    settings = services.settings
    app = AddressCap(build_app(services), settings.connections_per_address_max)
    config = uvicorn.Config(app, **server_options(settings, shutdown_deadline_seconds))
    tune_collector()
    uvicorn.Server(config).run()


# --- the command -------------------------------------------------------------------------


@click.group(cls=LazyGroup)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GLASSKEY_CONFIG",
    help="TOML settings file (also GLASSKEY_CONFIG). Default: glasskey.toml in the data directory"
    " (GLASSKEY_DATA_DIR, else ./glasskey-data) if it exists. GLASSKEY_* variables override it.",
)
@click.version_option(package_name="glasskey")
def main(config: Path | None) -> None:
    """glasskey: an OpenAI-compatible AI token gateway whose API keys are not black boxes."""


def per_mtok(prices: dict[str, int] | None) -> str:
    if prices is None:
        return "-"
    input_usd, output_usd, cached_usd = (format_usd(prices[part]) for part in ("input", "output", "cached"))
    return f"in {input_usd} / out {output_usd} / cached {cached_usd} per 1M tokens"
