"""The ``glasskey`` command: serve, demo, and the everyday admin verbs.

Admin verbs open the database in this process and call the same domain functions as the admin
API, so the CLI and the API cannot disagree. The one exception is ``routes health``: route health
lives in the memory of the running server, so that verb asks the server's admin API. A wrong
setting exits with status 2 and a message naming it; an expected domain failure (unknown org,
reused idempotency key, unreachable gateway, ...) exits with 1.
Secrets are printed only where a human must copy them: a new key, and the demo banner.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import uvicorn
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection

from glasskey.admin.common import check_route_options
from glasskey.app import build_app
from glasskey.demo import demo_settings, format_demo_banner, seed_demo
from glasskey.errors import GlasskeyError
from glasskey.keys.explain import explain_key
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, get_key, list_keys, revoke_key
from glasskey.money import dollars_to_micros, format_usd
from glasskey.orgs.service import WALLET_KINDS, create_org, get_org, get_wallet, list_orgs, list_wallets, top_up
from glasskey.pricing.catalog import Prices, get_model, list_models, set_official_prices
from glasskey.receipts.records import MAX_PAGE, get_receipt, list_receipts
from glasskey.routing.routes import PROVIDERS, SETTLEMENTS, Route, create_route, get_route, list_routes, update_route
from glasskey.services import Services, build_services
from glasskey.settings import Settings, SettingsError, load_settings
from glasskey.store.database import Database
from glasskey.store.migrations import upgrade

# The health board is one small JSON document; a gateway slower than this is itself the news.
HEALTH_TIMEOUT_SECONDS = 10.0
CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])


class SettingsProblem(click.ClickException):
    exit_code = 2


class GlasskeyGroup(click.Group):
    """Turns expected failures anywhere below it into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise SettingsProblem(str(exc)) from None
        except GlasskeyError as exc:
            raise click.ClickException(exc.message) from None


class UsdType(click.ParamType[int]):
    """A dollar amount given as text, parsed to integer micros without ever becoming a float."""

    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            micros = dollars_to_micros(str(value).strip().removeprefix("$"))
        except (ValueError, InvalidOperation):
            self.fail(f"{value!r} is not a dollar amount with at most six decimals", param, ctx)
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
ISO_DATETIME = IsoDatetimeType()


# --- helpers -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _settings(ctx: click.Context) -> Settings:
    config: Path | None = ctx.find_root().params.get("config")
    return load_settings(config_file=config)


def _services(ctx: click.Context) -> Services:
    services = build_services(_settings(ctx))
    ctx.call_on_close(services.db.dispose)
    return services


@contextmanager
def _write(ctx: click.Context) -> Iterator[tuple[Services, Connection]]:
    services = _services(ctx)
    with services.db.write() as conn:
        yield services, conn


@contextmanager
def _read(ctx: click.Context) -> Iterator[tuple[Services, Connection]]:
    services = _services(ctx)
    with services.db.read() as conn:
        yield services, conn


def run_server(services: Services) -> None:
    settings = services.settings
    config = uvicorn.Config(
        build_app(services),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "auto",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        access_log=False,
        log_level=settings.log_level,
    )
    uvicorn.Server(config).run()


# --- the command -------------------------------------------------------------------------


@click.group(cls=GlasskeyGroup)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GLASSKEY_CONFIG",
    help="TOML settings file (also GLASSKEY_CONFIG); GLASSKEY_* variables override it.",
)
@click.version_option(package_name="glasskey")
def main(config: Path | None) -> None:
    """glasskey: an OpenAI-compatible AI token gateway whose API keys are not black boxes."""


@main.command()
@click.option("--host", default=None, help="Listen address (default: the host setting).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Listen port (default: the port setting).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the gateway, the admin API and the dashboard."""
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = load_settings(config_file=ctx.find_root().params.get("config"), **overrides)
    services = build_services(settings)
    try:
        run_server(services)
    finally:
        services.db.dispose()


@main.command()
@click.option("--host", default="127.0.0.1", envvar="GLASSKEY_HOST", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8787, envvar="GLASSKEY_PORT", show_default=True)
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
    if ctx.find_root().params.get("config") is not None:
        click.echo(f"note: demo mode reads {data_dir / 'glasskey.toml'}, not --config / GLASSKEY_CONFIG", err=True)
    settings = demo_settings(data_dir, host, port)
    services = build_services(settings)
    try:
        click.echo(format_demo_banner(seed_demo(services)))
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
    database = Database(_settings(ctx).effective_database_url)
    try:
        upgrade(database)
        with database.read() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
    finally:
        database.dispose()
    click.echo(f"database schema at revision {revision}")


# --- orgs --------------------------------------------------------------------------------


@main.group()
def orgs() -> None:
    """Teams that own wallets and keys."""


@orgs.command("create")
@click.argument("name")
@click.pass_context
def orgs_create(ctx: click.Context, name: str) -> None:
    with _write(ctx) as (services, conn):
        org = create_org(conn, name, services.clock())
    click.echo(f"created org {org.name} ({org.id}) with empty credit and routed wallets")


@orgs.command("list")
@click.pass_context
def orgs_list(ctx: click.Context) -> None:
    with _read(ctx) as (_, conn):
        rows = [(o.id, o.name, o.created_at.isoformat(timespec="seconds")) for o in list_orgs(conn)]
    click.echo(table(["ID", "NAME", "CREATED"], rows) if rows else "No orgs.")


# --- keys --------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """API keys and what they may do."""


@keys.command("create")
@click.option("--org", "org_ref", required=True, help="Org name or id.")
@click.option("--name", required=True)
@click.option("--owner", default="", help="Who holds the key (a person, a script, an agent).")
@click.option("--model", "models", multiple=True, help="An allowed model; repeat it. Default: every model.")
@click.option("--settlement", type=click.Choice(["official", "routed"]), default="routed", show_default=True)
@click.option("--lower-cost/--no-lower-cost", default=False, show_default=True, help="Try the cheapest route first.")
@click.option("--backups/--no-backups", default=False, show_default=True, help="Fall back to backup routes.")
@click.option("--budget-total", type=USD, default=None, help="Total spending limit in USD.")
@click.option("--budget-daily", type=USD, default=None, help="Daily spending limit in USD.")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute.")
@click.option("--expires", type=ISO_DATETIME, default=None, help="Expiry, e.g. 2026-12-31T23:59:59Z.")
@click.pass_context
def keys_create(
    ctx: click.Context,
    org_ref: str,
    name: str,
    owner: str,
    models: tuple[str, ...],
    settlement: str,
    lower_cost: bool,
    backups: bool,
    budget_total: int | None,
    budget_daily: int | None,
    rpm: int | None,
    expires: datetime | None,
) -> None:
    """Create a key; its full secret is printed once."""
    policy = KeyPolicy(
        allowed_models=models or None,
        settlement=settlement,
        lower_cost_routes=lower_cost,
        backup_routes=backups,
        budget_total_micros=budget_total,
        budget_daily_micros=budget_daily,
        rpm_limit=rpm,
        expires_at=expires,
    )
    with _write(ctx) as (services, conn):
        org = get_org(conn, org_ref)
        record, full_key = create_key(
            conn, pepper=services.pepper, org_id=org.id, name=name, policy=policy, now=services.clock(), owner=owner
        )
    click.echo(f"created key {record.name} ({record.id}, {record.prefix}) in org {org.name}")
    click.echo(full_key)
    click.echo("Store it now: this full key is shown once and cannot be shown again.", err=True)


@keys.command("list")
@click.option("--org", "org_ref", default=None, help="Only this org's keys (name or id).")
@click.pass_context
def keys_list(ctx: click.Context, org_ref: str | None) -> None:
    with _read(ctx) as (_, conn):
        org_id = get_org(conn, org_ref).id if org_ref else None
        records = list_keys(conn, org_id)
    rows = [
        (
            k.id,
            k.prefix,
            k.name,
            k.org_id,
            k.policy.settlement,
            k.status,
            ",".join(k.policy.allowed_models) if k.policy.allowed_models is not None else "(all)",
        )
        for k in records
    ]
    click.echo(table(["ID", "PREFIX", "NAME", "ORG", "SETTLEMENT", "STATUS", "MODELS"], rows) if rows else "No keys.")


def _per_mtok(prices: dict[str, int] | None) -> str:
    if prices is None:
        return "-"
    input_usd, output_usd, cached_usd = (format_usd(prices[part]) for part in ("input", "output", "cached"))
    return f"in {input_usd} / out {output_usd} / cached {cached_usd} per 1M tokens"


def render_explanation(explanation: dict[str, Any]) -> str:
    """The key's explanation for people: the same facts as ``GET /v1/key``, in words."""
    key, wallet, budgets = explanation["key"], explanation["wallet"], explanation["budgets"]
    rpm = explanation["rate_limit"]["requests_per_minute"]
    lines = [
        f"key {key['name']} ({key['id']}, {key['prefix']}), org {key['org_id']}, status {explanation['status']}",
        f"settlement:        {explanation['settlement_in_words']}",
        f"lower-cost routes: {explanation['lower_cost_routes_in_words']}",
        f"backup routes:     {'on' if explanation['backup_routes'] else 'off'}",
        f"wallet:            {wallet['kind']}, {format_usd(wallet['available_micros'])} available"
        f" ({format_usd(wallet['posted_micros'])} posted, {format_usd(wallet['held_micros'])} held)",
        f"allowed models:    {explanation['allowed_models_in_words']}",
    ]
    for model in explanation["models"]:
        route = model["route"]
        served = f"{route['provider']}/{route['upstream_model']} via {route['route_id']}" if route else "no route"
        lines += [
            f"  {model['model']}: {_per_mtok(model['effective_price_per_mtok_micros'])}",
            f"      official {_per_mtok(model['official_price_per_mtok_micros'])}",
            f"      served by {served}",
            f"      backups: {model['backups_in_words']}",
        ]
    if explanation["unknown_allowed_models"]:
        lines.append(f"  not in the catalog: {', '.join(explanation['unknown_allowed_models'])}")

    def limit(value: int | None) -> str:
        return "no limit" if value is None else format_usd(value)

    lines += [
        f"budget total:      {limit(budgets['total_micros'])}, spent {format_usd(budgets['total_spent_micros'])},"
        f" held {format_usd(budgets['total_held_micros'])}",
        f"budget daily:      {limit(budgets['daily_micros'])}, spent today {format_usd(budgets['today_spent_micros'])},"
        f" held {format_usd(budgets['today_held_micros'])}",
        f"rate limit:        {'none' if rpm is None else f'{rpm} requests per minute'}",
        f"expires:           {explanation['expires_at'] or 'never'}",
        f"receipts:          {explanation['receipts_url']}",
        f"failures:          {explanation['failures_url']}",
        f"admin receipts:    {explanation['admin_receipts_url']}",
    ]
    return "\n".join(lines)


@keys.command("explain")
@click.argument("key_ref", metavar="KEY_ID_OR_PREFIX")
@click.option("--json", "as_json", is_flag=True, help="Print the raw explanation, as GET /v1/key returns it.")
@click.pass_context
def keys_explain(ctx: click.Context, key_ref: str, as_json: bool) -> None:
    """What a key may call, what it will cost, which wallet pays, where its receipts are."""
    with _read(ctx) as (services, conn):
        explanation = explain_key(conn, services.settings, get_key(conn, key_ref), services.clock())
    click.echo(json.dumps(explanation, indent=2) if as_json else render_explanation(explanation))


@keys.command("revoke")
@click.argument("key_ref", metavar="KEY_ID_OR_PREFIX")
@click.pass_context
def keys_revoke(ctx: click.Context, key_ref: str) -> None:
    with _write(ctx) as (services, conn):
        record = revoke_key(conn, key_ref, services.clock())
    revoked_at = record.revoked_at.isoformat() if record.revoked_at else "-"
    click.echo(f"revoked key {record.name} ({record.id}, {record.prefix}) at {revoked_at}")


# --- wallets -----------------------------------------------------------------------------


@main.group()
def wallets() -> None:
    """An org's credit and routed balances."""


@wallets.command("show")
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def wallets_show(ctx: click.Context, org_ref: str) -> None:
    with _read(ctx) as (_, conn):
        org = get_org(conn, org_ref)
        found = list_wallets(conn, org.id)
    rows = [
        (
            w.kind,
            format_usd(w.balance.posted_micros),
            format_usd(w.balance.held_micros),
            format_usd(w.balance.available_micros),
        )
        for w in found
    ]
    click.echo(f"org {org.name} ({org.id})")
    click.echo(table(["WALLET", "POSTED", "HELD", "AVAILABLE"], rows))


@wallets.command("topup")
@click.argument("org_ref", metavar="ORG")
@click.argument("kind", type=click.Choice(WALLET_KINDS))
@click.argument("amount", metavar="AMOUNT_USD", type=USD)
@click.option("--idempotency-key", default=None, help="Retrying with the same key moves the money only once.")
@click.pass_context
def wallets_topup(ctx: click.Context, org_ref: str, kind: str, amount: int, idempotency_key: str | None) -> None:
    with _write(ctx) as (services, conn):
        org = get_org(conn, org_ref)
        transfer = top_up(conn, org.id, kind, amount, services.clock(), idempotency_key=idempotency_key)
        wallet = get_wallet(conn, org.id, kind)
    verb = "already topped up (replayed, nothing moved)" if transfer.replayed else "topped up"
    click.echo(f"{verb}: {format_usd(transfer.amount_micros)} into {org.name}'s {kind} wallet, transfer {transfer.id}")
    click.echo(f"{kind} wallet: {format_usd(wallet.balance.available_micros)} available")


# --- receipts ----------------------------------------------------------------------------


@main.group()
def receipts() -> None:
    """What each request did and what it cost."""


@receipts.command("list")
@click.option("--key", "key_ref", default=None, help="Key id or prefix.")
@click.option("--org", "org_ref", default=None, help="Org name or id.")
@click.option("--status", default=None, help="succeeded or failed.")
@click.option("--model", default=None, help="Requested model.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True)
@click.pass_context
def receipts_list(
    ctx: click.Context, key_ref: str | None, org_ref: str | None, status: str | None, model: str | None, limit: int
) -> None:
    with _read(ctx) as (_, conn):
        key_id = get_key(conn, key_ref).id if key_ref else None
        org_id = get_org(conn, org_ref).id if org_ref else None
        page = list_receipts(conn, key_id=key_id, org_id=org_id, status=status, model=model, limit=limit)
    rows = [
        (
            r["created_at"][:19].replace("T", " "),
            r["request_id"],
            r["key"],
            r["requested_model"],
            r["status"],
            f"{r['input_tokens']}/{r['output_tokens']}",
            format_usd(r["charge_micros"]),
            r["error_source"],
        )
        for r in page.data
    ]
    if not rows:
        click.echo("No receipts.")
        return
    headers = ["TIME", "REQUEST ID", "KEY", "MODEL", "STATUS", "TOKENS IN/OUT", "CHARGE", "ERROR SOURCE"]
    click.echo(table(headers, rows))
    if page.next_cursor:
        click.echo(f"(more receipts exist; raise --limit up to {MAX_PAGE} or filter)")


@receipts.command("show")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def receipts_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    with _read(ctx) as (_, conn):
        receipt = get_receipt(conn, request_id)
    if as_json:
        click.echo(json.dumps(receipt, indent=2, default=str))
        return
    attempts = receipt.pop("attempts", None) or []
    width = max(len(name) for name in receipt)
    for name, value in receipt.items():
        click.echo(f"{name.ljust(width)}  {'-' if value is None else value}")
    click.echo(f"attempts ({len(attempts)}):")
    for number, attempt in enumerate(attempts, start=1):
        error = f" {attempt.get('error_class')}: {attempt.get('error_message')}" if attempt.get("error_class") else ""
        click.echo(
            f"  {number}. {attempt['route_id']} {attempt['provider']}/{attempt['upstream_model']}"
            f" {attempt['status']} http {attempt.get('http_status') or '-'} {attempt['latency_ms']} ms{error}"
        )


# --- models ------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """The model catalog and its official prices."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    with _read(ctx) as (_, conn):
        found = list_models(conn)
    rows = [
        (
            m.name,
            m.vendor,
            m.kind,
            format_usd(m.official_prices.input_per_mtok_micros),
            format_usd(m.official_prices.output_per_mtok_micros),
            format_usd(m.official_prices.cached_per_mtok_micros),
            m.price_date + (" (override)" if m.price_overridden else ""),
        )
        for m in found
    ]
    click.echo(table(["MODEL", "VENDOR", "KIND", "INPUT/1M", "OUTPUT/1M", "CACHED/1M", "PRICE DATE"], rows))


@models.command("set-price")
@click.argument("model")
@click.option("--input", "input_price", type=USD, required=True, help="USD per 1M input tokens.")
@click.option("--output", "output_price", type=USD, required=True, help="USD per 1M output tokens.")
@click.option("--cached", "cached_price", type=USD, required=True, help="USD per 1M cached input tokens.")
@click.option("--source", default="operator override", show_default=True)
@click.pass_context
def models_set_price(
    ctx: click.Context, model: str, input_price: int, output_price: int, cached_price: int, source: str
) -> None:
    """Override a model's official price; the override survives catalog upgrades."""
    with _write(ctx) as (services, conn):
        updated = set_official_prices(
            conn,
            model,
            Prices(input_price, output_price, cached_price),
            price_date=services.clock().date().isoformat(),
            source=source,
        )
    prices = updated.official_prices
    click.echo(
        f"{updated.name}: in {format_usd(prices.input_per_mtok_micros)}"
        f" / out {format_usd(prices.output_per_mtok_micros)}"
        f" / cached {format_usd(prices.cached_per_mtok_micros)} per 1M tokens ({source})"
    )


# --- routes ------------------------------------------------------------------------------


class RouteOptionType(click.ParamType[tuple[str, Any]]):
    """``name=value``: the value is read as JSON when it parses (``500``, ``true``, ``null``), else as text."""

    name = "name=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        name, equals, text = str(value).partition("=")
        if not equals or not name.strip():
            self.fail(f"{value!r} is not name=value", param, ctx)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        return name.strip(), parsed


ROUTE_OPTION = RouteOptionType()
FORCE_CHOICES = {"open": "open", "closed": "closed", "none": None}


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """The route's options, refused (exit 2) as the admin API refuses them, e.g. a timeout of 0 ms."""
    try:
        return check_route_options(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in exc.errors())
        raise click.BadParameter(problems, param_hint="'--option'") from None


def _with_prices(
    base: Prices, input_micros: int | None, output_micros: int | None, cached_micros: int | None
) -> Prices:
    """``base`` with the parts given replaced; a part left out keeps its ``base`` value."""
    return Prices(
        base.input_per_mtok_micros if input_micros is None else input_micros,
        base.output_per_mtok_micros if output_micros is None else output_micros,
        base.cached_per_mtok_micros if cached_micros is None else cached_micros,
    )


def _credential(credential: str | None, credential_env: str | None) -> str | None:
    if credential is not None and credential_env is not None:
        raise click.UsageError("give --credential or --credential-env, not both")
    return f"env:{credential_env}" if credential_env is not None else credential


def _route_rows(found: Sequence[Route]) -> str:
    rows = [
        (
            r.id,
            r.model,
            r.provider,
            r.settlement,
            "yes" if r.enabled else "no",
            r.priority,
            r.weight,
            format_usd(r.prices.input_per_mtok_micros),
            format_usd(r.prices.output_per_mtok_micros),
            r.forced_circuit,
        )
        for r in found
    ]
    headers = ["ID", "MODEL", "PROVIDER", "SETTLEMENT", "ENABLED", "PRIORITY", "WEIGHT", "IN/1M", "OUT/1M", "FORCED"]
    return table(headers, rows)


def _prices_options(kind: str, what: str) -> Callable[[CommandFunction], CommandFunction]:
    """``--{kind}-input``, ``--{kind}-output`` and ``--{kind}-cached``, in USD per 1M tokens."""

    def decorate(command: CommandFunction) -> CommandFunction:
        for part in ("cached", "output", "input"):
            help_text = f"USD per 1M {part}{' input' if part == 'cached' else ''} tokens; {what}."
            command = click.option(f"--{kind}-{part}", f"{kind}_{part}", type=USD, default=None, help=help_text)(
                command
            )
        return command

    return decorate


@main.group()
def routes() -> None:
    """Ways to serve a model: provider, settlement, prices, priority, health."""


@routes.command("list")
@click.option("--model", default=None, help="Only this model's routes.")
@click.pass_context
def routes_list(ctx: click.Context, model: str | None) -> None:
    """Every route, by model and priority (credentials are never shown)."""
    with _read(ctx) as (_, conn):
        found = list_routes(conn, model)
    click.echo(_route_rows(found) if found else "No routes.")


@routes.command("add")
@click.option("--model", required=True, help="The public model name the route serves.")
@click.option("--provider", type=click.Choice(PROVIDERS), required=True)
@click.option("--settlement", type=click.Choice(SETTLEMENTS), required=True)
@click.option("--upstream-model", required=True, help="The model name the upstream knows.")
@click.option("--base-url", default="", help="The upstream's http(s) base URL (not needed for simulated).")
@click.option("--credential", default=None, help="The upstream API key (prefer --credential-env).")
@click.option("--credential-env", default=None, metavar="VAR", help="Read the upstream key from $VAR at request time.")
@_prices_options("price", "default: the model's official price")
@_prices_options("cost", "what the operator pays; default: the route's price")
@click.option("--priority", type=int, default=100, show_default=True, help="Lower is tried first.")
@click.option("--weight", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--option", "options", type=ROUTE_OPTION, multiple=True, help="A route option, e.g. timeout_total_ms=60000."
)
@click.pass_context
def routes_add(
    ctx: click.Context,
    /,
    model: str,
    provider: str,
    settlement: str,
    upstream_model: str,
    base_url: str,
    credential: str | None,
    credential_env: str | None,
    priority: int,
    weight: int,
    options: tuple[tuple[str, Any], ...],
    **prices: int | None,
) -> None:
    """Add a route; its id is printed. Prices not given default to the model's official price."""
    secret = _credential(credential, credential_env)
    route_options = _checked_options(dict(options))
    with _write(ctx) as (services, conn):
        official = get_model(conn, model).official_prices
        route_prices = _with_prices(official, prices["price_input"], prices["price_output"], prices["price_cached"])
        route_costs = _with_prices(route_prices, prices["cost_input"], prices["cost_output"], prices["cost_cached"])
        route = create_route(
            conn,
            Route(
                id="",
                model=model,
                provider=provider,
                base_url=base_url,
                upstream_model=upstream_model,
                settlement=settlement,
                prices=route_prices,
                costs=route_costs,
                priority=priority,
                weight=weight,
                options=route_options,
                credential=secret,
            ),
            services.clock(),
        )
    click.echo(route.id)
    click.echo(
        f"added {route.settlement} route for {route.model}: {route.provider}/{route.upstream_model},"
        f" {_per_mtok(route.prices.as_dict())} (official {_per_mtok(official.as_dict())})",
        err=True,
    )


@routes.command("set")
@click.argument("route_id")
@click.option("--enable/--disable", "enabled", default=None, help="Let requests use the route, or not.")
@click.option("--priority", type=int, default=None, help="Lower is tried first.")
@click.option("--weight", type=click.IntRange(min=1), default=None)
@_prices_options("price", "parts left out keep their value")
@_prices_options("cost", "parts left out keep their value")
@click.option("--base-url", default=None)
@click.option("--upstream-model", default=None)
@click.option("--credential", default=None, help="Replace the upstream API key (prefer --credential-env).")
@click.option("--credential-env", default=None, metavar="VAR", help="Read the upstream key from $VAR instead.")
@click.option("--option", "options", type=ROUTE_OPTION, multiple=True, help="Set a route option; name=null removes it.")
@click.option(
    "--force",
    type=click.Choice(list(FORCE_CHOICES)),
    default=None,
    help="Force the breaker open (never tried) or closed (always tried); none lets it decide again.",
)
@click.pass_context
def routes_set(
    ctx: click.Context,
    /,
    route_id: str,
    enabled: bool | None,
    priority: int | None,
    weight: int | None,
    base_url: str | None,
    upstream_model: str | None,
    credential: str | None,
    credential_env: str | None,
    options: tuple[tuple[str, Any], ...],
    force: str | None,
    **prices: int | None,
) -> None:
    """Change a route; only the settings given change."""
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("enabled", enabled),
            ("priority", priority),
            ("weight", weight),
            ("base_url", base_url),
            ("upstream_model", upstream_model),
            ("credential", _credential(credential, credential_env)),
        )
        if value is not None
    }
    if force is not None:
        changes["forced_circuit"] = FORCE_CHOICES[force]
    if not changes and not options and all(value is None for value in prices.values()):
        raise click.UsageError("nothing to change: give at least one setting")
    with _write(ctx) as (_, conn):
        current = get_route(conn, route_id)
        if options:
            merged = {**current.options, **dict(options)}
            changes["options"] = _checked_options({k: v for k, v in merged.items() if v is not None})
        changes["prices"] = _with_prices(
            current.prices, prices["price_input"], prices["price_output"], prices["price_cached"]
        )
        changes["costs"] = _with_prices(
            current.costs, prices["cost_input"], prices["cost_output"], prices["cost_cached"]
        )
        route = update_route(conn, route_id, **changes)
    click.echo(f"updated route {route.id}")
    click.echo(_route_rows([route]))
    if force is not None:
        stance = {"open": "every gateway process skips it", "closed": "every gateway process tries it"}
        meaning = stance.get(force, "its breaker decides again, starting closed")
        click.echo(f"breaker forced {force}: {meaning}")


@routes.command("disable")
@click.argument("route_id")
@click.pass_context
def routes_disable(ctx: click.Context, route_id: str) -> None:
    """Stop sending requests to a route (``routes set ROUTE_ID --enable`` brings it back)."""
    with _write(ctx) as (_, conn):
        route = update_route(conn, route_id, enabled=False)
    click.echo(f"disabled route {route.id} ({route.settlement} {route.model} via {route.provider})")


def _fetch_health(base_url: str, admin_token: str, model: str | None) -> dict[str, Any]:
    """The running gateway's health board; a gateway that cannot answer is a one-line error (exit 1)."""
    url = f"{base_url}/admin/api/health"
    try:
        response = httpx.get(
            url,
            headers={"Authorization": f"Bearer {admin_token}"},
            params={"model": model} if model else None,
            timeout=HEALTH_TIMEOUT_SECONDS,
        )
    except httpx.InvalidURL:
        raise click.ClickException(f"{base_url} is not a URL") from None
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach {url} ({type(exc).__name__}): is the gateway running at {base_url}?"
        ) from None
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise click.ClickException(f"{url} answered HTTP {response.status_code}, not a glasskey gateway?") from None
    if response.status_code == 401:
        raise click.ClickException(f"the gateway at {base_url} refused the admin token of these settings")
    if response.status_code != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        raise click.ClickException(f"{url} answered HTTP {response.status_code}: {message or 'no message'}")
    return body


def _circuit(row: dict[str, Any]) -> str:
    health = row["health"]
    text = str(health["circuit"])
    if health["forced"]:
        text += " (forced)"
    elif health["reopens_in_seconds"] is not None:
        text += f" (half-opens in {health['reopens_in_seconds']:.0f}s)"
    return text if row["enabled"] else f"{text}, disabled"


def _top_errors(errors_by_class: dict[str, int], shown: int = 3) -> str | None:
    ranked = sorted(errors_by_class.items(), key=lambda item: (-item[1], item[0]))[:shown]
    return ", ".join(f"{name} {count}" for name, count in ranked) or None


def render_health(body: dict[str, Any], base_url: str) -> str:
    def ms(value: int | None) -> str | None:
        return None if value is None else f"{value} ms"

    rows = []
    for row in body["data"]:
        health = row["health"]
        rate = health["success_rate"]
        rows.append(
            (
                row["route_id"],
                row["model"],
                row["settlement"],
                _circuit(row),
                None if rate is None else f"{rate * 100:.1f}%",
                health["requests"],
                ms(health["latency_ms"]["p50"]),
                ms(health["latency_ms"]["p99"]),
                _top_errors(health["errors_by_class"]),
            )
        )
    headers = ["ROUTE", "MODEL", "SETTLEMENT", "CIRCUIT", "SUCCESS", "REQUESTS", "P50", "P99", "TOP ERRORS"]
    window = body.get("window_seconds")
    footer = f"as the gateway at {base_url} saw it" + (f" over the last {window:.0f}s" if window else "")
    return (table(headers, rows) if rows else "No routes.") + "\n" + footer


@routes.command("health")
@click.option(
    "--url", default=None, help="The running gateway (default: the public_url setting, else http://HOST:PORT)."
)
@click.option("--model", default=None, help="Only this model's routes.")
@click.option("--json", "as_json", is_flag=True, help="Print the board as GET /admin/api/health returns it.")
@click.pass_context
def routes_health(ctx: click.Context, url: str | None, model: str | None, as_json: bool) -> None:
    """Ask the running gateway for its route health board: circuits, success rates, latency, errors."""
    # Health lives in the memory of the server that served the traffic, so it is asked, not the database.
    settings = _settings(ctx)
    base_url = (url or settings.effective_public_url).rstrip("/")
    body = _fetch_health(base_url, settings.admin_token.get_secret_value(), model)
    click.echo(json.dumps(body, indent=2) if as_json else render_health(body, base_url))
