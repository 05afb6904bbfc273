"""``glasskey orgs``: create, list."""

from __future__ import annotations

import click

from glasskey.cli.base import CLI_ACTOR, main, reading, table, writing
from glasskey.orgs.service import list_orgs
from glasskey.people import changes


@main.group()
def orgs() -> None:
    """Teams that own wallets and keys."""


@orgs.command("create")
@click.argument("name")
@click.pass_context
def orgs_create(ctx: click.Context, name: str) -> None:
    """Create an org with empty credit and routed wallets (top them up with wallets topup)."""
    with writing(ctx, audit=False) as (admin, conn):
        org = changes.create_org(conn, CLI_ACTOR, admin.clock(), name)
    click.echo(f"created org {org.name} ({org.id}) with empty credit and routed wallets")


@orgs.command("list")
@click.pass_context
def orgs_list(ctx: click.Context) -> None:
    """Every org, oldest first."""
    with reading(ctx) as (_, conn):
        rows = [(o.id, o.name, o.created_at.isoformat(timespec="seconds")) for o in list_orgs(conn)]
    click.echo(table(["ID", "NAME", "CREATED"], rows) if rows else "No orgs.")
