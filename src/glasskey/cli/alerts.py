"""``glasskey alerts``: an org's notices, its alert rules, its webhook, a test delivery and the delivery log.

The CLI acts as the operator. Each change is written to the audit log by ``writing`` (the verb, never
its arguments: a webhook URL may carry a token in its path).
"""

from __future__ import annotations

import asyncio
import json

import click

from glasskey.alerts.delivery import DeliveryLimits, list_deliveries
from glasskey.alerts.notices import notices
from glasskey.alerts.rules import (
    KEY_BUDGET,
    KEY_FAILURE_RATE,
    WALLET_BALANCE,
    WALLET_KINDS,
    AlertRule,
    delete_rule,
    key_subject,
    rule_book,
    set_rule,
)
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.webhooks import delete_webhook, set_webhook
from glasskey.cli.base import main, reading, table, writing
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org

ORG = click.option("--org", "org_ref", required=True, help="Org name or id.")


@main.group()
def alerts() -> None:
    """Notices, alert rules, the webhook and its delivery log."""


@alerts.command("list")
@ORG
@click.pass_context
def alerts_list(ctx: click.Context, org_ref: str) -> None:
    """What needs attention in the org now, the most urgent first."""
    with reading(ctx) as (services, conn):
        org = get_org(conn, org_ref)
        found = notices(conn, org.id, list_keys(conn, org.id), services.clock())
    for notice in found:
        click.echo(f"{notice['level']:<8} {notice['message']}")
    if not found:
        click.echo(f"nothing needs attention in {org.name}")


def _threshold(rule: dict[str, object]) -> str:
    if rule["kind"] == WALLET_BALANCE:
        return f"balance below {rule['balance_below_micros']} micros"
    if rule["kind"] == KEY_BUDGET:
        return "budget " + ", ".join(f"{p}%" for p in rule["budget_percents"])  # type: ignore[attr-defined]
    return (
        f"{rule['failure_rate_percent']}% failed over {rule['failure_window_minutes']} min "
        f"(from {rule['failure_min_requests']} requests)"
    )


@alerts.command("rules")
@ORG
@click.pass_context
def alerts_rules(ctx: click.Context, org_ref: str) -> None:
    """The rules in force: the org's own, and the defaults where it has none."""
    with reading(ctx) as (_services, conn):
        book = rule_book(conn, get_org(conn, org_ref).id)
    rows = []
    for rule in (rule.public() for rule in book.in_force()):
        state = "off" if not rule["enabled"] else ("default" if rule["default"] else "set")
        rows.append((rule["id"] or "-", rule["kind"], rule["subject"], _threshold(rule), state))
    click.echo(table(["id", "kind", "subject", "threshold", "state"], rows))


@alerts.command("set")
@ORG
@click.option("--wallet", type=click.Choice(WALLET_KINDS), help="A wallet rule: on this wallet.")
@click.option("--below-micros", type=click.IntRange(min=0), help="Wallet: alert below this available balance.")
@click.option("--key", "key_ref", help="A key rule on this key (id or prefix); left out: every key of the org.")
@click.option("--budget-percents", help="Key: alert at these shares of a budget, e.g. 50,80,100.")
@click.option("--failure-rate", type=click.IntRange(1, 100), help="Key: alert at this failure rate (%).")
@click.option("--window-minutes", type=click.IntRange(min=1), help="Key: over this many minutes.")
@click.option("--min-requests", type=click.IntRange(min=1), help="Key: counting from this many requests (10).")
@click.option("--off", is_flag=True, help="Silence the subject instead.")
@click.pass_context
def alerts_set(
    ctx: click.Context,
    org_ref: str,
    wallet: str | None,
    below_micros: int | None,
    key_ref: str | None,
    budget_percents: str | None,
    failure_rate: int | None,
    window_minutes: int | None,
    min_requests: int | None,
    off: bool,
) -> None:
    """Set one rule, replacing the org's rule of the same kind and subject."""
    with writing(ctx) as (services, conn):
        org = get_org(conn, org_ref)
        if wallet is not None:
            rule = AlertRule(WALLET_BALANCE, f"wallet:{wallet}", not off, balance_below_micros=below_micros)
        elif budget_percents is not None:
            try:
                percents = tuple(int(part) for part in budget_percents.split(",") if part.strip())
            except ValueError:
                raise click.BadParameter("whole numbers separated by commas", param_hint="--budget-percents") from None
            rule = AlertRule(KEY_BUDGET, key_subject(conn, org.id, key_ref), not off, budget_percents=percents)
        elif failure_rate is not None:
            rule = AlertRule(
                KEY_FAILURE_RATE,
                key_subject(conn, org.id, key_ref),
                not off,
                failure_rate_percent=failure_rate,
                failure_window_minutes=window_minutes,
                failure_min_requests=min_requests,
            )
        else:
            raise click.UsageError("Say what the rule watches: --wallet, --budget-percents or --failure-rate")
        saved = set_rule(conn, org.id, rule, services.clock())
    click.echo(
        f"{saved.id} {saved.kind} {saved.subject}: {_threshold(saved.public())}{'' if saved.enabled else ' (off)'}"
    )


@alerts.command("unset")
@ORG
@click.argument("rule_id")
@click.pass_context
def alerts_unset(ctx: click.Context, org_ref: str, rule_id: str) -> None:
    """Remove a rule: its subject falls back to the org's rule for every key, or the default."""
    with writing(ctx) as (_services, conn):
        removed = delete_rule(conn, get_org(conn, org_ref).id, rule_id)
    click.echo(f"removed {removed.kind} {removed.subject}")


@alerts.command("webhook")
@ORG
@click.option("--url", help="Where deliveries go (judged by the upstream address policy).")
@click.option("--rotate-secret", is_flag=True, help="Make a new signing secret (printed once).")
@click.option("--remove", is_flag=True, help="Remove the webhook.")
@click.pass_context
def alerts_webhook(ctx: click.Context, org_ref: str, url: str | None, rotate_secret: bool, remove: bool) -> None:
    """Set or remove the org's webhook; a new signing secret is printed once."""
    with writing(ctx) as (services, conn):
        org = get_org(conn, org_ref)
        if remove:
            removed = delete_webhook(conn, org.id, services.clock())
        elif url is None:
            raise click.UsageError("Give --url, or --remove")
        else:
            webhook, secret = set_webhook(
                conn,
                services.vault,
                org.id,
                url,
                services.clock(),
                allow_private=services.settings.allow_private_upstreams,
                rotate_secret=rotate_secret,
            )
    if remove:
        click.echo("webhook removed" if removed else f"{org.name} has no webhook")
        return
    click.echo(f"webhook: {webhook.url}")
    if secret is not None:
        click.echo(f"signing secret (shown once, store it now): {secret}")


@alerts.command("test")
@ORG
@click.pass_context
def alerts_test(ctx: click.Context, org_ref: str) -> None:
    """Send a signed test event to the webhook now, once, and print the receiver's answer."""
    with writing(ctx) as (services, conn):
        org = get_org(conn, org_ref)
    runner = AlertRunner(
        services.db,
        services.vault,
        services.clock,
        allow_private=services.settings.allow_private_upstreams,
        limits=DeliveryLimits(),
    )
    delivery = asyncio.run(runner.send_test(org.id))
    answer = delivery["answers"][-1] if delivery["answers"] else {}
    said = (
        f"{answer['status_code']} {answer['excerpt'] or ''}".strip()
        if answer.get("status_code")
        else answer.get("error")
    )
    click.echo(f"{delivery['status']}: {said}")
    if delivery["status"] != "delivered":
        raise SystemExit(1)


@alerts.command("deliveries")
@ORG
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True, help="How many deliveries.")
@click.option("--json", "as_json", is_flag=True, help="Print the log as JSON, with every answer.")
@click.pass_context
def alerts_deliveries(ctx: click.Context, org_ref: str, limit: int, as_json: bool) -> None:
    """The webhook's delivery log, newest first: status and the receiver's last answer."""
    with reading(ctx) as (_services, conn):
        found = list_deliveries(conn, get_org(conn, org_ref).id, limit)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    rows = []
    for delivery in found:
        last = delivery["answers"][-1] if delivery["answers"] else {}
        answer = f"{last.get('status_code') or ''} {last.get('excerpt') or last.get('error') or ''}".strip()
        rows.append((delivery["created_at"], delivery["id"], delivery["event"], delivery["status"], answer[:60]))
    click.echo(table(["created", "id", "event", "status", "last answer"], rows))
