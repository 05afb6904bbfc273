"""Who is asking: the operator (the admin token, or an operator account) or a person acting in one org.

A ``Principal`` is made only by authentication (``people.tokens.authenticate_token`` or the admin
token check); every decision about ownership and rights reads it, never the request body.
"""

from __future__ import annotations

from dataclasses import dataclass

from glasskey.people.audit import Actor
from glasskey.people.roles import OPERATOR


@dataclass(frozen=True)
class Principal:
    """``role`` is ``operator`` or the org role in force (a token never exceeds its person's role)."""

    role: str
    user_id: str | None = None
    email: str = ""
    org_id: str | None = None
    token_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def is_person(self) -> bool:
        return self.user_id is not None

    @property
    def label(self) -> str:
        return self.email or "admin token"

    def actor(self, address: str = "", request_id: str = "") -> Actor:
        return Actor(id=self.user_id or OPERATOR, label=self.label, address=address, request_id=request_id)


ADMIN_TOKEN = Principal(role=OPERATOR)
