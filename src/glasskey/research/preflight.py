"""The preflight of a research job: what it will call, whether the key may, how long, how much.

It moves no money and leaves no receipt. The cost is the sum of one quote per planned call,
each from ``pricing.quote.quote_request`` — the function behind ``/v1/quote`` — so the preflight's
estimate and maximum are exactly the sums of the answers ``/v1/quote`` gives for the same
bodies. The job is admitted only if every model is allowed and routed, and the wallet and the
key's budgets cover the **sum** of the maxima (one call's quote checks only itself).

Runtime is estimated by ``research.runtime``: per output token from the routes' recent receipts,
else from this process's measured latencies, else a stated default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.errors import BudgetError, GlasskeyError, ModelError, RouteError, WalletError
from glasskey.keys.budget import TOTAL, day_period, get_spend
from glasskey.keys.service import KeyRecord
from glasskey.money import format_micros, format_usd
from glasskey.orgs.service import get_wallet
from glasskey.pricing.catalog import list_models
from glasskey.pricing.quote import quote_request
from glasskey.research import NOTICE
from glasskey.research.runtime import runtime_estimate
from glasskey.research.spec import Prepared
from glasskey.routing.health import HealthBoard
from glasskey.routing.selection import select_routes


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
        "runtime": runtime_estimate(conn, plan, models, key.policy.rpm_limit),
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
