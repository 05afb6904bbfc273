"""``glasskey keys``: create, list, explain, set, revoke."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from glasskey.cli.base import (
    CLI_ACTOR,
    ISO_DATETIME,
    USD,
    main,
    per_mtok,
    reading,
    table,
    writing,
)
from glasskey.keys.policy import DEFAULT_POLICY, KeyPolicy
from glasskey.keys.service import REVOKED, get_key, list_keys
from glasskey.limits import RPM_LIMIT_MAX
from glasskey.money import format_usd
from glasskey.orgs.service import get_org, list_orgs
from glasskey.people import changes

# `keys set --budget-total none` clears a limit, as `null` does in the admin API's PATCH.
CLEAR = "none"


class Cleared:
    """What an option given as ``none`` becomes (an option not given stays ``None``)."""


CLEARED = Cleared()

# --- keys --------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """API keys and what they may do."""


@keys.command("create")
@click.option("--org", "org_ref", required=True, help="Org name or id.")
@click.option("--name", required=True, help="A name people recognise the key by.")
@click.option("--owner", default="", help="Who holds the key (a person, a script, an agent).")
@click.option("--model", "models", multiple=True, help="An allowed model; repeat it. Default: every model.")
@click.option(
    "--settlement",
    type=click.Choice(["official", "routed"]),
    default=DEFAULT_POLICY.settlement,
    show_default=True,
    help="official: official routes at list price, from the credit wallet; routed: routed routes, from the routed"
    " wallet.",
)
@click.option(
    "--lower-cost/--no-lower-cost",
    default=DEFAULT_POLICY.lower_cost_routes,
    show_default=True,
    help="Try the cheapest route first (routed keys only).",
)
@click.option(
    "--backups/--no-backups",
    default=DEFAULT_POLICY.backup_routes,
    show_default=True,
    help="Fall back to backup routes.",
)
@click.option(
    "--strict-params/--no-strict-params",
    default=DEFAULT_POLICY.strict_params,
    show_default=True,
    help="Refuse (400) a best-effort parameter such as seed that the route's provider cannot honour, instead of"
    " dropping it and naming it on the receipt.",
)
@click.option("--budget-total", type=USD, default=None, help="Total spending limit in USD.")
@click.option("--budget-daily", type=USD, default=None, help="Daily spending limit in USD.")
@click.option("--rpm", type=click.IntRange(0, RPM_LIMIT_MAX), default=None, help="Requests per minute.")
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
    strict_params: bool,
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
        strict_params=strict_params,
        budget_total_micros=budget_total,
        budget_daily_micros=budget_daily,
        rpm_limit=rpm,
        expires_at=expires,
    )
    with writing(ctx, audit=False) as (services, conn):
        org = get_org(conn, org_ref)
        record, full_key = changes.create_key(
            conn,
            CLI_ACTOR,
            services.clock(),
            pepper=services.pepper,
            org_id=org.id,
            name=name,
            policy=policy,
            owner=owner,
        )
    click.echo(f"created key {record.name} ({record.id}, {record.prefix}) in org {org.name}")
    click.echo(full_key)
    click.echo("Store it now: this full key is shown once and cannot be shown again.", err=True)


@keys.command("list")
@click.option("--org", "org_ref", default=None, help="Only this org's keys (name or id).")
@click.pass_context
def keys_list(ctx: click.Context, org_ref: str | None) -> None:
    """Every key (or one org's) with its settlement, status and allowed models; never a secret."""
    with reading(ctx) as (_, conn):
        org_id = get_org(conn, org_ref).id if org_ref else None
        records = list_keys(conn, org_id)
        org_names = {org.id: org.name for org in list_orgs(conn)}
    rows = [
        (
            k.name,
            k.prefix,
            org_names.get(k.org_id, k.org_id),
            k.policy.settlement,
            k.status,
            ",".join(k.policy.allowed_models) if k.policy.allowed_models is not None else "(all)",
        )
        for k in records
    ]
    click.echo(table(["NAME", "PREFIX", "ORG", "SETTLEMENT", "STATUS", "MODELS"], rows) if rows else "No keys.")


def render_explanation(explanation: dict[str, Any]) -> str:
    """The key's explanation for people: the same facts as ``GET /v1/key``, in words."""
    key, wallet, budgets = explanation["key"], explanation["wallet"], explanation["budgets"]
    rpm = explanation["rate_limit"]["requests_per_minute"]
    lines = [
        f"key {key['name']} ({key['id']}, {key['prefix']}), org {key['org_id']}, status {explanation['status']}",
        f"settlement:        {explanation['settlement_in_words']}",
        f"lower-cost routes: {explanation['lower_cost_routes_in_words']}",
        f"backup routes:     {'on' if explanation['backup_routes'] else 'off'}",
        f"strict params:     {explanation['strict_params_in_words']}",
        f"wallet:            {wallet['kind']}, {format_usd(wallet['available_micros'])} available"
        f" ({format_usd(wallet['posted_micros'])} posted, {format_usd(wallet['held_micros'])} held)",
        f"allowed models:    {explanation['allowed_models_in_words']}",
    ]
    for model in explanation["models"]:
        route = model["route"]
        served = f"{route['provider']}/{route['upstream_model']} via {route['route_id']}" if route else "no route"
        lines += [
            f"  {model['model']}: {per_mtok(model['effective_price_per_mtok_micros'])}",
            f"      official {per_mtok(model['official_price_per_mtok_micros'])}",
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
    # The explanation reads routing, pricing, health and people: only this verb of the group loads it.
    from glasskey.explanation import explain_key

    with reading(ctx) as (services, conn):
        explanation = explain_key(conn, services.settings, get_key(conn, key_ref), services.clock())
    click.echo(json.dumps(explanation, indent=2) if as_json else render_explanation(explanation))


@keys.command("revoke")
@click.argument("key_ref", metavar="KEY_ID_OR_PREFIX")
@click.pass_context
def keys_revoke(ctx: click.Context, key_ref: str) -> None:
    """Revoke a key: its next request is refused (within the cache TTL of a running gateway)."""
    with writing(ctx, audit=False) as (services, conn):
        before = get_key(conn, key_ref)
        record = changes.revoke_key(conn, CLI_ACTOR, services.clock(), key_ref)
    revoked_at = record.revoked_at.isoformat() if record.revoked_at else "-"
    if before.status == REVOKED:
        click.echo(f"key {record.name} ({record.prefix}) was already revoked, at {revoked_at}; nothing changed")
        return
    click.echo(f"revoked key {record.name} ({record.prefix}) at {revoked_at}")


class ClearableType(click.ParamType[Any]):
    """A value of ``inner``, or ``none`` to clear the setting (``null`` in the admin API)."""

    def __init__(self, inner: click.ParamType[Any]) -> None:
        self.inner = inner
        self.name = f"{inner.name}|{CLEAR}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().lower() == CLEAR:
            return CLEARED
        return self.inner.convert(value, param, ctx)


@keys.command("set")
@click.argument("key_ref", metavar="KEY_ID_OR_PREFIX")
@click.option("--name", default=None, help="A new name.")
@click.option("--owner", default=None, help="Who holds the key now.")
@click.option("--model", "models", multiple=True, help="Replace the allowed models; repeat it.")
@click.option("--all-models", is_flag=True, help="Allow every model in the catalog.")
@click.option("--settlement", type=click.Choice(["official", "routed"]), default=None, help="Change the settlement.")
@click.option("--lower-cost/--no-lower-cost", default=None, help="Try the cheapest route first (routed keys only).")
@click.option("--backups/--no-backups", default=None, help="Fall back to backup routes.")
@click.option(
    "--strict-params/--no-strict-params",
    default=None,
    help="Refuse (400) best-effort parameters the route's provider cannot honour, or drop and name them.",
)
@click.option("--budget-total", type=ClearableType(USD), default=None, help="Total limit in USD; none clears it.")
@click.option("--budget-daily", type=ClearableType(USD), default=None, help="Daily limit in USD; none clears it.")
@click.option(
    "--rpm",
    type=ClearableType(click.IntRange(0, RPM_LIMIT_MAX)),
    default=None,
    help="Requests per minute; none clears it.",
)
@click.option(
    "--expires", type=ClearableType(ISO_DATETIME), default=None, help="Expiry (ISO 8601); none: never expires."
)
@click.pass_context
def keys_set(
    ctx: click.Context,
    /,
    key_ref: str,
    name: str | None,
    owner: str | None,
    models: tuple[str, ...],
    all_models: bool,
    settlement: str | None,
    lower_cost: bool | None,
    backups: bool | None,
    strict_params: bool | None,
    **limits: Any,
) -> None:
    """Change a key's name, owner or policy: every field the admin API's PATCH can change; only those given change."""
    if models and all_models:
        raise click.UsageError("give --model or --all-models, not both")
    toggles = (
        ("settlement", settlement),
        ("lower_cost_routes", lower_cost),
        ("backup_routes", backups),
        ("strict_params", strict_params),
    )
    policy: dict[str, Any] = {field: value for field, value in toggles if value is not None}
    if models or all_models:
        policy["allowed_models"] = models or None
    fields = {"budget_total": "budget_total_micros", "budget_daily": "budget_daily_micros", "rpm": "rpm_limit"}
    fields["expires"] = "expires_at"
    for option, value in limits.items():
        if value is not None:
            policy[fields[option]] = None if value is CLEARED else value
    if not policy and name is None and owner is None:
        raise click.UsageError("nothing to change: give at least one setting")
    with writing(ctx, audit=False) as (services, conn):
        record = changes.update_key(conn, CLI_ACTOR, services.clock(), key_ref, name=name, owner=owner, **policy)
    click.echo(f"updated key {record.name} ({record.prefix})")
