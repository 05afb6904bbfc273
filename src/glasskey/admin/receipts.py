"""Admin endpoints for receipts: every request of every key, success or failure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from glasskey.admin.common import error_responses, list_body
from glasskey.keys.secret import PREFIX as KEY_PREFIX
from glasskey.keys.service import get_key
from glasskey.people.holders import with_holders
from glasskey.receipts.records import MAX_PAGE, get_receipt, list_receipts
from glasskey.services import Services

# "interrupted": its gateway process died mid-request; a later process voided its hold (gateway.instances).
ReceiptStatus = Literal["succeeded", "failed", "interrupted"]
ErrorSource = Literal["client", "key", "model", "wallet", "budget", "route", "upstream", "gateway"]


def receipts_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["receipts"])

    @router.get(
        "/receipts",
        summary="List receipts",
        description=(
            "Receipts newest first, filtered by key, org, status, requested model or error source. Page with "
            "`cursor` set to the `next_cursor` of the previous page; `next_cursor` is null on the last page. Each "
            "receipt's `holder` says who holds its key and who answers for it."
        ),
        responses=error_responses(404),
    )
    def read_receipts(
        key_id: Annotated[str | None, Query(description="a key id or its prefix `gk-<public id>`")] = None,
        org_id: str | None = None,
        status: ReceiptStatus | None = None,
        model: Annotated[str | None, Query(description="the requested model")] = None,
        error_source: Annotated[ErrorSource | None, Query(description="who caused the failure")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            # Receipts show a key as its prefix, so an operator may filter by that prefix too.
            if key_id is not None and key_id.startswith(f"{KEY_PREFIX}-"):
                key_id = get_key(conn, key_id).id
            page = list_receipts(
                conn,
                key_id=key_id,
                org_id=org_id,
                status=status,
                model=model,
                error_source=error_source,
                cursor=cursor,
                limit=limit,
            )
            data = with_holders(conn, page.data)
        return list_body(data, next_cursor=page.next_cursor, has_more=page.next_cursor is not None)

    @router.get(
        "/receipts/{request_id}",
        summary="Get a receipt",
        description=(
            "One request's receipt: key, org, model, settlement, route and every attempt, tokens, unit prices, "
            "charge, latency, status, error source and message, the ledger transfer id, and `holder`: who holds the "
            "key (a person or a service) and who answers for it."
        ),
        responses=error_responses(404),
    )
    def read_receipt(request_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return with_holders(conn, [get_receipt(conn, request_id)])[0]

    return router
