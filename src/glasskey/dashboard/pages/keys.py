"""Keys: the table, a key's explanation, the create form with its price preview, and revoking.

Creating a key takes three steps: the form, a preview that shows the key's explanation (prices,
routes, wallet) before anything is saved, and the creation, which shows the secret once. The
preview puts a one-time nonce in the session; creating consumes it, so a resent form never
creates a second key nor shows a secret again.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.admin.keys import NEVER_SHOWN_AGAIN
from glasskey.dashboard.forms import KeyDraft, form_text, policy_choices, read_key_form
from glasskey.dashboard.queries import ReceiptFilter, search_receipts
from glasskey.dashboard.refusals import Refusal
from glasskey.dashboard.web import Dashboard, actor_of, flash, read_form, redirect
from glasskey.errors import APIKeyError, ClientError, GlasskeyError, NotFound
from glasskey.explanation import explain_key
from glasskey.keys.budget import TOTAL, get_spend
from glasskey.keys.service import REVOKED, KeyRecord, check_usable, get_key, list_keys
from glasskey.orgs.service import get_org, list_orgs
from glasskey.people import changes as audited
from glasskey.pricing.catalog import list_models

RECENT_MAX = 10
NONCE_FIELD = "key_nonce"
# Fields of the create form that are carried from step to step (the rest are the steps' own).
DRAFT_FIELDS = (
    "org_id", "name", "owner", "models_mode", "model", "settlement", "lower_cost_routes", "backup_routes",
    "strict_params", "budget_total", "budget_daily", "rpm_limit", "expires_at",
)  # fmt: skip


class KeyAlreadyCreated(Refusal):
    status_code = 409
    title = "This key was already created"


def key_state(key: KeyRecord, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``: whether a request with the key would be let in."""
    try:
        check_usable(key, now)
    except APIKeyError:
        return "revoked" if key.status == REVOKED else "expired"
    return "active"


def draft_values(form: FormData | None) -> dict[str, Any]:
    """The create form's fields as the form shows them (defaults for a blank form)."""
    if form is None:
        return {"models_mode": "some", "models": [], **policy_choices(None)}
    values: dict[str, Any] = {name: form_text(form, name) for name in DRAFT_FIELDS if name != "model"}
    values["models"] = [m for m in form.getlist("model") if isinstance(m, str)]
    return {**values, **policy_choices(form)}


def draft_pairs(form: FormData) -> list[tuple[str, str]]:
    """The draft's fields as hidden inputs for the next step."""
    return [(name, value) for name, value in form.multi_items() if name in DRAFT_FIELDS and isinstance(value, str)]


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    def form_context(conn: Connection, form: FormData | None, errors: dict[str, str]) -> dict[str, Any]:
        return {
            "nav": "keys",
            "orgs": list_orgs(conn),
            "models": list_models(conn),
            "values": draft_values(form),
            "errors": errors,
        }

    async def keys_page(request: Request) -> Response:
        now = services.clock()

        def work(conn: Connection) -> dict[str, Any]:
            orgs = {org.id: org.name for org in list_orgs(conn)}
            rows = [
                {
                    "key": key,
                    "org": orgs.get(key.org_id, key.org_id),
                    "state": key_state(key, now),
                    "spent_micros": get_spend(conn, key.id, TOTAL).spent_micros,
                }
                for key in list_keys(conn)
            ]
            return {"nav": "keys", "rows": rows, "org_count": len(orgs)}

        return dash.render(request, "keys.html", await dash.read(work))

    async def new_key_form(request: Request) -> Response:
        return dash.render(request, "key_form.html", await dash.read(lambda conn: form_context(conn, None, {})))

    async def new_key_step(request: Request) -> Response:
        form = await read_form(request)
        step = form_text(form, "step")
        now = services.clock()
        draft = read_key_form(form, now)
        if step == "create" and draft.ok:
            return await create(request, form, draft)

        def work(conn: Connection) -> tuple[str, dict[str, Any]]:
            errors = dict(draft.errors)
            if step == "preview" and draft.ok:
                try:
                    return "key_preview.html", preview_context(conn, form, draft, now)
                except GlasskeyError as error:
                    errors[error.param or "form"] = error.message
            return "key_form.html", form_context(conn, form, errors)

        template, context = await dash.read(work)
        if template == "key_preview.html":
            context["nonce"] = request.session[NONCE_FIELD] = secrets.token_urlsafe(16)
        status = 400 if context.get("errors") else 200
        return dash.render(request, template, context, status_code=status)

    def preview_context(conn: Connection, form: FormData, draft: KeyDraft, now: datetime) -> dict[str, Any]:
        assert draft.policy is not None
        try:
            org = get_org(conn, draft.org_id)
        except NotFound:
            raise ClientError("that org does not exist", param="org_id") from None
        # The key as it would be: explain_key answers for it exactly as it will once it exists.
        record = KeyRecord(
            id="(new key)",
            public_id="(new)",
            org_id=org.id,
            name=draft.name,
            owner=draft.owner,
            policy=draft.policy,
            status="active",
            created_at=now,
            revoked_at=None,
        )
        explanation = explain_key(conn, services.settings, record, now, services.health)
        if explanation["unknown_allowed_models"]:
            raise ClientError("unknown model(s): " + ", ".join(explanation["unknown_allowed_models"]), param="models")
        return {"nav": "keys", "org": org, "draft": draft, "explanation": explanation, "pairs": draft_pairs(form)}

    async def create(request: Request, form: FormData, draft: KeyDraft) -> Response:
        assert draft.policy is not None
        policy = draft.policy
        sent = form_text(form, "nonce")
        if not sent or request.session.get(NONCE_FIELD) != sent:
            raise KeyAlreadyCreated(
                "This form was already used to create a key, or its preview is out of date.",
                hint="A key's secret is shown only once. Find the key on the Keys page, or start a new one.",
            )
        request.session.pop(NONCE_FIELD, None)

        actor = actor_of(request)

        def work(conn: Connection) -> tuple[KeyRecord, str]:
            org = get_org(conn, draft.org_id)
            return audited.create_key(
                conn,
                actor,
                services.clock(),
                pepper=services.pepper,
                org_id=org.id,
                name=draft.name,
                owner=draft.owner,
                policy=policy,
            )

        record, full_key = await dash.write(work)
        context = {
            "nav": "keys",
            "key": record,
            "full_key": full_key,
            "note": NEVER_SHOWN_AGAIN,
            "gateway_url": f"{services.settings.effective_public_url}/v1",
            # Reloading this page must not send the form again: the script moves the URL to the key's page.
            "replace_url": f"/keys/{record.id}",
        }
        return dash.render(request, "key_created.html", context, status_code=201)

    async def key_page(request: Request) -> Response:
        now = services.clock()

        def work(conn: Connection) -> dict[str, Any]:
            key = get_key(conn, request.path_params["key_id"])
            explanation = explain_key(conn, services.settings, key, now, services.health)
            recent = search_receipts(conn, ReceiptFilter(key_id=key.id), limit=RECENT_MAX).rows
            failed = search_receipts(conn, ReceiptFilter(key_id=key.id, status="failed"), limit=RECENT_MAX).rows
            org = get_org(conn, key.org_id)
            return {
                "nav": "keys",
                "key": key,
                "org": org,
                "state": key_state(key, now),
                "explanation": explanation,
                "recent": recent,
                "failed": failed,
            }

        return dash.render(request, "key.html", await dash.read(work))

    async def revoke_confirm(request: Request) -> Response:
        key = await dash.read(lambda conn: get_key(conn, request.path_params["key_id"]))
        return dash.render(request, "key_revoke.html", {"nav": "keys", "key": key})

    async def revoke(request: Request) -> Response:
        await read_form(request)
        actor = actor_of(request)
        key = await dash.write(
            lambda conn: audited.revoke_key(conn, actor, services.clock(), request.path_params["key_id"])
        )
        flash(request, f"Key {key.name} ({key.prefix}) is revoked: requests with it now fail with source `key`.")
        return redirect(f"/keys/{key.id}")

    return [
        Route("/keys", keys_page, methods=["GET"]),
        Route("/keys/new", new_key_form, methods=["GET"]),
        Route("/keys/new", new_key_step, methods=["POST"]),
        Route("/keys/{key_id}", key_page, methods=["GET"]),
        Route("/keys/{key_id}/revoke", revoke_confirm, methods=["GET"]),
        Route("/keys/{key_id}/revoke", revoke, methods=["POST"]),
    ]
