"""An org's limits: what its members may give their keys. Everyone in the org reads them; owners set them.

The form is read into ``people.limits.OrgLimits``: models by name (empty: any model of the catalog),
settlements (both ticked: any), the largest total and daily budget in dollars, the largest rpm, and the
longest lifetime in days (empty: no limit). A value that does not parse is shown next to its field and
nothing changes. Keys made before keep their policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.dashboard.acting import Acting, acting, page_context, require_org
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.forms import FieldError, form_text, parse_optional_count, parse_optional_dollars
from glasskey.dashboard.web import Dashboard, flash, read_form, redirect, request_id_of
from glasskey.limits import KEY_LIFETIME_MAX_SECONDS, RPM_LIMIT_MAX
from glasskey.money import format_micros
from glasskey.people import changes as audited
from glasskey.people.limits import OrgLimits, get_limits
from glasskey.pricing.catalog import list_models

SETTLEMENTS = ("official", "routed")
DAY_SECONDS = 24 * 3600
LIFETIME_DAYS_MAX = KEY_LIFETIME_MAX_SECONDS // DAY_SECONDS


def form_values(limits: OrgLimits) -> dict[str, Any]:
    """The limits as the form shows them: dollars and days as text, empty where there is no limit."""

    def dollars(micros: int | None) -> str:
        return "" if micros is None else format_micros(micros).rstrip("0").rstrip(".")

    lifetime = limits.key_lifetime_max_seconds
    return {
        "models": ", ".join(limits.allowed_models) if limits.allowed_models is not None else "",
        "settlements": list(limits.settlements) if limits.settlements is not None else list(SETTLEMENTS),
        "budget_total": dollars(limits.budget_total_max_micros),
        "budget_daily": dollars(limits.budget_daily_max_micros),
        "rpm": "" if limits.rpm_max is None else str(limits.rpm_max),
        "lifetime_days": "" if lifetime is None else f"{lifetime / DAY_SECONDS:g}",
    }


def read_limits_form(form: FormData, known_models: list[str]) -> tuple[OrgLimits, dict[str, str]]:
    """The form as ``OrgLimits``, and the message of each field that could not be read."""
    errors: dict[str, str] = {}
    limits = OrgLimits()
    names = [name.strip() for name in form_text(form, "models").replace("\n", ",").split(",") if name.strip()]
    unknown = [name for name in names if name not in known_models]
    if unknown:
        errors["models"] = f"not in the catalog: {', '.join(unknown)}"
    elif names:
        limits = replace(limits, allowed_models=tuple(dict.fromkeys(names)))
    ticked = [kind for kind in SETTLEMENTS if kind in form.getlist("settlements")]
    if not ticked:
        errors["settlements"] = "tick at least one settlement (both: members may use either)"
    elif len(ticked) < len(SETTLEMENTS):
        limits = replace(limits, settlements=tuple(ticked))
    try:
        limits = replace(limits, budget_total_max_micros=parse_optional_dollars(form_text(form, "budget_total")))
    except FieldError as wrong:
        errors["budget_total"] = str(wrong)
    try:
        limits = replace(limits, budget_daily_max_micros=parse_optional_dollars(form_text(form, "budget_daily")))
    except FieldError as wrong:
        errors["budget_daily"] = str(wrong)
    try:
        limits = replace(limits, rpm_max=parse_optional_count(form_text(form, "rpm"), maximum=RPM_LIMIT_MAX))
    except FieldError as wrong:
        errors["rpm"] = str(wrong)
    try:
        days = parse_optional_count(form_text(form, "lifetime_days"), maximum=LIFETIME_DAYS_MAX)
        if days == 0:
            raise FieldError("a key lives at least one day; leave it empty for no limit")
        limits = replace(limits, key_lifetime_max_seconds=None if days is None else days * DAY_SECONDS)
    except FieldError as wrong:
        errors["lifetime_days"] = str(wrong)
    return limits, errors


def limits_view(conn: Connection, found: Acting) -> dict[str, Any]:
    org = require_org(found)
    limits = get_limits(conn, org.id)
    return {
        **page_context(found, "limits"),
        "limits": limits,
        "values": form_values(limits),
        "models": [model.name for model in list_models(conn)],
        "settlement_kinds": SETTLEMENTS,
        "can_set": found.role in ("owner", "operator"),
        "errors": {},
    }


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    async def current(request: Request) -> Acting | None:
        person = person_of(request.session)
        return await dash.read(lambda conn: acting(conn, person, request.query_params.get("org")))

    async def limits_page(request: Request) -> Response:
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        return dash.render(request, "limits.html", await dash.read(lambda conn: limits_view(conn, found)))

    async def save(request: Request) -> Response:
        form = await read_form(request)
        found = await current(request)
        if found is None:
            end_session(request.session)
            return redirect("/signin")
        view = await dash.read(lambda conn: limits_view(conn, found))
        if not view["can_set"]:  # the gate lets only owners here; the role is read again now
            view["errors"] = {"form": f"A {found.role} reads the limits; only an owner sets them."}
            return dash.render(request, "limits.html", view, status_code=403)
        limits, errors = read_limits_form(form, view["models"])
        if errors:
            view["errors"] = errors
            view["values"] = {
                **{
                    name: form_text(form, name)
                    for name in ("models", "budget_total", "budget_daily", "rpm", "lifetime_days")
                },
                "settlements": form.getlist("settlements"),
            }
            return dash.render(request, "limits.html", view, status_code=400)
        actor = found.principal.actor(request.client.host if request.client else "", request_id_of(request))
        now = services.clock()

        def work(conn: Connection) -> None:
            org = require_org(found)
            audited.set_limits(conn, actor, now, org.id, limits)

        await dash.write(work)
        flash(request, "The org's limits are saved; keys made from now on obey them.")
        return redirect(f"/limits{page_context(found, 'limits')['org_query']}")

    return [
        Route("/limits", limits_page, methods=["GET"]),
        Route("/limits", save, methods=["POST"]),
    ]
