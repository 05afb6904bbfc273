"""The Alerts page (``/alerts``): an org's notices, its alert rules, its webhook and the delivery log.

Everyone in the org reads the notices (a member: their keys' and the wallets') and the rules in
force. An owner, and the operator, also edit the rules, set the webhook (its signing secret is shown
once, on the page answering the form, never put in the session), send a test and read the delivery
log. Who reads it, and in which org, is ``dashboard.acting``'s answer, as on the other people pages: a
person's org and role come from the session and are read again from the database; the operator
names the org with ``?org=`` (the first org when none is named).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from glasskey.admin.alerts import runner_of
from glasskey.alerts.delivery import list_deliveries
from glasskey.alerts.notices import notices
from glasskey.alerts.rules import (
    KEY_BUDGET,
    KEY_FAILURE_RATE,
    WALLET_BALANCE,
    AlertRule,
    delete_rule,
    key_subject,
    rule_book,
    set_rule,
)
from glasskey.alerts.webhooks import get_webhook, set_webhook
from glasskey.dashboard.acting import Acting, acting, page_context, require_org
from glasskey.dashboard.auth import end_session, person_of
from glasskey.dashboard.forms import form_text
from glasskey.dashboard.refusals import Refusal
from glasskey.dashboard.web import Dashboard, flash, read_form, redirect, request_id_of
from glasskey.errors import ClientError, GlasskeyError, NotFound
from glasskey.keys.service import list_keys
from glasskey.orgs.service import Org
from glasskey.people.audit import record
from glasskey.people.holders import keys_of
from glasskey.people.principal import Principal

DELIVERIES_SHOWN = 50
OWNERS = ("owner", "operator")


class NotAnOwner(Refusal):
    status_code = 403
    title = "Only an owner changes alerts"


@dataclass(frozen=True)
class Viewer:
    """Who reads the page (``dashboard.acting``), and the org it shows."""

    found: Acting
    org: Org

    @property
    def principal(self) -> Principal:
        return self.found.principal

    @property
    def may_change(self) -> bool:
        return self.principal.role in OWNERS


def viewer_of(conn: Connection, request: Request, org_ref: str | None) -> Viewer | None:
    """Who reads the page and for which org; None when a person's session is no longer good."""
    found = acting(conn, person_of(request.session), org_ref)
    return None if found is None else Viewer(found, require_org(found))


def page_view(conn: Connection, viewer: Viewer, now: Any) -> dict[str, Any]:
    org_id = viewer.org.id
    if viewer.principal.role == "member" and viewer.principal.user_id is not None:
        keys = [key for key, _holder in keys_of(conn, org_id, viewer.principal.user_id)]
    else:
        keys = list_keys(conn, org_id)
    webhook = get_webhook(conn, org_id)
    return {
        "org": viewer.org,
        "role": viewer.principal.role,
        "may_change": viewer.may_change,
        "notices": notices(conn, org_id, keys, now),
        "rules": [rule.public() for rule in rule_book(conn, org_id).in_force()],
        "webhook": webhook.public() if webhook is not None and viewer.may_change else None,
        "deliveries": list_deliveries(conn, org_id, DELIVERIES_SHOWN) if viewer.may_change else [],
        **page_context(viewer.found, "alerts"),
        "nav": "alerts",
    }


def _number(form: FormData, name: str) -> int | None:
    text = form_text(form, name)
    if not text:
        return None
    if not text.isdigit():
        raise ClientError(f"{name.replace('_', ' ')} must be a whole number", param=name)
    return int(text)


def rule_from_form(conn: Connection, org_id: str, form: FormData) -> AlertRule:
    kind = form_text(form, "kind")
    enabled = form_text(form, "enabled") != "off"
    if kind == WALLET_BALANCE:
        return AlertRule(
            kind, f"wallet:{form_text(form, 'wallet')}", enabled, balance_below_micros=_number(form, "below_micros")
        )
    subject = key_subject(conn, org_id, form_text(form, "key") or None)
    if kind == KEY_BUDGET:
        percents = [part.strip() for part in form_text(form, "budget_percents").split(",") if part.strip()]
        if not all(part.isdigit() for part in percents):
            raise ClientError("budget percents are whole numbers separated by commas", param="budget_percents")
        return AlertRule(kind, subject, enabled, budget_percents=tuple(int(part) for part in percents))
    if kind == KEY_FAILURE_RATE:
        return AlertRule(
            kind,
            subject,
            enabled,
            failure_rate_percent=_number(form, "failure_rate_percent"),
            failure_window_minutes=_number(form, "failure_window_minutes"),
            failure_min_requests=_number(form, "failure_min_requests"),
        )
    raise ClientError("Choose what the rule watches", param="kind")


def routes(dash: Dashboard) -> list[Route]:
    services = dash.services

    def page_url(viewer: Viewer) -> str:
        return f"/alerts?org={quote(viewer.org.id)}" if viewer.principal.is_operator else "/alerts"

    async def show(request: Request, org_ref: str | None, extra: dict[str, Any] | None = None) -> Response:
        now = services.clock()

        def work(conn: Connection) -> dict[str, Any] | None:
            viewer = viewer_of(conn, request, org_ref)
            return None if viewer is None else page_view(conn, viewer, now)

        view = await dash.read(work)
        if view is None:
            end_session(request.session)
            return redirect("/signin")
        context = {"signing_secret": None, **view, **(extra or {})}
        return dash.render(request, "alerts.html", context)

    async def alerts_page(request: Request) -> Response:
        return await show(request, request.query_params.get("org"))

    async def change(request: Request, what: str, work: Any) -> Response:
        """Run ``work(conn, viewer, form)`` for an owner or the operator, audited, and go back to the page."""
        form = await read_form(request)
        org_ref = form_text(form, "org") or None
        address = request.client.host if request.client is not None else ""

        def run(conn: Connection) -> tuple[Viewer | None, Any]:
            viewer = viewer_of(conn, request, org_ref)
            if viewer is None or not viewer.may_change:
                return viewer, None
            result = work(conn, viewer, form)
            record(
                conn,
                viewer.principal.actor(address, request_id_of(request)),
                what,
                services.clock(),
                org_id=viewer.org.id,
                target=viewer.org.name,
                after=result if isinstance(result, dict) else None,
            )
            return viewer, result

        try:
            viewer, result = await dash.write(run)
        except NotFound:
            raise  # a rule of another org, or none: the 404 page, as for any record that is not there
        except GlasskeyError as refused:
            flash(request, f"Not changed: {refused.message}")
            return redirect(f"/alerts?org={quote(org_ref)}" if org_ref else "/alerts")
        if viewer is None:
            end_session(request.session)
            return redirect("/signin")
        if not viewer.may_change:
            raise NotAnOwner("Only an owner of the org changes its alerts.")
        return result if isinstance(result, Response) else redirect(page_url(viewer))

    async def save_rule(request: Request) -> Response:
        def work(conn: Connection, viewer: Viewer, form: FormData) -> dict[str, Any]:
            return set_rule(conn, viewer.org.id, rule_from_form(conn, viewer.org.id, form), services.clock()).public()

        return await change(request, "alerts.rule", work)

    async def remove_rule(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]

        def work(conn: Connection, viewer: Viewer, form: FormData) -> dict[str, Any]:
            return {"deleted": delete_rule(conn, viewer.org.id, rule_id).public()}

        return await change(request, "alerts.rule.delete", work)

    async def save_webhook(request: Request) -> Response:
        made: dict[str, Any] = {}

        def work(conn: Connection, viewer: Viewer, form: FormData) -> dict[str, Any]:
            webhook, secret = set_webhook(
                conn,
                services.vault,
                viewer.org.id,
                form_text(form, "url"),
                services.clock(),
                allow_private=services.settings.allow_private_upstreams,
                rotate_secret=form_text(form, "rotate_secret") == "on",
            )
            made.update(secret=secret, org=viewer.org.id if viewer.principal.is_operator else None)
            return {"url": webhook.url, "secret_rotated": secret is not None}

        answer = await change(request, "alerts.webhook", work)
        if made.get("secret"):
            # Shown on this answer only: a flash would keep it in the session cookie.
            return await show(request, made["org"], {"signing_secret": made["secret"]})
        return answer

    async def send_test(request: Request) -> Response:
        form = await read_form(request)
        org_ref = form_text(form, "org") or None
        viewer = await dash.read(lambda conn: viewer_of(conn, request, org_ref))
        if viewer is None:
            end_session(request.session)
            return redirect("/signin")
        if not viewer.may_change:
            raise NotAnOwner("Only an owner of the org changes its alerts.")
        try:
            delivery = await runner_of(services).send_test(viewer.org.id)
        except GlasskeyError as refused:
            flash(request, f"Not sent: {refused.message}")
            return redirect(page_url(viewer))
        answer = delivery["answers"][-1] if delivery["answers"] else {}
        said = f"the receiver answered {answer['status_code']}" if answer.get("status_code") else answer.get("error")
        flash(request, f"Test delivery {delivery['status']}: {said}")
        return redirect(page_url(viewer))

    return [
        Route("/alerts", alerts_page, methods=["GET"]),
        Route("/alerts/rules", save_rule, methods=["POST"]),
        Route("/alerts/rules/{rule_id}/delete", remove_rule, methods=["POST"]),
        Route("/alerts/webhook", save_webhook, methods=["POST"]),
        Route("/alerts/test", send_test, methods=["POST"]),
    ]
