"""The preflight of a research job: what it will call, whether the key may, how long, how much.

It moves no money and leaves no receipt. The cost is the sum of one quote per planned call,
each from ``pricing.quote.quote_request`` — the function behind ``/v1/quote`` — so the preflight's
estimate and maximum are exactly the sums of the answers ``/v1/quote`` gives for the same
bodies. The job is admitted only if every model is allowed and routed, and the wallet and the
key's budgets cover the **sum** of the maxima (one call's quote checks only itself).

Runtime is estimated from the latencies this process measured on the routes that would serve
the calls (``HealthBoard`` p50, and its p95 standing in for p90, which errs long), times the
number of call rounds the plan's parallelism gives; with no measurement yet, a stated default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection

from glasskey.errors import BudgetError, ClientError, GlasskeyError, ModelError, RouteError, WalletError
from glasskey.keys.budget import TOTAL, day_period, get_spend
from glasskey.keys.service import KeyRecord
from glasskey.money import format_micros, format_usd
from glasskey.orgs.service import get_wallet
from glasskey.pricing.catalog import list_models
from glasskey.pricing.quote import quote_request
from glasskey.research import NOTICE
from glasskey.research.inputs import (
    DOCUMENTS_MAX,
    INPUTS_MAX,
    PRICE_FILES_MAX,
    Document,
    PriceFile,
    PricePoint,
    check_question,
    input_error,
    merge_price_files,
    parse_price_csv,
    read_document,
)
from glasskey.research.jobs import StoredFile
from glasskey.research.metrics import MetricsTable, compute_metrics, table_text
from glasskey.research.plan import DEPTH_PASSES, MAP_PARALLELISM, Plan, make_plan
from glasskey.routing.health import HealthBoard
from glasskey.routing.selection import select_routes

DEFAULT_QUICK_MODEL = "gpt-4o-mini"
DEFAULT_DEEP_MODEL = "claude-sonnet-4-5"
# Used only while a route has no measured latency in this process; said so in the preflight.
DEFAULT_CALL_LATENCY_MS = {"map": (2_000, 6_000), "analysis": (10_000, 30_000)}


@dataclass(frozen=True)
class JobSpec:
    question: str
    file_ids: list[str]
    quick_model: str
    deep_model: str
    depth: str
    risk_free_rate: str  # a decimal fraction as text, e.g. "0.02"
    window_start: str | None = None  # ISO dates, inclusive; None takes every aligned date
    window_end: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> JobSpec:
        question = check_question(body.get("question"))
        inputs = body.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ClientError("`inputs` must be an array of file ids from POST /v1/research/files", param="inputs")
        if len(inputs) > INPUTS_MAX:
            raise input_error(f"{len(inputs)} inputs, over the limit of {INPUTS_MAX}")
        depth = body.get("depth", "standard")
        if depth not in DEPTH_PASSES:
            raise ClientError(f"`depth` must be one of {', '.join(DEPTH_PASSES)}", param="depth")
        models = {}
        for field, default in (("quick_model", DEFAULT_QUICK_MODEL), ("deep_model", DEFAULT_DEEP_MODEL)):
            value = body.get(field) or default
            if not isinstance(value, str) or len(value) > 200:
                raise ClientError(f"`{field}` must be a model name", param=field)
            models[field] = value
        rate_text = str(body.get("risk_free_rate", "0"))
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            raise ClientError(
                "`risk_free_rate` must be a decimal fraction, e.g. 0.02", param="risk_free_rate"
            ) from None
        if not rate.is_finite() or not Decimal("-0.5") <= rate <= Decimal("1"):
            raise ClientError("`risk_free_rate` must be between -0.5 and 1 (a fraction a year)", param="risk_free_rate")
        window = [_iso_date(body.get(field), field) for field in ("start", "end")]
        if window[0] and window[1] and window[0] > window[1]:
            raise ClientError("`start` is after `end`", param="start")
        return cls(
            question, list(inputs), models["quick_model"], models["deep_model"], depth, rate_text, window[0], window[1]
        )


def _iso_date(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ClientError(f"`{field}` must be a date, YYYY-MM-DD", param=field) from None


@dataclass(frozen=True)
class Prepared:
    spec: JobSpec
    files: list[StoredFile]
    documents: list[Document]
    table: MetricsTable | None
    figures: str  # the table as the deep model reads it
    plan: Plan


def prepare(spec: JobSpec, files: list[StoredFile]) -> Prepared:
    """Parse every input, compute the figures, and plan the calls (all local, all refusals 400)."""
    prices = [f for f in files if f.kind == "prices"]
    docs = [f for f in files if f.kind == "document"]
    if len(docs) > DOCUMENTS_MAX:
        raise input_error(f"{len(docs)} documents, over the limit of {DOCUMENTS_MAX}")
    if len(prices) > PRICE_FILES_MAX:
        raise input_error(f"{len(prices)} price files, over the limit of {PRICE_FILES_MAX}")
    if not files:
        raise input_error("a job needs at least one price file or document")
    documents = [read_document(f.name, f.content) for f in docs]
    table = None
    if prices:
        parsed = [parse_price_csv(f.name, f.content) for f in prices]
        series = within_window(merge_price_files(parsed), spec.window_start, spec.window_end, sources_of(parsed))
        sources = sources_of(parsed)
        table = compute_metrics(series, risk_free_rate=float(Decimal(spec.risk_free_rate)), sources=sources)
    figures = table_text(table) if table is not None else "(no price data was given)"
    plan = make_plan(
        question=spec.question,
        documents=documents,
        table=figures,
        quick_model=spec.quick_model,
        deep_model=spec.deep_model,
        depth=spec.depth,
    )
    return Prepared(spec, files, documents, table, figures, plan)


def preflight(
    conn: Connection, key: KeyRecord, prepared: Prepared, board: HealthBoard, now: datetime
) -> dict[str, Any]:
    plan = prepared.plan
    models: list[dict[str, Any]] = []
    refusal: tuple[str, str] | None = None
    for role, name in (("quick", plan.quick_model), ("deep", plan.deep_model)):
        entry, problem = _model_entry(conn, key, role, name, board)
        models.append(entry)
        if problem is not None and refusal is None:
            refusal = problem
    per_call: list[dict[str, Any]] = []
    estimate = maximum = 0
    usable = {m["model"] for m in models if m["allowed"] and m["route"] is not None}
    for call in plan.calls:
        if call.model not in usable:
            per_call.append({**call.public(), "estimated_charge_micros": None, "max_charge_micros": None})
            continue
        quote, _ = quote_request(conn, key, call.body, now, board=board)
        estimate += quote.estimated_charge_micros
        maximum += quote.max_charge_micros
        per_call.append(
            {
                **call.public(),
                "estimated_charge_micros": quote.estimated_charge_micros,
                "max_charge_micros": quote.max_charge_micros,
            }
        )
    wallet = get_wallet(conn, key.org_id, key.policy.wallet_kind)
    budgets = _budgets(conn, key, now)
    if refusal is None:
        refusal = _money_refusal(wallet.balance.available_micros, wallet.balance.floor_micros or 0, budgets, maximum)
    admitted = refusal is None
    return {
        "object": "research.preflight",
        "notice": NOTICE,
        "question": plan.question,
        "depth": plan.depth,
        "plan": {"steps": plan.steps(), "calls": per_call},
        "models": models,
        "runtime": runtime_estimate(plan, models, board),
        "cost": {
            "estimated_micros": estimate,
            "max_micros": maximum,
            "estimated_usd": format_micros(estimate),
            "max_usd": format_micros(maximum),
            "complete": all(c["max_charge_micros"] is not None for c in per_call),
            "how": "the sum of one quote per planned call, as POST /v1/quote computes it; the workflow itself is free",
        },
        "wallet": {
            "kind": wallet.kind,
            "available_micros": wallet.balance.available_micros,
            "available_usd": format_micros(wallet.balance.available_micros),
        },
        "budgets": budgets,
        "data": _data_summary(prepared),
        "admitted": admitted,
        "reason": "the key may call every model and its wallet and budgets cover the maximum"
        if refusal is None
        else refusal[1],
        "refused_by": None if refusal is None else refusal[0],
    }


def sources_of(parsed: list[PriceFile]) -> dict[str, str]:
    return {symbol: p.name for p in parsed for symbol in p.series}


def within_window(
    series: dict[str, list[PricePoint]], start: str | None, end: str | None, sources: dict[str, str]
) -> dict[str, list[PricePoint]]:
    """Each symbol's points inside the window; a symbol left with fewer than two is refused."""
    low = date.fromisoformat(start) if start else date.min
    high = date.fromisoformat(end) if end else date.max
    kept = {symbol: [p for p in points if low <= p.day <= high] for symbol, points in series.items()}
    for symbol, points in kept.items():
        if len(points) < 2:
            raise input_error(
                f"{sources[symbol]}: {symbol} has fewer than two price points from {start or 'the start'} "
                f"to {end or 'the end'}",
                file=sources[symbol],
                column="date",
            )
    return kept


def _model_entry(
    conn: Connection, key: KeyRecord, role: str, name: str, board: HealthBoard
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    entry: dict[str, Any] = {"role": role, "model": name, "allowed": True, "refused_by": None, "route": None}
    try:
        selection = select_routes(conn, key, name, board=board)
    except ModelError as error:
        entry["allowed"] = False
        entry["message"] = error.message
        if error.code == "model_not_allowed":
            entry["refused_by"] = "policy.allowed_models"
            entry["alternatives"] = [
                m.name for m in list_models(conn) if m.kind == "chat" and key.policy.allows(m.name) and m.name != name
            ]
        else:
            entry["refused_by"] = "catalog"
        return entry, ("model", f"{role} model {name}: {error.message}")
    except RouteError as error:
        entry["message"] = error.message
        return entry, ("route", f"{role} model {name}: {error.message}")
    route = selection.primary
    snapshot = board.snapshot(route.id)
    entry["route"] = {
        "id": route.id,
        "provider": route.provider,
        "upstream_model": route.upstream_model,
        "settlement": route.settlement,
    }
    entry["settlement"] = key.policy.settlement
    entry["backup_routes"] = [r.id for r in selection.usable[1:]]
    entry["health"] = {
        "circuit": snapshot["circuit"],
        "success_rate": snapshot["success_rate"],
        "requests": snapshot["requests"],
        "latency_ms": snapshot["latency_ms"],
    }
    return entry, None


def runtime_estimate(plan: Plan, models: list[dict[str, Any]], board: HealthBoard) -> dict[str, Any]:
    by_model = {m["model"]: m for m in models}
    p50 = p90 = 0
    how: list[str] = []
    for step in plan.steps():
        if not step["calls"]:
            continue
        rounds = -(-step["calls"] // step["parallelism"])
        model = by_model[step["model"]]
        latency = (model.get("health") or {}).get("latency_ms") or {}
        if latency.get("p50") is not None:
            call_p50, call_p90 = int(latency["p50"]), int(latency["p95"])
            how.append(
                f"{step['name']}: {step['calls']} call(s) in {rounds} round(s) of {step['parallelism']} x the "
                f"measured latency of route {model['route']['id']} over {model['health']['requests']} recent "
                f"request(s) (p50 {call_p50} ms; p95 {call_p90} ms stands in for p90)"
            )
        else:
            call_p50, call_p90 = DEFAULT_CALL_LATENCY_MS[step["name"]]
            where = f"route {model['route']['id']}" if model.get("route") else f"model {model['model']}"
            how.append(
                f"{step['name']}: {step['calls']} call(s) in {rounds} round(s) of {step['parallelism']}; no latency "
                f"measured yet for {where} in this process, so glasskey's default of {call_p50} ms p50 / "
                f"{call_p90} ms p90 per call (an assumption, not a measurement)"
            )
        p50 += rounds * call_p50
        p90 += rounds * call_p90
    how.append(
        "local steps (parsing, figures, report) take milliseconds; retries of malformed answers are not included"
    )
    return {"p50_ms": p50, "p90_ms": p90, "how": how, "parallelism": MAP_PARALLELISM}


def _budgets(conn: Connection, key: KeyRecord, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, period, limit in (
        ("total", TOTAL, key.policy.budget_total_micros),
        ("daily", day_period(now), key.policy.budget_daily_micros),
    ):
        if limit is None:
            out[label] = None
            continue
        spend = get_spend(conn, key.id, period)
        out[label] = {
            "limit_micros": limit,
            "spent_micros": spend.spent_micros,
            "held_micros": spend.held_micros,
            "left_micros": limit - spend.spent_micros - spend.held_micros,
        }
    return out


def _money_refusal(available: int, floor: int, budgets: dict[str, Any], maximum: int) -> tuple[str, str] | None:
    if available - maximum < floor:
        return (
            "wallet",
            f"the wallet has {format_usd(available)} available, less than the job's maximum of {format_usd(maximum)}",
        )
    for label, budget in budgets.items():
        if budget is not None and budget["left_micros"] < maximum:
            return (
                "budget",
                f"the job's maximum of {format_usd(maximum)} would pass the key's {label} budget "
                f"({format_usd(budget['left_micros'])} left)",
            )
    return None


def _data_summary(prepared: Prepared) -> dict[str, Any]:
    table = prepared.table
    return {
        "inputs": [f.public() for f in prepared.files],
        "documents": [{"name": d.name, "chunks": len(d.chunks)} for d in prepared.documents],
        "prices": None
        if table is None
        else {
            "symbols": [s.symbol for s in table.symbols],
            "window": {"start": table.start, "end": table.end, "points": table.points, "frequency": table.frequency},
        },
    }


def refusal_error(result: dict[str, Any]) -> GlasskeyError | None:
    """The error a job that is not admitted gets when it is confirmed (nothing is charged)."""
    source = result["refused_by"]
    if source is None:
        return None
    message = f"The research job is not admitted: {result['reason']}"
    if source == "model":
        unknown = any(m["refused_by"] == "catalog" for m in result["models"])
        if unknown:
            return ModelError(message, code="model_not_found", status_code=404)
        return ModelError(message, code="model_not_allowed", status_code=403)
    if source == "route":
        return RouteError(message, code="no_route")
    if source == "wallet":
        return WalletError(message, details={"preflight": result})
    return BudgetError(message, details={"preflight": result})
