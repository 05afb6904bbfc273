"""A person makes a key on the dashboard: held by themselves, or by a service they answer for.

The org is the session's and the holder is the signed-in person (``people.holders.create_person_key``);
the key of anyone below owner (billing, member) is bound by the org's limits, and a value past one is
shown next to its field. The form carries a one-time nonce, consumed on creation, so a resent form
never makes a second key; the secret is on the POST's answer only (the page's URL is then replaced
by ``/me``).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.admin.keys import NEVER_SHOWN_AGAIN
from glasskey.dashboard.acting import Acting, acting, page_context
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.forms import form_text, policy_choices, read_key_form
from glasskey.dashboard.pages.keys import KeyAlreadyCreated
from glasskey.dashboard.web import Dashboard, read_form, redirect, request_id_of
from glasskey.errors import GlasskeyError
from glasskey.people.audit import record
from glasskey.people.holders import SERVICE_NAME_MAX_LENGTH, create_person_key
from glasskey.people.limits import bound_by_limits, get_limits
from glasskey.pricing.catalog import list_models

NONCE_FIELD = "person_key_nonce"
# Where an over-the-limit refusal belongs on the form, by the limit it names.
LIMIT_FIELDS = {
    "allowed_models": "models",
    "settlements": "settlement",
    "budget_total_max_micros": "budget_total",
    "budget_daily_max_micros": "budget_daily",
    "rpm_max": "rpm_limit",
    "key_lifetime_max_seconds": "expires_at",
}


def form_view(conn: Connection, found: Acting, values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    assert found.org is not None
    return {
        **page_context(found, "me"),
        "models": [model.name for model in list_models(conn)],
        "limits": get_limits(conn, found.org.id),
        # The form's hints and model list follow the same rule as ``create_person_key``.
        "bound": bound_by_limits(found.role),
        "values": values,
        "errors": errors,
    }


def _field_of(refusal: GlasskeyError) -> str:
    for limit, field in LIMIT_FIELDS.items():
        if limit in refusal.message:
            return field
    return refusal.param if refusal.param in ("name", "service") else "form"


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        if person is None:
            return None
        return await dash.read(lambda conn: acting(conn, person, None))

    def values_of(form: FormData) -> dict[str, Any]:
        names = (
            "name",
            "service",
            "models_mode",
            "settlement",
            "budget_total",
            "budget_daily",
            "rpm_limit",
            "expires_at",
        )
        return {
            **{name: form_text(form, name) for name in names},
            "model": form.getlist("model"),
            **policy_choices(form),
        }

    async def new_key_form(request: Request) -> Response:
        if person_of(request.session) is None:  # the operator makes keys on the Keys page
            return redirect("/keys/new")
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        request.session[NONCE_FIELD] = nonce = secrets.token_urlsafe(16)
        view = await dash.read(lambda conn: form_view(conn, found, policy_choices(None), {}))
        return dash.render(request, "my_key_new.html", {**view, "nonce": nonce})

    async def create(request: Request) -> Response:
        form = await read_form(request)
        if person_of(request.session) is None:
            return redirect("/keys/new")
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        assert found.org is not None
        now = services.clock()
        draft = read_key_form(FormData([*form.multi_items(), ("org_id", found.org.id)]), now)
        service = form_text(form, "service") or None
        errors = dict(draft.errors)
        if service is not None and len(service) > SERVICE_NAME_MAX_LENGTH:
            errors["service"] = f"at most {SERVICE_NAME_MAX_LENGTH} characters"
        sent = form_text(form, "nonce")
        if not errors:
            if not sent or request.session.get(NONCE_FIELD) != sent:
                raise KeyAlreadyCreated(
                    "This form was already used to make a key, or it is out of date.",
                    hint="A key's secret is shown only once. Find the key on your page, or start a new one.",
                )
            policy = draft.policy
            assert policy is not None
            actor = found.principal.actor(request.client.host if request.client else "", request_id_of(request))

            def work(conn: Connection) -> tuple[Any, str, Any]:
                made, full_key, holder = create_person_key(
                    conn,
                    found.principal,
                    pepper=services.pepper,
                    name=draft.name,
                    policy=policy,
                    now=now,
                    service=service,
                )
                record(
                    conn,
                    actor,
                    "key.create",
                    now,
                    org_id=made.org_id,
                    target=made.prefix,
                    after={**made.public(), **holder.public()},
                )
                return made, full_key, holder

            try:
                made, full_key, _holder = await dash.write(work)
            except GlasskeyError as refused:
                if refused.status_code == 404:
                    raise
                errors[_field_of(refused)] = refused.message
            else:
                request.session.pop(NONCE_FIELD, None)
                context = {
                    **page_context(found, "me"),
                    "key": made,
                    "service": service,
                    "full_key": full_key,
                    "note": NEVER_SHOWN_AGAIN,
                    "gateway_url": f"{services.settings.effective_public_url}/v1",
                    "replace_url": "/me",
                }
                return dash.render(request, "my_key_created.html", context, status_code=201)
        view = await dash.read(lambda conn: form_view(conn, found, values_of(form), errors))
        status = 403 if any("Over the org's limit" in message for message in errors.values()) else 400
        return dash.render(request, "my_key_new.html", {**view, "nonce": sent}, status_code=status)

    return [
        Route("/me/keys/new", new_key_form, methods=["GET"]),
        Route("/me/keys/new", create, methods=["POST"]),
    ]
