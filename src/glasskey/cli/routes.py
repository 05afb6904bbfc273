"""``glasskey models`` and ``glasskey routes`` (``routes health`` asks the running server)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import click
from pydantic import ValidationError

from glasskey.alerts.webhooks import reseal_webhook_secrets
from glasskey.cli.base import (
    CLI_ACTOR,
    HEALTH_TIMEOUT_SECONDS,
    USD,
    CommandFunction,
    main,
    per_mtok,
    reading,
    settings_of,
    table,
    writing,
)
from glasskey.limits import PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX
from glasskey.money import format_usd
from glasskey.people import changes as audited
from glasskey.people.audit import record
from glasskey.pricing.catalog import Prices, get_model, list_models
from glasskey.routing.credentials import CredentialVault, reseal_stored_credentials
from glasskey.routing.routes import (
    PROVIDERS,
    SETTLEMENTS,
    Route,
    changes_for_storing,
    for_storing,
    get_route,
    list_routes,
)

# --- models ------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """The model catalog and its official prices."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Every model of the catalog: vendor, kind, official prices per 1M tokens and their date."""
    with reading(ctx) as (_, conn):
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
@click.option("--source", default="operator override", show_default=True, help="Where the price comes from.")
@click.pass_context
def models_set_price(
    ctx: click.Context, model: str, input_price: int, output_price: int, cached_price: int, source: str
) -> None:
    """Override a model's official price; the override survives catalog upgrades."""
    with writing(ctx, audit=False) as (services, conn):
        updated = audited.set_official_prices(
            conn,
            CLI_ACTOR,
            services.clock(),
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
PRIORITY = click.IntRange(PRIORITY_MIN, PRIORITY_MAX)
FORCE_CHOICES = {"open": "open", "closed": "closed", "none": None}


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """The route's options, refused (exit 2) as the admin API refuses them, e.g. a timeout of 0 ms."""
    # The admin API's own check; importing the admin package loads the web framework and the gateway's
    # services, so only the verbs that change a route's options pay for it (not routes or models list).
    from glasskey.admin.common import check_route_options

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
    with reading(ctx) as (_, conn):
        found = list_routes(conn, model)
    click.echo(_route_rows(found) if found else "No routes.")


@routes.command("add")
@click.option("--model", required=True, help="The public model name the route serves.")
@click.option("--provider", type=click.Choice(PROVIDERS), required=True, help="The upstream API family.")
@click.option(
    "--settlement",
    type=click.Choice(SETTLEMENTS),
    required=True,
    help="official: served to official keys at list price; routed: to routed keys.",
)
@click.option("--upstream-model", required=True, help="The model name the upstream knows.")
@click.option("--base-url", default="", help="The upstream's http(s) base URL (not needed for simulated).")
@click.option("--credential", default=None, help="The upstream API key (prefer --credential-env).")
@click.option("--credential-env", default=None, metavar="VAR", help="Read the upstream key from $VAR at request time.")
@_prices_options("price", "default: the model's official price")
@_prices_options("cost", "what the operator pays; default: the route's price")
@click.option("--priority", type=PRIORITY, default=100, show_default=True, help="Lower is tried first.")
@click.option(
    "--weight",
    type=click.IntRange(1, WEIGHT_MAX),
    default=1,
    show_default=True,
    help="Among equal priorities, higher first.",
)
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
    with writing(ctx, audit=False) as (services, conn):
        official = get_model(conn, model).official_prices
        route_prices = _with_prices(official, prices["price_input"], prices["price_output"], prices["price_cached"])
        route_costs = _with_prices(route_prices, prices["cost_input"], prices["cost_output"], prices["cost_cached"])
        allow_private = services.settings.allow_private_upstreams
        route = audited.create_route(
            conn,
            CLI_ACTOR,
            services.clock(),
            for_storing(
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
                services.vault,
                allow_private=allow_private,
            ),
        )
    click.echo(route.id)
    click.echo(
        f"added {route.settlement} route for {route.model}: {route.provider}/{route.upstream_model},"
        f" {per_mtok(route.prices.as_dict())} (official {per_mtok(official.as_dict())})",
        err=True,
    )


@routes.command("set")
@click.argument("route_id")
@click.option("--enable/--disable", "enabled", default=None, help="Let requests use the route, or not.")
@click.option("--priority", type=PRIORITY, default=None, help="Lower is tried first.")
@click.option(
    "--weight", type=click.IntRange(1, WEIGHT_MAX), default=None, help="Among equal priorities, higher first."
)
@_prices_options("price", "parts left out keep their value")
@_prices_options("cost", "parts left out keep their value")
@click.option("--base-url", default=None, help="A new upstream base URL.")
@click.option("--upstream-model", default=None, help="A new upstream model name.")
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
    with writing(ctx, audit=False) as (services, conn):
        changes = changes_for_storing(changes, services.vault, allow_private=services.settings.allow_private_upstreams)
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
        route = audited.update_route(conn, CLI_ACTOR, services.clock(), route_id, **changes)
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
    """Stop sending requests to a route (routes set ROUTE_ID --enable brings it back)."""
    with writing(ctx, audit=False) as (services, conn):
        route = audited.update_route(conn, CLI_ACTOR, services.clock(), route_id, enabled=False)
    click.echo(f"disabled route {route.id} ({route.settlement} {route.model} via {route.provider})")


@routes.command("rotate-encryption-key")
@click.pass_context
def routes_rotate_encryption_key(ctx: click.Context) -> None:
    """Re-seal every route credential and alert webhook secret under the current encryption_key.

    See docs/security.md.

    First put the new key in encryption_key and the old one in previous_encryption_keys, and restart
    every gateway process (each then opens both); run this; then remove the old key and restart.
    All or nothing: a credential that no configured key opens stops it, and nothing changes.
    """
    with writing(ctx, audit=False) as (services, conn):
        count = reseal_stored_credentials(conn, services.vault)
        webhooks = reseal_webhook_secrets(conn, services.vault)
        resealed = {"route_credentials": count, "webhook_secrets": webhooks}  # counts only: never a secret
        record(conn, CLI_ACTOR, "vault.reseal", services.clock(), target="vault", after=resealed)
    click.echo(f"re-sealed {count} route credential(s) under the current encryption key")
    click.echo(f"re-sealed {webhooks} alert webhook secret(s) under the current encryption key")
    if services.settings.previous_encryption_keys.get_secret_value().strip():
        click.echo("previous_encryption_keys can now be removed (then restart the gateway)", err=True)


@routes.command("generate-encryption-key")
def routes_generate_encryption_key() -> None:
    """Print a new random encryption key, for encryption_key (GLASSKEY_ENCRYPTION_KEY)."""
    click.echo(CredentialVault.generate_key())


def _fetch_health(base_url: str, admin_token: str, model: str | None) -> dict[str, Any]:
    """The running gateway's health board; a gateway that cannot answer is a one-line error (exit 1)."""
    # The HTTP client only for the one verb that talks to a running gateway (the others start lean).
    import httpx

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
    # Health lives in the memory of the server that served the traffic, so it is asked, not the database;
    # given --url and GLASSKEY_ADMIN_TOKEN, no other setting is needed (nor read).
    token = os.environ.get("GLASSKEY_ADMIN_TOKEN")
    if url is None or not token:
        settings = settings_of(ctx)
        url = url or settings.effective_public_url
        token = settings.admin_token.get_secret_value()
    base_url = url.rstrip("/")
    body = _fetch_health(base_url, token, model)
    click.echo(json.dumps(body, indent=2) if as_json else render_health(body, base_url))
