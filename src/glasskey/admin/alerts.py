"""Admin endpoint for an org's notices: budgets running out, keys failing, wallets empty (``alerts.notices``).

A member sees the notices of the keys they hold or answer for (and the wallets'); the other roles
and the operator see every key's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from glasskey.admin.access import error_responses, principal_of
from glasskey.admin.common import list_body
from glasskey.alerts.notices import notices
from glasskey.keys.service import list_keys
from glasskey.orgs.service import get_org
from glasskey.people.holders import keys_of
from glasskey.services import Services


def alerts_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.get(
        "/orgs/{org_id}/alerts",
        summary="An org's notices",
        description=(
            "What needs attention now: keys at 50/80/100% of their total or daily budget (spent plus held), keys "
            "whose requests mostly failed in the last 15 minutes, wallets with nothing left. Most urgent first."
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

    return router
