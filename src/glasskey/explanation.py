"""A key explaining itself: the eight answers of the brief, plus budgets, limits and expiry.

The same function answers ``GET /v1/key``, the admin API, the CLI and the dashboard, so every
interface tells the same story about a key. It draws on keys, routes, prices and wallets alike, so
it sits above those packages rather than in one of them (``routing`` reads keys' policies; were
this in ``keys``, the two would import each other).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from glasskey.keys.budget import TOTAL, day_period, get_spend
from glasskey.keys.service import KeyRecord
from glasskey.money import format_micros
from glasskey.orgs.service import get_wallet
from glasskey.people.holders import holder_view
from glasskey.pricing.catalog import list_models
from glasskey.providers.best_effort import is_strict
from glasskey.routing.health import HealthBoard
from glasskey.routing.routes import Route
from glasskey.routing.selection import MAX_ATTEMPTS, routes_for_key_by_model
from glasskey.settings import Settings


def _route_view(route: Route, board: HealthBoard | None) -> dict[str, Any]:
    return {
        "route_id": route.id,
        "provider": route.provider,
        "upstream_model": route.upstream_model,
        "settlement": route.settlement,
        "priority": route.priority,
        "price_per_mtok_micros": route.prices.as_dict(),
        "health": _health(route, board),
    }


def _health(route: Route, board: HealthBoard | None) -> dict[str, Any]:
    if board is None:
        return {"circuit": "unknown", "success_rate": None, "requests": 0, "last_failure": None}
    snapshot = board.snapshot(route.id)
    shown = ("circuit", "success_rate", "requests", "latency_ms", "reopens_in_seconds", "last_failure")
    return {key: snapshot[key] for key in shown}


def _model_view(
    key: KeyRecord, name: str, routes: list[Route], official: dict[str, int], board: HealthBoard | None
) -> dict[str, Any]:
    usable = routes[:MAX_ATTEMPTS] if key.policy.backup_routes else routes[:1]
    primary = usable[0] if usable else None
    backups = usable[1:]
    if primary is None:
        backup_words = "no route serves this model for this key's settlement; requests fail with source `route`"
    elif not key.policy.backup_routes:
        backup_words = f"backup routes are off for this key: only {primary.id} is used" + (
            f" ({len(routes) - 1} other route(s) exist but are not used)" if len(routes) > 1 else ""
        )
    elif backups:
        backup_words = f"if {primary.id} fails, requests fall back to {', '.join(r.id for r in backups)}, in order"
    else:
        backup_words = f"backup routes are on, but {primary.id} is the only route: a failure is not retried"
    return {
        "model": name,
        "callable": primary is not None,
        "effective_price_per_mtok_micros": primary.prices.as_dict() if primary else None,
        "official_price_per_mtok_micros": official,
        "route": _route_view(primary, board) if primary else None,
        "backup_routes": [_route_view(r, board) for r in backups],
        "backups_in_words": backup_words,
    }


def _lower_cost_words(settlement: str, lower_cost_routes: bool) -> str:
    # Selection orders by price only for routed keys; an official key says so rather than "on".
    if settlement != "routed":
        return "off: lower-cost routes apply to routed keys only; an official key follows the operator's priority order"
    if lower_cost_routes:
        return "on: the cheapest healthy route is tried first"
    return "off: routes are tried in the operator's priority order"


def settlement_in_words(settlement: str, models: list[dict[str, Any]], vendors: dict[str, str]) -> str:
    """The settlement in words, told from the routes that would serve (``models`` are model views),
    never from the settlement's name alone: an official key served by the simulated provider is
    not served by any vendor."""
    wallet = (
        "official Credit, paid from the credit wallet"
        if settlement == "official"
        else ("routed balance, paid from the routed wallet")
    )
    served = [view for view in models if view["route"] is not None]
    if not served:
        return f"{wallet}; no route serves this key's models yet, so no request can run"
    by_provider: dict[str, list[str]] = {}
    for view in served:
        by_provider.setdefault(view["route"]["provider"], []).append(view["model"])
    if set(by_provider) == {"simulated"}:
        who = "glasskey's built-in simulated provider (no vendor is called; answers are generated)"
    elif all(view["route"]["provider"] == vendors.get(view["model"]) for view in served):
        who = "each model's own vendor (" + ", ".join(sorted(by_provider)) + ")"
    else:
        who = "; ".join(f"{provider} for {', '.join(names)}" for provider, names in sorted(by_provider.items()))
    at_list = [v for v in served if v["effective_price_per_mtok_micros"] == v["official_price_per_mtok_micros"]]
    if len(at_list) == len(served):
        price = "at list price"
    elif not at_list:
        price = "below list price"
    else:
        price = f"at each route's price (list price for {', '.join(v['model'] for v in at_list)})"
    return f"{wallet}: served by {who}, {price}"


def sdk_base_urls(base: str) -> dict[str, dict[str, str]]:
    """Where each official SDK reaches the gateway with this same key, unchanged but for its base URL."""
    return {
        "openai": {
            "base_url": f"{base}/v1",
            "env": "OPENAI_BASE_URL",
            "example": f'OpenAI(base_url="{base}/v1", api_key=KEY)',
        },
        # The Anthropic SDK adds /v1/messages itself; Claude Code reads ANTHROPIC_BASE_URL.
        "anthropic": {
            "base_url": base,
            "env": "ANTHROPIC_BASE_URL",
            "example": f'Anthropic(base_url="{base}", api_key=KEY)',
        },
        # google-genai adds /v1/models/{model}:generateContent itself (or /v1beta with that api_version).
        "gemini": {
            "base_url": base,
            "env": "GOOGLE_GEMINI_BASE_URL",
            "example": f'genai.Client(api_key=KEY, http_options={{"base_url": "{base}"}})',
        },
    }


def explain_key(
    conn: Connection, settings: Settings, key: KeyRecord, now: datetime, board: HealthBoard | None = None
) -> dict[str, Any]:
    """The explanation of ``key``; with ``board``, routes are ordered and described as health stands now."""
    policy = key.policy
    base = settings.effective_public_url
    wallet = get_wallet(conn, key.org_id, policy.wallet_kind)
    catalog = {m.name: m for m in list_models(conn)}
    names = sorted(catalog) if policy.allowed_models is None else [n for n in policy.allowed_models if n in catalog]
    models = []
    routes = routes_for_key_by_model(conn, key, board)
    for name in names:
        view = _model_view(key, name, routes.get(name, []), catalog[name].official_prices.as_dict(), board)
        if policy.allowed_models is not None or view["callable"]:
            models.append(view)
    unknown = [n for n in policy.allowed_models or () if n not in catalog]
    total, today = get_spend(conn, key.id, TOTAL), get_spend(conn, key.id, day_period(now))
    settlement_words = settlement_in_words(policy.settlement, models, {n: m.vendor for n, m in catalog.items()})
    return {
        "object": "key.explanation",
        "key": key.public(),
        "holder": holder_view(conn, key),  # who holds it, who answers for it
        "models": models,  # 1, 4 and 5: what it may call, its backups, its effective prices
        "unknown_allowed_models": unknown,
        "allowed_models_in_words": "every model in the catalog that has a route"
        if policy.allowed_models is None
        else ", ".join(policy.allowed_models),
        "settlement": policy.settlement,  # 2
        "settlement_in_words": settlement_words,
        "lower_cost_routes": policy.lower_cost_routes,  # 3
        "lower_cost_routes_in_words": _lower_cost_words(policy.settlement, policy.lower_cost_routes),
        "backup_routes": policy.backup_routes,
        "backup_routes_in_words": (
            "on: if a route fails before answering, the next route of the same settlement is tried "
            f"(at most {MAX_ATTEMPTS} routes per request); a backup never crosses settlement, so this key "
            f"always pays from its {policy.wallet_kind} wallet at the serving route's price"
            if policy.backup_routes
            else "off: a request uses one route; if it fails, the request fails"
        ),
        "strict_params": policy.strict_params,
        "strict_params_in_words": _strict_params_words(
            policy.strict_params, sorted({r.id for name in names for r in routes.get(name, []) if is_strict(r.options)})
        ),
        "wallet": {  # 6
            "kind": wallet.kind,
            "org_id": key.org_id,
            "available_micros": wallet.balance.available_micros,
            "available_usd": format_micros(wallet.balance.available_micros),
            "posted_micros": wallet.balance.posted_micros,
            "held_micros": wallet.balance.held_micros,
        },
        "receipts_url": f"{base}/v1/receipts",  # 7
        "failures_url": f"{base}/v1/receipts?status=failed",  # 8
        "admin_receipts_url": f"{base}/admin/api/receipts?key_id={key.id}",
        "base_urls": sdk_base_urls(base),
        "budgets": {
            "total_micros": policy.budget_total_micros,
            "total_spent_micros": total.spent_micros,
            "total_held_micros": total.held_micros,
            "daily_micros": policy.budget_daily_micros,
            "today_spent_micros": today.spent_micros,
            "today_held_micros": today.held_micros,
        },
        "rate_limit": {"requests_per_minute": policy.rpm_limit, "counted": _counted_where(settings)},
        # What each gateway process keeps to itself (several processes: docs/deployment.md).
        "shared_across_processes": _shared_across_processes(settings),
        "expires_at": policy.expires_at.isoformat() if policy.expires_at else None,
        "status": key.status,
    }


def _strict_params_words(key_strict: bool, strict_route_ids: list[str]) -> str:
    """What happens to a best-effort parameter (``seed``, ``user``, ``service_tier``, ...) that the
    serving route's provider cannot honour: dropped and named, or refused (providers/best_effort.py)."""
    if key_strict:
        return (
            "on: a best-effort parameter (`seed`, `service_tier`, `metadata`, ...) that the serving route's"
            " provider cannot honour is refused with a 400 naming it, before any upstream call; nothing is dropped"
        )
    words = (
        "off: a best-effort parameter (`seed`, `service_tier`, `metadata`, ...) that the serving route's"
        " provider cannot honour is left out of the upstream request and named in the"
        " `x-glasskey-dropped-params` header and the receipt's `dropped_params`"
    )
    if strict_route_ids:
        words += f"; except on {', '.join(strict_route_ids)}, whose `strict_params` refuses it with a 400"
    return words


def _counted_where(settings: Settings) -> str:
    if settings.redis_url:
        return "across every gateway process (in Redis); per process while Redis is unreachable"
    return "per gateway process: with N processes up to N times the limit may pass (GLASSKEY_REDIS_URL shares it)"


def _shared_across_processes(settings: Settings) -> dict[str, str]:
    """The brief's per-key facts that depend on how many gateway processes serve, and how they share."""
    wallet = "shared by every process whatever the deployment: they are holds in the database"
    if settings.redis_url:
        return {
            "budgets_and_wallet": wallet,
            "rate_limit": "shared through Redis",
            "route_health": "breakers shared through Redis (a route opened by one process is skipped by all "
            "within a second); latency and success rates are this process's",
            "changes": "a revoked key or changed policy, route or price takes effect everywhere within a second "
            f"when made through the admin API or dashboard; with the CLI, within {settings.cache_ttl_ms} ms",
            "without_redis": "while Redis is unreachable each process counts and decides alone, and changes "
            "reach other processes within the cache lifetime",
        }
    return {
        "budgets_and_wallet": wallet,
        "rate_limit": "per process",
        "route_health": "per process: each process opens its own breakers from its own traffic",
        "changes": "a revoked key or changed policy, route or price takes effect on every process within "
        f"{settings.cache_ttl_ms} ms (the cache lifetime)",
    }
