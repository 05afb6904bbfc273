"""Admin endpoints for a person's own keys: ``/me/keys``, in the caller's org, held by the caller.

The org, the holder and the person answering for a service key all come from the principal; a
key of anyone below owner (billing, member) is bound by the org's limits (``people.limits``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from glasskey.admin.access import actor_of, error_responses, person_of
from glasskey.admin.common import list_body
from glasskey.admin.keys import NAME_MAX_LENGTH, NEVER_SHOWN_AGAIN, PolicyBody
from glasskey.errors import ClientError
from glasskey.people.audit import record
from glasskey.people.holders import SERVICE_NAME_MAX_LENGTH, create_person_key, keys_of
from glasskey.services import Services


class PersonKeyBody(PolicyBody):
    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    service: str | None = Field(
        default=None, max_length=SERVICE_NAME_MAX_LENGTH, description="a script, agent or workflow you answer for"
    )


def my_keys_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["keys"])

    @router.get("/me/keys", summary="List my keys", description="Keys I hold and keys of services I answer for.")
    def read_my_keys(request: Request) -> dict[str, Any]:
        principal = person_of(request)
        if principal.org_id is None or principal.user_id is None:
            raise ClientError("An operator account's token is not in an org; use GET /keys")
        with services.db.read() as conn:
            found = keys_of(conn, principal.org_id, principal.user_id)
        return list_body([{**key.public(), **holder.public()} for key, holder in found])

    @router.post(
        "/me/keys",
        status_code=201,
        summary="Create a key for me or a service I answer for",
        description=(
            "In the caller's org, held by the caller (or by the named `service`, with the caller answering for it). "
            "The key of anyone below owner (billing, member) stays within the org's limits: a budget, rpm or expiry "
            "left out is set to the limit, and one above it is refused with 403. The full key is shown once."
        ),
        responses=error_responses(403),
    )
    def create_my_key(body: PersonKeyBody, request: Request) -> dict[str, Any]:
        principal = person_of(request)
        now = services.clock()
        with services.db.write() as conn:
            record_, full_key, holder = create_person_key(
                conn,
                principal,
                pepper=services.pepper,
                name=body.name,
                policy=body.policy(),
                now=now,
                service=body.service,
            )
            record(
                conn,
                actor_of(request),
                "key.create",
                now,
                org_id=record_.org_id,
                target=record_.prefix,
                after={**record_.public(), **holder.public()},
            )
        return {**record_.public(), **holder.public(), "key": full_key, "key_note": NEVER_SHOWN_AGAIN}

    return router
