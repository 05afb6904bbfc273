"""``glasskey users | members | tokens | audit``: people's accounts, org members, access tokens, the audit log.

The CLI acts as the operator (it holds the database), and every change it makes is written to the
audit log as the operator's, from ``cli``. Passwords are typed at a hidden prompt, never given as
an argument (which shell history and ``ps`` would keep); a new token is printed once.
"""

from __future__ import annotations

from datetime import timedelta

import click

from glasskey.cli.base import CLI_ACTOR, main, reading, table, writing
from glasskey.orgs.service import get_org
from glasskey.people import offboarding
from glasskey.people.audit import list_events, record, verify
from glasskey.people.members import add_member, list_members
from glasskey.people.roles import OPERATOR, ROLES
from glasskey.people.tokens import TOKEN_LIFETIME_MAX, create_token, get_token, list_tokens, revoke_token
from glasskey.people.totp import reset_totp
from glasskey.people.users import create_user, get_user, list_users

ROLE_CHOICE = click.Choice(list(ROLES))


@main.group()
def users() -> None:
    """People's accounts (email and password, optional second factor)."""


@users.command("create")
@click.option("--email", required=True, help="The account's email, its sign-in name.")
@click.option("--operator", is_flag=True, help="An operator account: may do everything, like the admin token.")
@click.password_option(help="Asked at a hidden prompt, twice.")
@click.pass_context
def users_create(ctx: click.Context, email: str, operator: bool, password: str) -> None:
    """Create an account."""
    with writing(ctx, audit=False) as (services, conn):
        user = create_user(conn, email, password, services.clock(), is_operator=operator)
        record(conn, CLI_ACTOR, "user.create", services.clock(), target=user.email, after=user.public())
    click.echo(f"created {'operator ' if operator else ''}account {user.email} ({user.id})")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """Every account; never a password hash."""
    with reading(ctx) as (_services, conn):
        rows = [
            (u.email, u.id, "yes" if u.is_operator else "", "on" if u.totp_enabled else "", u.status)
            for u in list_users(conn)
        ]
    click.echo(table(["email", "id", "operator", "totp", "status"], rows))


@users.command("reset-totp")
@click.argument("email")
@click.pass_context
def users_reset_totp(ctx: click.Context, email: str) -> None:
    """Turn off an account's second factor (a lost device): it then signs in with the password alone."""
    with writing(ctx, audit=False) as (services, conn):
        user = get_user(conn, email)
        reset_totp(conn, user.id)
        record(conn, CLI_ACTOR, "user.totp_reset", services.clock(), target=user.email)
    click.echo(f"the second factor of {user.email} is off: they sign in with the password and may set up a new one")


@main.group()
def members() -> None:
    """Who belongs to an org, with which role."""


@members.command("add")
@click.option("--org", "org_ref", required=True, help="Org name or id.")
@click.option("--email", required=True, help="An existing account.")
@click.option("--role", type=ROLE_CHOICE, required=True, help="The role in the org.")
@click.pass_context
def members_add(ctx: click.Context, org_ref: str, email: str, role: str) -> None:
    """Add an account to an org with a role."""
    with writing(ctx, audit=False) as (services, conn):
        org = get_org(conn, org_ref)
        member = add_member(conn, OPERATOR, org.id, get_user(conn, email).id, role, services.clock())
        record(
            conn, CLI_ACTOR, "member.add", services.clock(), org_id=org.id, target=member.email, after=member.public()
        )
    click.echo(f"{member.email} is now {member.role} of {org.name}")


@members.command("list")
@click.option("--org", "org_ref", required=True, help="Org name or id.")
@click.pass_context
def members_list(ctx: click.Context, org_ref: str) -> None:
    """An org's members and their roles."""
    with reading(ctx) as (_services, conn):
        org = get_org(conn, org_ref)
        rows = [(m.email, m.user_id, m.role) for m in list_members(conn, org.id)]
    click.echo(table(["email", "user id", "role"], rows))


@members.command("remove")
@click.option("--org", "org_ref", required=True, help="Org name or id.")
@click.option("--email", required=True, help="The member who leaves.")
@click.option(
    "--hand",
    "handovers",
    multiple=True,
    metavar="KEY_ID=EMAIL",
    help="Hand a service key to another member; repeat it. Service keys not named are revoked.",
)
@click.option("--yes", is_flag=True, help="Carry out the plan without asking.")
@click.pass_context
def members_remove(ctx: click.Context, org_ref: str, email: str, handovers: tuple[str, ...], yes: bool) -> None:
    """Offboard a member: show what happens to their keys and tokens, then do it once confirmed."""
    with reading(ctx) as (_services, conn):
        org = get_org(conn, org_ref)
        leaver = get_user(conn, email)
        decisions: dict[str, str] = {}
        for handover in handovers:
            key_id, _, receiver = handover.partition("=")
            decisions[key_id] = get_user(conn, receiver).id
        plan = offboarding.preview(conn, OPERATOR, org.id, leaver.id, decisions)
    for personal in plan.personal_keys:
        click.echo(f"revoke   personal key {personal['prefix']} ({personal['name']})")
    for service in plan.service_keys:
        to = f" to {service['to_user_id']}" if service["to_user_id"] else ""
        click.echo(f"{service['action']:<8} service key {service['prefix']} ({service['service']}){to}")
    click.echo(f"revoke   every access token of {plan.email} for {org.name}, and remove the membership")
    if not yes:
        click.confirm("Carry this out?", abort=True)
    with writing(ctx, audit=False) as (services, conn):
        offboarding.confirm(conn, CLI_ACTOR, OPERATOR, org.id, leaver.id, decisions, plan.fingerprint, services.clock())
    click.echo(f"{plan.email} left {org.name}")


@main.group()
def tokens() -> None:
    """Personal access tokens for the admin API (gkp-...)."""


@tokens.command("create")
@click.option("--email", required=True, help="The person the token acts as.")
@click.option("--org", "org_ref", default=None, help="Org name or id (leave out for an operator token).")
@click.option("--role", default=None, help="Default: the person's role in the org (or operator).")
@click.option("--name", default="cli", show_default=True, help="A name to recognise the token by.")
@click.option(
    "--days",
    type=click.IntRange(1, TOKEN_LIFETIME_MAX.days),
    default=30,
    show_default=True,
    help="Days until it expires.",
)
@click.pass_context
def tokens_create(ctx: click.Context, email: str, org_ref: str | None, role: str | None, name: str, days: int) -> None:
    """Create a token; it is printed once."""
    with writing(ctx, audit=False) as (services, conn):
        user = get_user(conn, email)
        org_id = get_org(conn, org_ref).id if org_ref else None
        held = next((m.role for m in list_members(conn, org_id) if m.user_id == user.id), None) if org_id else None
        token, full = create_token(
            conn,
            pepper=services.pepper,
            user_id=user.id,
            org_id=org_id,
            role=role or held or (OPERATOR if org_id is None else "member"),
            name=name,
            now=services.clock(),
            lifetime=timedelta(days=days),
        )
        record(
            conn, CLI_ACTOR, "token.create", services.clock(), org_id=org_id, target=token.prefix, after=token.public()
        )
    click.echo(f"created token {token.prefix} for {user.email} ({token.role}, expires {token.expires_at.isoformat()})")
    click.echo(full)
    click.echo("Store it now: this token is shown once and cannot be shown again.", err=True)


@tokens.command("list")
@click.option("--email", required=True, help="Whose tokens.")
@click.pass_context
def tokens_list(ctx: click.Context, email: str) -> None:
    """A person's tokens; never a secret."""
    with reading(ctx) as (_services, conn):
        found = list_tokens(conn, get_user(conn, email).id)
    rows = [
        (t.prefix, t.id, t.org_id, t.role, t.name, t.expires_at.isoformat(), "revoked" if t.revoked_at else "")
        for t in found
    ]
    click.echo(table(["prefix", "id", "org", "role", "name", "expires", "status"], rows))


@tokens.command("revoke")
@click.argument("token_ref")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_ref: str) -> None:
    """Revoke a token by id or prefix (gkp-<public id>)."""
    with writing(ctx, audit=False) as (services, conn):
        token = revoke_token(conn, get_token(conn, token_ref), services.clock())
        record(conn, CLI_ACTOR, "token.revoke", services.clock(), org_id=token.org_id, target=token.prefix)
    click.echo(f"revoked {token.prefix}")


@main.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("list")
@click.option("--org", "org_ref", default=None, help="Only this org's events.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="At most this many entries.")
@click.pass_context
def audit_list(ctx: click.Context, org_ref: str | None, limit: int) -> None:
    """The newest events: when, who, what, outcome."""
    with reading(ctx) as (_services, conn):
        org_id = get_org(conn, org_ref).id if org_ref else None
        events = list_events(conn, org_id=org_id, limit=limit)
    rows = [(e["seq"], e["at"], e["actor"], e["action"], e["target"], e["outcome"], e["address"]) for e in events]
    click.echo(table(["seq", "at", "actor", "action", "target", "outcome", "address"], rows))


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Walk the hash chain; exit 1 if any event was edited or removed."""
    with reading(ctx) as (_services, conn):
        problems = verify(conn)
    for problem in problems:
        click.echo(problem)
    if problems:
        raise click.ClickException(f"the audit log is not intact: {len(problems)} problem(s)")
    click.echo("the audit log is intact")
