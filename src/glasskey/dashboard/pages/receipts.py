"""Receipts: a filtered table with totals, one receipt with its attempt timeline, and CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from sqlalchemy import Connection
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from glasskey.dashboard.queries import PAGE_MAX, ReceiptFilter, receipt_totals, search_receipts
from glasskey.dashboard.web import Dashboard
from glasskey.errors import ClientError, Source
from glasskey.keys.service import get_key, list_keys
from glasskey.money import format_micros
from glasskey.orgs.service import get_org
from glasskey.people.holders import holder_views
from glasskey.pricing.catalog import list_models
from glasskey.receipts.records import get_receipt

PAGE = 50
EXPORT_ROWS_MAX = 100_000
STATUSES = ("succeeded", "failed", "interrupted")
SOURCES: tuple[str, ...] = get_args(Source)
SETTLEMENTS = ("official", "routed")
CSV_COLUMNS = (
    "request_id", "created_at", "status", "http_status", "key", "key_id", "org_id", "endpoint", "requested_model",
    "settlement", "wallet_kind", "provider", "upstream_model", "route_id", "attempt_count", "stream",
    "input_tokens", "output_tokens", "cached_tokens", "usage_source", "input_price_per_mtok_micros",
    "output_price_per_mtok_micros", "cached_price_per_mtok_micros", "hold_micros", "charge_micros", "charge_usd",
    "latency_ms", "ttft_ms", "error_source", "error_code", "error_message", "transfer_id", "flags",
    "held_by", "holder_kind", "responsible",
)  # fmt: skip
# A spreadsheet runs a cell that starts with one of these as a formula; upstream messages are untrusted.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ClientError(f"`{name}` must be a date like 2026-01-31", param=name) from None


def _choice(params: QueryParams, name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in allowed:
        raise ClientError(f"`{name}` must be one of {', '.join(allowed)}", param=name)
    return value


def read_filter(conn: Connection, params: QueryParams) -> ReceiptFilter:
    """The filter a receipts URL asks for; ``since`` and ``until`` are whole UTC days, both included."""
    key_id = params.get("key") or None
    if key_id is not None:
        key_id = get_key(conn, key_id).id  # an id or a prefix `gk-…`, as receipts show keys
    since = params.get("since") or None
    until = params.get("until") or None
    return ReceiptFilter(
        key_id=key_id,
        model=params.get("model") or None,
        status=_choice(params, "status", STATUSES),
        error_source=_choice(params, "source", SOURCES),
        settlement=_choice(params, "settlement", SETTLEMENTS),
        since=datetime.combine(_day(since, "since"), time(), UTC) if since else None,
        until=datetime.combine(_day(until, "until") + timedelta(days=1), time(), UTC) if until else None,
    )


def csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_line(row: dict[str, Any], holder: dict[str, Any] | None = None) -> dict[str, Any]:
    """One receipt as a CSV row; ``holder`` is its key's ``people.holders.holder_view`` (None: no key)."""
    values = {name: row.get(name) for name in CSV_COLUMNS}
    values["held_by"] = holder["name"] if holder else ""
    values["holder_kind"] = holder["kind"] if holder else ""
    values["responsible"] = holder["responsible"] if holder else ""
    values["created_at"] = row["created_at"].astimezone(UTC).isoformat()
    values["attempt_count"] = len(row["attempts"] or [])
    values["charge_usd"] = format_micros(row["charge_micros"])
    values["flags"] = " ".join(row["flags"] or [])
    return {name: csv_cell(value) for name, value in values.items()}


def timeline(attempts: list[dict[str, Any]], total_ms: int) -> list[dict[str, Any]]:
    """Attempts as bars on one time axis: they ran one after another, each from where the last ended."""
    latencies = [max(0, int(attempt.get("latency_ms") or 0)) for attempt in attempts]
    scale = max(total_ms, sum(latencies), 1)
    bars, start_ms = [], 0
    for attempt, latency in zip(attempts, latencies, strict=True):
        bars.append(
            {
                **attempt,
                "start_ms": start_ms,
                "offset_pct": round(100 * start_ms / scale, 2),
                "width_pct": max(0.5, round(100 * latency / scale, 2)),
            }
        )
        start_ms += latency
    return bars


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def receipts_page(request: Request) -> Response:
        params = request.query_params
        before_text = params.get("before")
        if before_text and not before_text.isdigit():
            raise ClientError("`before` is not a page this table made", param="before")

        def work(conn: Connection) -> dict[str, Any]:
            where = read_filter(conn, params)
            page = search_receipts(conn, where, before=int(before_text) if before_text else None, limit=PAGE)
            keys = list_keys(conn)
            filters = {name: params.get(name, "") for name in ("key", "model", "status", "source", "settlement")}
            filters.update(since=params.get("since", ""), until=params.get("until", ""))
            query = urlencode([(name, value) for name, value in params.multi_items() if name != "before" and value])
            return {
                "nav": "receipts",
                "rows": page.rows,
                "next_before": page.next_before,
                "paged": bool(before_text),
                "totals": receipt_totals(conn, where),
                "filters": filters,
                "filtered": any(filters.values()),
                "query": query,
                "keys": keys,
                "key_names": {key.id: key.name for key in keys},
                "holders": holder_views(conn, [row["key_id"] for row in page.rows if row["key_id"]]),
                "models": [model.name for model in list_models(conn)],
                "statuses": STATUSES,
                "sources": SOURCES,
                "settlements": SETTLEMENTS,
            }

        return dash.render(request, "receipts.html", await dash.read(work))

    async def receipts_csv(request: Request) -> Response:
        where = await dash.read(lambda conn: read_filter(conn, request.query_params))

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
            writer.writeheader()
            before, written = None, 0
            while written < EXPORT_ROWS_MAX:
                # One short read transaction per batch, so a long export never holds the database.
                with services.db.read() as conn:
                    page = search_receipts(conn, where, before=before, limit=PAGE_MAX)
                    holders = holder_views(conn, [row["key_id"] for row in page.rows if row["key_id"]])
                for row in page.rows:
                    writer.writerow(csv_line(row, holders.get(row["key_id"] or "")))
                written += len(page.rows)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if page.next_before is None:
                    return
                before = page.next_before

        stamp = services.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Content-Disposition": f'attachment; filename="glasskey-receipts-{stamp}.csv"'}
        return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)

    async def receipt_page(request: Request) -> Response:
        request_id = request.path_params["request_id"]

        def work(conn: Connection) -> dict[str, Any]:
            receipt = get_receipt(conn, request_id)
            key = get_key(conn, receipt["key_id"]) if receipt["key_id"] else None
            org = get_org(conn, receipt["org_id"]) if receipt["org_id"] else None
            bars = timeline(receipt["attempts"] or [], int(receipt["latency_ms"] or 0))
            holder = holder_views(conn, [key.id])[key.id] if key is not None else None
            return {"nav": "receipts", "receipt": receipt, "key": key, "holder": holder, "org": org, "attempts": bars}

        return dash.render(request, "receipt.html", await dash.read(work))

    return [
        Route("/receipts", receipts_page, methods=["GET"]),
        Route("/receipts.csv", receipts_csv, methods=["GET"]),
        Route("/receipts/{request_id}", receipt_page, methods=["GET"]),
    ]
