"""Who a people page acts as, and in which org: read from the session and checked against the database.

A person's org is the session's (chosen at sign-in or with the org switcher), never the query's, and
their role is read again from the database at each page, so a demotion or a removal takes effect at
once (the gate's check of the session's role only decides which pages open). The operator has no org
of their own: their pages take one from ``?org=`` (the first org when none is named).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from glasskey.errors import NotFound
from glasskey.orgs.service import Org, get_org, list_orgs
from glasskey.people.members import memberships_of, role_in
from glasskey.people.principal import ADMIN_TOKEN, Principal
from glasskey.people.roles import OPERATOR
from glasskey.people.tables import users
from glasskey.people.users import ACTIVE
from glasskey.store.tables import orgs


@dataclass(frozen=True)
class Acting:
    """The principal in force (operator, or the person with their current role) and the org the page shows."""

    principal: Principal
    org: Org | None
    # The orgs the person may switch to: (org id, org name, role), in the order they joined; the
    # operator's: every org.
    choices: tuple[tuple[str, str, str], ...] = ()

    @property
    def is_operator(self) -> bool:
        return self.principal.is_operator

    @property
    def role(self) -> str:
        return self.principal.role


def session_still_valid(conn: Connection, person: dict[str, Any]) -> str | None:
    """The person's current role in the session's org, or None once the session must end (a password
    change moved the credential version, the account was disabled, or the person left the org)."""
    row = conn.execute(
        select(users.c.status, users.c.credential_version).where(users.c.id == person["user_id"])
    ).first()
    if row is None or row.status != ACTIVE or row.credential_version != person["credential_version"]:
        return None
    return role_in(conn, person["org_id"], person["user_id"])


def org_choices(conn: Connection, user_id: str) -> tuple[tuple[str, str, str], ...]:
    names = dict(conn.execute(select(orgs.c.id, orgs.c.name)).all())
    return tuple((m.org_id, names.get(m.org_id, m.org_id), m.role) for m in memberships_of(conn, user_id))


def acting(conn: Connection, person: dict[str, Any] | None, org_query: str | None) -> Acting | None:
    """The page's ``Acting``; None when the person's session is no longer good (the page ends it)."""
    if person is None:
        org: Org | None = None
        every = list_orgs(conn)
        org = get_org(conn, org_query) if org_query else (every[0] if every else None)
        # The operator picks among every org (the page's org tabs).
        return Acting(ADMIN_TOKEN, org, tuple((each.id, each.name, OPERATOR) for each in every))
    role = session_still_valid(conn, person)
    if role is None:
        return None
    principal = Principal(role=role, user_id=person["user_id"], email=person["email"], org_id=person["org_id"])
    return Acting(principal, get_org(conn, person["org_id"]), org_choices(conn, person["user_id"]))


def require_org(found: Acting) -> Org:
    if found.org is None:
        raise NotFound("there is no org yet: the operator creates one on the Wallets page")
    return found.org


def page_context(found: Acting, tab: str) -> dict[str, Any]:
    """What every people page's template needs: who acts, the org, the tab, and the operator's navigation."""
    org_query = f"?org={found.org.id}" if found.is_operator and found.org is not None else ""
    return {
        "acting": found,
        "org": found.org,
        "tab": tab,
        "org_query": org_query,
        # The operator's navigation is drawn only for the operator; a person's page has the people tabs.
        "signed_in": found.is_operator,
        "nav": "people" if tab != "audit" else "audit",
    }
