"""``glasskey wallets`` and ``glasskey receipts``."""

from __future__ import annotations

import json

import click

from glasskey.cli.base import (
    CLI_ACTOR,
    POSITIVE_USD,
    main,
    reading,
    table,
    writing,
)
from glasskey.keys.service import get_key, list_keys
from glasskey.money import format_usd
from glasskey.orgs.service import WALLET_KINDS, get_org, get_wallet, list_wallets
from glasskey.people import changes as audited
from glasskey.receipts.records import MAX_PAGE, get_receipt, list_receipts

RECEIPT_STATUSES = ("succeeded", "failed", "interrupted")

# --- wallets -----------------------------------------------------------------------------


@main.group()
def wallets() -> None:
    """An org's credit and routed balances."""


@wallets.command("show")
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def wallets_show(ctx: click.Context, org_ref: str) -> None:
    """An org's two wallets: posted, held and available balances (ORG is a name or an id)."""
    with reading(ctx) as (_, conn):
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


# ignore_unknown_options: a negative amount ("-1") reaches the amount's check (and its message)
# instead of being read as an unknown option.
@wallets.command("topup", context_settings={"ignore_unknown_options": True})
@click.argument("org_ref", metavar="ORG")
@click.argument("kind", type=click.Choice(WALLET_KINDS))
@click.argument("amount", metavar="AMOUNT_USD", type=POSITIVE_USD)
@click.option("--idempotency-key", default=None, help="Retrying with the same key moves the money only once.")
@click.pass_context
def wallets_topup(ctx: click.Context, org_ref: str, kind: str, amount: int, idempotency_key: str | None) -> None:
    """Add AMOUNT_USD (positive, at most six decimals) to an org's credit or routed wallet."""
    with writing(ctx, audit=False) as (services, conn):
        org = get_org(conn, org_ref)
        transfer = audited.top_up(
            conn, CLI_ACTOR, services.clock(), org.id, kind, amount, idempotency_key=idempotency_key
        )
        wallet = get_wallet(conn, org.id, kind)
    verb = "already topped up (replayed, nothing moved)" if transfer.replayed else "topped up"
    click.echo(f"{verb}: {format_usd(transfer.amount_micros)} into {org.name}'s {kind} wallet, transfer {transfer.id}")
    click.echo(f"{kind} wallet: {format_usd(wallet.balance.available_micros)} available")


# --- receipts ----------------------------------------------------------------------------


@main.group()
def receipts() -> None:
    """What each request did and what it cost."""


@receipts.command("list")
@click.option("--key", "key_ref", default=None, help="Only this key's receipts (key id or prefix).")
@click.option("--org", "org_ref", default=None, help="Only this org's receipts (name or id).")
@click.option(
    "--status",
    type=click.Choice(RECEIPT_STATUSES),
    default=None,
    help="Only succeeded, failed or interrupted requests.",
)
@click.option("--model", default=None, help="Only requests for this model.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True, help="At most this many.")
@click.pass_context
def receipts_list(
    ctx: click.Context, key_ref: str | None, org_ref: str | None, status: str | None, model: str | None, limit: int
) -> None:
    """Receipts, newest first: time, request id, key, model, status, tokens, charge, who caused a failure."""
    with reading(ctx) as (_, conn):
        key_id = get_key(conn, key_ref).id if key_ref else None
        org_id = get_org(conn, org_ref).id if org_ref else None
        page = list_receipts(conn, key_id=key_id, org_id=org_id, status=status, model=model, limit=limit)
        key_names = {k.id: k.name for k in list_keys(conn, org_id)}
    rows = [
        (
            r["created_at"][:19].replace("T", " "),
            r["request_id"],
            key_names.get(r["key_id"] or "", r["key"]),
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
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as GET /v1/receipts/{id} returns it.")
@click.pass_context
def receipts_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """One receipt: what the request asked, which routes it tried, what it cost, and why it failed."""
    with reading(ctx) as (_, conn):
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
