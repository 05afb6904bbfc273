"""Wallets: each org's balances (posted, held, available), its ledger, and top-ups.

A top-up form carries an idempotency key made when the form was drawn, so sending it twice
(a double click, a resent form) adds the money once.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.forms import form_text, read_top_up_form
from glasskey.dashboard.web import Dashboard, actor_of, flash, read_form, redirect
from glasskey.errors import ClientError
from glasskey.ledger import Transfer, list_transfers
from glasskey.money import format_usd
from glasskey.orgs.service import WALLET_KINDS, Org, get_org, get_wallet, list_orgs, list_wallets
from glasskey.people import changes as audited

LEDGER_PAGE = 50


def ledger_line(transfer: Transfer, account_id: str) -> dict[str, Any]:
    """One ledger row as the wallet sees it: money in or out, and how much actually moved (never negative)."""
    incoming = transfer.credit_account_id == account_id
    if transfer.status == "posted":
        moved = transfer.posted_amount_micros or 0
    elif transfer.status == "pending":
        moved = transfer.amount_micros
    else:  # voided or expired: the hold was released and nothing moved
        moved = 0
    return {
        "transfer": transfer,
        "direction": "in" if incoming else "out",
        "moved_micros": moved,
        "held_micros": transfer.amount_micros,
    }


def choose_org(orgs: list[Org], wanted: str | None) -> Org | None:
    for org in orgs:
        if wanted in (org.id, org.name):
            return org
    return orgs[0] if orgs else None


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def wallets_page(request: Request) -> Response:
        params = request.query_params
        before_text = params.get("before")
        try:
            before = datetime.fromisoformat(before_text) if before_text else None
        except ValueError:
            raise ClientError("`before` is not a time this page made", param="before") from None
        return await render_wallets(request, params.get("org"), params.get("kind", "routed"), before)

    async def render_wallets(
        request: Request,
        org_ref: str | None,
        kind: str,
        before: datetime | None = None,
        *,
        refused: dict[str, Any] | None = None,
        status_code: int = 200,
    ) -> Response:
        """The wallets page; ``refused`` carries a refused top-up's field errors and values, shown by its form."""
        if kind not in WALLET_KINDS:
            kind = "routed"

        def work(conn: Connection) -> dict[str, Any]:
            orgs = list_orgs(conn)
            org = choose_org(orgs, org_ref)
            context: dict[str, Any] = {"nav": "wallets", "orgs": orgs, "org": org, "kind": kind}
            if org is None:
                return context
            wallet = get_wallet(conn, org.id, kind)
            transfers = list_transfers(conn, wallet.account_id, limit=LEDGER_PAGE + 1, before=before)
            more = len(transfers) > LEDGER_PAGE
            lines = [ledger_line(t, wallet.account_id) for t in transfers[:LEDGER_PAGE]]
            older = (
                "/wallets?"
                + urlencode({"org": org.id, "kind": kind, "before": lines[-1]["transfer"].created_at.isoformat()})
                if more
                else None
            )
            return {
                **context,
                "wallets": list_wallets(conn, org.id),
                "wallet": wallet,
                "lines": lines,
                "older": older,
                "paged": before is not None,
                "idempotency_key": secrets.token_urlsafe(16),
            }

        context = {**await dash.read(work), "topup_errors": {}, "topup_values": {}, **(refused or {})}
        return dash.render(request, "wallets.html", context, status_code=status_code)

    async def add_top_up(request: Request) -> Response:
        form = await read_form(request)
        draft = read_top_up_form(form)
        if isinstance(draft, dict):
            # Shown as errors next to their fields, with what was typed, never as a notice of success.
            values = {name: form_text(form, name) for name in ("amount", "memo")}
            refused = {"topup_errors": draft, "topup_values": values}
            kind = form_text(form, "kind") or "routed"
            return await render_wallets(request, form_text(form, "org_id"), kind, refused=refused, status_code=400)

        actor = actor_of(request)

        def work(conn: Connection) -> tuple[Org, bool]:
            org = get_org(conn, draft.org_id)
            transfer = audited.top_up(
                conn,
                actor,
                services.clock(),
                org.id,
                draft.kind,
                draft.amount_micros,
                idempotency_key=draft.idempotency_key,
                memo=draft.memo,
            )
            return org, transfer.replayed

        org, replayed = await dash.write(work)
        if replayed:
            flash(request, "This top-up was already made; no money moved a second time.")
        else:
            flash(request, f"Added {format_usd(draft.amount_micros)} to the {draft.kind} wallet of {org.name}.")
        return redirect("/wallets?" + urlencode({"org": org.id, "kind": draft.kind}))

    async def add_org(request: Request) -> Response:
        form = await read_form(request)
        name = form_text(form, "name")
        actor = actor_of(request)
        org = await dash.write(lambda conn: audited.create_org(conn, actor, services.clock(), name))
        flash(request, f"Org {org.name} is ready with an empty credit and routed wallet: top one up below.")
        return redirect("/wallets?" + urlencode({"org": org.id}))

    return [
        Route("/wallets", wallets_page, methods=["GET"]),
        Route("/wallets/topup", add_top_up, methods=["POST"]),
        Route("/orgs", add_org, methods=["POST"]),
    ]
