"""Admin endpoints for orgs, their wallets, top-ups, the ledger and its audit."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field, StrictInt

from glasskey.admin.access import actor_of
from glasskey.admin.common import Body, WalletKind, error_responses, list_body, transfer_view
from glasskey.ledger import audit, list_transfers
from glasskey.limits import TOP_UP_MAX_MICROS
from glasskey.orgs.service import get_org, get_wallet, list_orgs, list_wallets
from glasskey.people import changes as audited
from glasskey.services import Services

# The transfers table stores the key as ``topup:<key>`` in a 200-character column.
IDEMPOTENCY_KEY_MAX_LENGTH = 190
LEDGER_PAGE_MAX = 500
AUDIT_PROBLEMS_MAX = 200


class CreateOrgBody(Body):
    name: str = Field(min_length=1, max_length=200, description="unique name of the team")


class TopUpBody(Body):
    amount_micros: StrictInt = Field(
        gt=0, le=TOP_UP_MAX_MICROS, description="money added to the wallet, in micro-dollars"
    )
    memo: str = Field(default="", max_length=400, description="why the money was added")


def orgs_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["orgs and wallets"])

    @router.get("/orgs", summary="List orgs", description="Every org, by name.")
    def read_orgs() -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body([org.public() for org in list_orgs(conn)])

    @router.post(
        "/orgs",
        status_code=201,
        summary="Create an org",
        description="Creates the org with its two wallets, `credit` and `routed`, both empty with a floor of 0.",
        responses=error_responses(409),
    )
    def create(body: CreateOrgBody, request: Request) -> dict[str, Any]:
        with services.db.write() as conn:
            org = audited.create_org(conn, actor_of(request), services.clock(), body.name)
            wallets = list_wallets(conn, org.id)
        return {**org.public(), "wallets": [wallet.public() for wallet in wallets]}

    @router.get(
        "/orgs/{org_id}",
        summary="Get an org",
        description="One org (by id or by name) with its wallets and their balances.",
        responses=error_responses(404),
    )
    def read_org(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            wallets = list_wallets(conn, org.id)
        return {**org.public(), "wallets": [wallet.public() for wallet in wallets]}

    @router.get(
        "/orgs/{org_id}/wallets",
        summary="List an org's wallets",
        description="Both wallets of the org with posted, held and available balances in micros.",
        responses=error_responses(404),
    )
    def read_wallets(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            return list_body([wallet.public() for wallet in list_wallets(conn, org.id)])

    @router.get(
        "/orgs/{org_id}/wallets/{kind}",
        summary="Get one wallet",
        description="The `credit` or `routed` wallet of the org, with its balances in micros.",
        responses=error_responses(404),
    )
    def read_wallet(org_id: str, kind: WalletKind) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            return get_wallet(conn, org.id, kind).public()

    @router.post(
        "/orgs/{org_id}/wallets/{kind}/topups",
        status_code=201,
        summary="Top up a wallet",
        description=(
            "Adds money to the wallet in one posted ledger transfer. Send an `Idempotency-Key` header to make "
            "retries safe: a replay answers 200 with the first transfer and `replayed: true`, moving nothing; "
            "reusing the key for a different amount or wallet is a 409."
        ),
        responses={
            200: {"description": "A replay of an earlier top-up with the same `Idempotency-Key`."},
            **error_responses(404, 409),
        },
    )
    def create_topup(
        org_id: str,
        kind: WalletKind,
        body: TopUpBody,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
        ] = None,
    ) -> JSONResponse:
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            transfer = audited.top_up(
                conn,
                actor_of(request),
                services.clock(),
                org.id,
                kind,
                body.amount_micros,
                idempotency_key=idempotency_key,
                memo=body.memo,
            )
            wallet = get_wallet(conn, org.id, kind)
        content = {
            "object": "topup",
            "transfer": transfer_view(transfer),
            "replayed": transfer.replayed,
            "wallet": wallet.public(),
        }
        return JSONResponse(content, status_code=200 if transfer.replayed else 201)

    @router.get(
        "/orgs/{org_id}/wallets/{kind}/ledger",
        summary="List a wallet's ledger transfers",
        description=(
            "Transfers that moved money in or out of the wallet, newest first. Page with `before` set to the "
            "`created_at` of the last transfer of the previous page."
        ),
        responses=error_responses(404),
    )
    def read_ledger(
        org_id: str,
        kind: WalletKind,
        limit: Annotated[int, Query(ge=1, le=LEDGER_PAGE_MAX)] = 100,
        before: Annotated[AwareDatetime | None, Query(description="only transfers created before this time")] = None,
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            account_id = get_wallet(conn, org.id, kind).account_id
            # SQLite compares stored times as UTC text, so the bound must be in UTC too.
            before_utc = before.astimezone(UTC) if before is not None else None
            transfers = list_transfers(conn, account_id, limit=limit, before=before_utc)
        return list_body([transfer_view(transfer) for transfer in transfers])

    @router.get(
        "/ledger/audit",
        tags=["ledger"],
        summary="Audit the ledger",
        description=(
            "Checks every ledger invariant from the rows themselves: debits equal credits, account counters "
            "equal their transfers, no wallet below its floor, and receipt charges equal posted charges. "
            f"`ok` is false when a problem was found; at most {AUDIT_PROBLEMS_MAX} problems are listed."
        ),
    )
    def read_audit() -> dict[str, Any]:
        with services.db.read() as conn:
            report = audit(conn)
        return {
            "object": "ledger.audit",
            "ok": report.ok,
            "problems": report.problems[:AUDIT_PROBLEMS_MAX],
            "problem_count": len(report.problems),
            "accounts_checked": report.accounts_checked,
            "transfers_checked": report.transfers_checked,
            "receipts_checked": report.receipts_checked,
            "receipt_charges_micros": report.receipt_charges_micros,
            "posted_charges_micros": report.posted_charges_micros,
        }

    return router
