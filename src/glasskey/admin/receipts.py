"""Admin endpoints for receipts: every request of every key, success or failure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from glasskey.admin.common import error_responses, list_body
from glasskey.keys.secret import PREFIX as KEY_PREFIX
from glasskey.keys.service import get_key
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
            "`cursor` set to the `next_cursor` of the previous page; `next_cursor` is null on the last page."
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
        return list_body(page.data, next_cursor=page.next_cursor, has_more=page.next_cursor is not None)

    @router.get(
        "/receipts/{request_id}",
        summary="Get a receipt",
        description=(
            "One request's receipt: key, org, model, settlement, route and every attempt, tokens, unit prices, "
            "charge, latency, status, error source and message, and the ledger transfer id."
        ),
        responses=error_responses(404),
    )
    def read_receipt(request_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return get_receipt(conn, request_id)

    return router
