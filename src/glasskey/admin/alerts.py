"""Admin endpoints for an org's alerts: notices, the rules behind them, the webhook and its delivery log.

A member sees the notices of the keys they hold or answer for (and the wallets'); the other roles
and the operator see every key's. Every role of the org reads the rules; only an owner (and the
operator) changes them, sets the webhook, sends a test and reads the delivery log
(``admin.access``). Every change is written to the audit log; the webhook's secret never is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from pydantic import Field, StrictBool, StrictInt

from glasskey.admin.access import actor_of, error_responses, principal_of
from glasskey.admin.common import Body, Micros, list_body
from glasskey.alerts.delivery import DeliveryLimits, list_deliveries
from glasskey.alerts.notices import notices
from glasskey.alerts.rules import (
    FAILURE_MIN_REQUESTS_MAX,
    FAILURE_WINDOW_MINUTES_MAX,
    PERCENTS_MAX,
    WALLET_BALANCE,
    AlertRule,
    delete_rule,
    key_subject,
    rule_book,
    set_rule,
)
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.tables import URL_MAX_LENGTH
from glasskey.alerts.webhooks import delete_webhook, get_webhook, set_webhook
from glasskey.errors import ClientError, NotFound
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org
from glasskey.people.audit import record
from glasskey.people.holders import keys_of
from glasskey.services import Services

DELIVERIES_SHOWN_MAX = 200


class RuleBody(Body):
    kind: Literal["wallet_balance", "key_budget", "key_failure_rate"]
    wallet: Literal["credit", "routed"] | None = Field(default=None, description="for wallet_balance")
    key_id: str | None = Field(
        default=None, max_length=64, description="a key rule's key (id or prefix); left out: every key of the org"
    )
    enabled: StrictBool = True
    balance_below_micros: Micros | None = None
    budget_percents: list[StrictInt] | None = Field(default=None, max_length=PERCENTS_MAX)
    failure_rate_percent: StrictInt | None = Field(default=None, ge=1, le=100)
    failure_window_minutes: StrictInt | None = Field(default=None, ge=1, le=FAILURE_WINDOW_MINUTES_MAX)
    failure_min_requests: StrictInt | None = Field(default=None, ge=1, le=FAILURE_MIN_REQUESTS_MAX)


class WebhookBody(Body):
    url: str = Field(min_length=1, max_length=URL_MAX_LENGTH)
    rotate_secret: StrictBool = Field(default=False, description="make a new signing secret (shown once)")


def rule_of(conn: Any, org_id: str, body: RuleBody) -> AlertRule:
    """The rule a body asks for, its subject checked against the org (a foreign key is a 404)."""
    if body.kind == WALLET_BALANCE:
        if body.wallet is None or body.key_id is not None:
            raise ClientError("A wallet_balance rule names a wallet (credit or routed) and no key", param="wallet")
        subject = f"wallet:{body.wallet}"
    else:
        if body.wallet is not None:
            raise ClientError("A key rule names no wallet", param="wallet")
        subject = key_subject(conn, org_id, body.key_id)
    return AlertRule(
        kind=body.kind,
        subject=subject,
        enabled=body.enabled,
        balance_below_micros=body.balance_below_micros,
        budget_percents=tuple(body.budget_percents) if body.budget_percents is not None else None,
        failure_rate_percent=body.failure_rate_percent,
        failure_window_minutes=body.failure_window_minutes,
        failure_min_requests=body.failure_min_requests,
    )


def runner_of(services: Services) -> AlertRunner:
    return AlertRunner(
        services.db,
        services.vault,
        services.clock,
        allow_private=services.settings.allow_private_upstreams,
        limits=DeliveryLimits(),
    )


def alerts_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.get(
        "/orgs/{org_id}/alerts",
        summary="An org's notices",
        description=(
            "What needs attention now, under the org's alert rules (`GET /orgs/{org_id}/alerts/rules`; by default: "
            "keys at 50/80/100% of their total or daily budget, spent plus held; keys whose requests mostly failed "
            "in the last 15 minutes; wallets with nothing left). Most urgent first."
        ),
        responses=error_responses(404),
    )
    def read_alerts(org_id: str, request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        with services.db.read() as conn:
            org = get_org(conn, org_id)
            if principal.role == "member" and principal.user_id is not None:
                keys = [key for key, _holder in keys_of(conn, org.id, principal.user_id)]
            else:
                keys = list_keys(conn, org.id)
            return list_body(notices(conn, org.id, keys, services.clock()))

    @router.get(
        "/orgs/{org_id}/alerts/rules",
        summary="An org's alert rules",
        description="The rules in force: each stored rule, and the defaults (`default: true`) where none is stored.",
        responses=error_responses(404),
    )
    def read_rules(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            book = rule_book(conn, get_org(conn, org_id).id)
        return list_body([rule.public() for rule in book.in_force()])

    @router.put(
        "/orgs/{org_id}/alerts/rules",
        summary="Set one alert rule",
        description=(
            "Replaces the org's rule of the same kind and subject. `wallet_balance` (a `wallet` and "
            "`balance_below_micros`), `key_budget` (`budget_percents`, 1 to 100) or `key_failure_rate` "
            "(`failure_rate_percent` over `failure_window_minutes`, counted from `failure_min_requests` requests), "
            "on one key (`key_id`) or every key of the org. `enabled: false` silences the subject."
        ),
        responses=error_responses(403, 404),
    )
    def write_rule(org_id: str, body: RuleBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            before = rule_book(conn, org.id).stored.get((body.kind, rule_of(conn, org.id, body).subject))
            rule = set_rule(conn, org.id, rule_of(conn, org.id, body), now)
            record(
                conn,
                actor_of(request),
                "alerts.rule",
                now,
                org_id=org.id,
                target=f"{rule.kind} {rule.subject}",
                before=before.public() if before is not None else None,
                after=rule.public(),
            )
        return {"object": "alerts.rule", **rule.public()}

    @router.delete(
        "/orgs/{org_id}/alerts/rules/{rule_id}",
        summary="Remove one alert rule",
        description="Its subject falls back to the org's rule for every key, or to the default.",
        responses=error_responses(403, 404),
    )
    def remove_rule(org_id: str, rule_id: str, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            removed = delete_rule(conn, org.id, rule_id)
            record(
                conn,
                actor_of(request),
                "alerts.rule.delete",
                now,
                org_id=org.id,
                target=f"{removed.kind} {removed.subject}",
                before=removed.public(),
            )
        return {"object": "alerts.rule", "deleted": True, **removed.public()}

    @router.get(
        "/orgs/{org_id}/alerts/webhook",
        summary="The org's alert webhook",
        description="Its URL and the mask of its signing secret (the secret is shown only when it is made).",
        responses=error_responses(403, 404),
    )
    def read_webhook(org_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            webhook = get_webhook(conn, get_org(conn, org_id).id)
        if webhook is None:
            raise NotFound("The org has no alert webhook")
        return webhook.public()

    @router.put(
        "/orgs/{org_id}/alerts/webhook",
        summary="Set the org's alert webhook",
        description=(
            "The URL is judged by the same address policy as a route's base URL (docs/security.md). A new webhook, "
            "or `rotate_secret: true`, makes a signing secret, returned once as `signing_secret`: store it, it is "
            "never shown again. Deliveries are signed with it (docs/alerts.md)."
        ),
        responses=error_responses(403, 404),
    )
    def write_webhook(org_id: str, body: WebhookBody, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            before = get_webhook(conn, org.id)
            webhook, secret = set_webhook(
                conn,
                services.vault,
                org.id,
                body.url,
                now,
                allow_private=services.settings.allow_private_upstreams,
                rotate_secret=body.rotate_secret,
            )
            record(
                conn,
                actor_of(request),
                "alerts.webhook",
                now,
                org_id=org.id,
                target=org.name,
                before={"url": before.url} if before is not None else None,
                after={"url": webhook.url, "secret_rotated": secret is not None},
            )
        return {**webhook.public(), "signing_secret": secret}

    @router.delete(
        "/orgs/{org_id}/alerts/webhook",
        summary="Remove the org's alert webhook",
        description="Pending deliveries are dropped; notices stay.",
        responses=error_responses(403, 404),
    )
    def remove_webhook(org_id: str, request: Request) -> dict[str, Any]:
        now = services.clock()
        with services.db.write() as conn:
            org = get_org(conn, org_id)
            before = get_webhook(conn, org.id)
            if before is None or not delete_webhook(conn, org.id, now):
                raise NotFound("The org has no alert webhook")
            record(
                conn,
                actor_of(request),
                "alerts.webhook.delete",
                now,
                org_id=org.id,
                target=org.name,
                before={"url": before.url},
            )
        return {"object": "alerts.webhook", "deleted": True, "url": before.url}

    @router.post(
        "/orgs/{org_id}/alerts/webhook/test",
        summary="Send a test delivery",
        description=(
            "Sends a signed `alert.test` event to the webhook now, once (no retries), and answers the delivery with "
            "the receiver's status code and the start of its answer."
        ),
        responses=error_responses(403, 404, 409),
    )
    async def send_test(org_id: str, request: Request) -> dict[str, Any]:
        def org_of() -> str:
            with services.db.write() as conn:
                org = get_org(conn, org_id)
                record(conn, actor_of(request), "alerts.webhook.test", services.clock(), org_id=org.id, target=org.name)
                return org.id

        return await runner_of(services).send_test(await anyio.to_thread.run_sync(org_of))

    @router.get(
        "/orgs/{org_id}/alerts/deliveries",
        summary="The webhook's delivery log",
        description=(
            "The newest deliveries, each with its status (`pending`, `delivered`, `failed`, `dropped`) and every "
            "attempt: when, the receiver's status code, and at most 512 characters of its answer or the error."
        ),
        responses=error_responses(403, 404),
    )
    def read_deliveries(
        org_id: str, limit: Annotated[int, Query(ge=1, le=DELIVERIES_SHOWN_MAX)] = 50
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            return list_body(list_deliveries(conn, get_org(conn, org_id).id, limit))

    return router
