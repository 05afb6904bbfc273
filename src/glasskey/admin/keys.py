"""Admin endpoints for keys: create (the full key is shown once), list, change policy, revoke, explain.

No response ever carries a key's secret or its hash: keys are rendered by ``KeyRecord.public()``.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, Field, StrictBool, StrictInt, field_validator

from glasskey.admin.access import actor_of
from glasskey.admin.common import Body, Micros, Settlement, error_responses, list_body
from glasskey.explanation import explain_key
from glasskey.keys.policy import DEFAULT_POLICY, KeyPolicy
from glasskey.keys.service import get_key, list_keys
from glasskey.limits import RPM_LIMIT_MAX
from glasskey.orgs.service import get_org
from glasskey.people import changes
from glasskey.services import Services

NEVER_SHOWN_AGAIN = "This is the only time the full key is shown: store it now. glasskey keeps only its hash."
NAME_MAX_LENGTH = 200

AllowedModels = Annotated[
    list[str] | None,
    Field(description="public model names the key may call; null means every model in the catalog"),
]
RateLimit = Annotated[StrictInt, Field(ge=0, le=RPM_LIMIT_MAX, description="requests per minute")]


class PolicyBody(Body):
    """A key's policy as a request sends it (shared by the operator's and a person's key creation)."""

    allowed_models: AllowedModels = None
    # KeyPolicy has checked its own default is one of the two settlements.
    settlement: Settlement = cast(Settlement, DEFAULT_POLICY.settlement)
    lower_cost_routes: StrictBool = Field(
        default=DEFAULT_POLICY.lower_cost_routes,
        description="try the cheapest healthy route first; routed keys only (with settlement official: 400)",
    )
    backup_routes: StrictBool = DEFAULT_POLICY.backup_routes
    strict_params: StrictBool = Field(
        default=DEFAULT_POLICY.strict_params,
        description="refuse (400) a best-effort parameter such as `seed` that the serving route's provider cannot"
        " honour, instead of dropping it and listing it in the receipt's dropped_params",
    )
    budget_total_micros: Micros | None = None
    budget_daily_micros: Micros | None = None
    rpm_limit: RateLimit | None = None
    expires_at: AwareDatetime | None = None

    def policy(self) -> KeyPolicy:
        return KeyPolicy(
            allowed_models=tuple(self.allowed_models) if self.allowed_models is not None else None,
            settlement=self.settlement,
            lower_cost_routes=self.lower_cost_routes,
            backup_routes=self.backup_routes,
            strict_params=self.strict_params,
            budget_total_micros=self.budget_total_micros,
            budget_daily_micros=self.budget_daily_micros,
            rpm_limit=self.rpm_limit,
            expires_at=self.expires_at,
        )


class CreateKeyBody(PolicyBody):
    org_id: str = Field(description="the org (id or name) whose wallets pay for the key")
    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    owner: str = Field(default="", max_length=NAME_MAX_LENGTH, description="the person, script or agent holding it")


class UpdateKeyBody(Body):
    """Only the fields sent change; ``null`` clears a limit (or allows every model)."""

    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX_LENGTH)
    owner: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)
    allowed_models: AllowedModels = None
    settlement: Settlement | None = None
    lower_cost_routes: StrictBool | None = None
    backup_routes: StrictBool | None = None
    strict_params: StrictBool | None = None
    budget_total_micros: Micros | None = None
    budget_daily_micros: Micros | None = None
    rpm_limit: RateLimit | None = None
    expires_at: AwareDatetime | None = None

    @field_validator("name", "owner", "settlement", "lower_cost_routes", "backup_routes", "strict_params")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # For these fields ``null`` has no meaning, and silently ignoring it would hide a client bug.
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    def changes(self) -> dict[str, Any]:
        changes = self.model_dump(exclude_unset=True)
        if changes.get("allowed_models") is not None:
            changes["allowed_models"] = tuple(changes["allowed_models"])
        return changes


def keys_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["keys"])

    @router.get(
        "/keys",
        summary="List keys",
        description="Every key (or the keys of one org) with its policy; never a secret.",
        responses=error_responses(404),
    )
    def read_keys(
        org_id: Annotated[str | None, Query(description="only this org's keys (id or name)")] = None,
    ) -> dict[str, Any]:
        with services.db.read() as conn:
            org = get_org(conn, org_id) if org_id is not None else None
            return list_body([key.public() for key in list_keys(conn, org.id if org else None)])

    @router.post(
        "/keys",
        status_code=201,
        summary="Create a key",
        description=(
            "Creates a key with its policy. The response's `key` field holds the full key "
            "(`gk-<public id>-<secret>`): it is shown this once and can never be read again."
        ),
        responses=error_responses(404),
    )
    def create(body: CreateKeyBody, request: Request) -> dict[str, Any]:
        with services.db.write() as conn:
            org = get_org(conn, body.org_id)
            record, full_key = changes.create_key(
                conn,
                actor_of(request),
                services.clock(),
                pepper=services.pepper,
                org_id=org.id,
                name=body.name,
                owner=body.owner,
                policy=body.policy(),
            )
        return {**record.public(), "key": full_key, "key_note": NEVER_SHOWN_AGAIN}

    @router.get(
        "/keys/{key_id}",
        summary="Get a key",
        description="One key by id or by its public prefix `gk-<public id>`, with its policy; never its secret.",
        responses=error_responses(404),
    )
    def read_key(key_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return get_key(conn, key_id).public()

    @router.patch(
        "/keys/{key_id}",
        summary="Change a key's policy",
        description=(
            "Changes only the fields sent: name, owner, allowed models, settlement, lower-cost and backup "
            "routes, budgets, rate limit, expiry. `null` clears a budget, the rate limit or the expiry, and "
            "for `allowed_models` allows every model."
        ),
        responses=error_responses(404),
    )
    def update(key_id: str, body: UpdateKeyBody, request: Request) -> dict[str, Any]:
        with services.db.write() as conn:
            return changes.update_key(conn, actor_of(request), services.clock(), key_id, **body.changes()).public()

    @router.post(
        "/keys/{key_id}/revoke",
        summary="Revoke a key",
        description="From now on the key is refused with `source: key`. Revoking a revoked key changes nothing.",
        responses=error_responses(404),
    )
    def revoke(key_id: str, request: Request) -> dict[str, Any]:
        with services.db.write() as conn:
            return changes.revoke_key(conn, actor_of(request), services.clock(), key_id).public()

    @router.get(
        "/keys/{key_id}/explain",
        summary="Explain a key",
        description=(
            "What the key may call, how it settles, whether lower-cost and backup routes are used, the "
            "effective price per model, the wallet it charges with its balance, where its receipts and "
            "failures are, and its budgets, rate limit and expiry: the same answer as `GET /v1/key`."
        ),
        responses=error_responses(404),
    )
    def explain(key_id: str) -> dict[str, Any]:
        with services.db.read() as conn:
            return explain_key(conn, services.settings, get_key(conn, key_id), services.clock(), services.health)

    return router
