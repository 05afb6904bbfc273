"""The demo's people: an owner and a member of the demo org, so both views can be tried at once.

Their passwords are random and printed once, when the accounts are made; a later demo start reuses
the accounts and says the passwords were shown before (only their hashes are kept).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select

from glasskey.errors import ClientError
from glasskey.people.audit import Actor, record
from glasskey.people.members import add_member
from glasskey.people.passwords import check_policy
from glasskey.people.roles import OPERATOR
from glasskey.people.tables import users
from glasskey.people.users import create_user
from glasskey.services import Services

DEMO_PEOPLE = (("owner", "owner@demo.example"), ("member", "member@demo.example"))


@dataclass(frozen=True)
class DemoPerson:
    email: str
    role: str
    password: str | None  # None: made by an earlier demo start, its password shown then


def _new_password(email: str) -> str:
    while True:
        candidate = secrets.token_urlsafe(15)
        try:
            check_policy(candidate, email=email)
        except ClientError:
            continue
        return candidate


def ensure_demo_people(services: Services, org_id: str) -> list[DemoPerson]:
    now = services.clock()
    people = []
    with services.db.write() as conn:
        for role, email in DEMO_PEOPLE:
            if conn.scalar(select(users.c.id).where(users.c.email == email)) is not None:
                people.append(DemoPerson(email, role, None))
                continue
            password = _new_password(email)
            user = create_user(conn, email, password, now)
            add_member(conn, OPERATOR, org_id, user.id, role, now)
            record(conn, Actor(OPERATOR, "demo"), "member.add", now, org_id=org_id, target=email, after={"role": role})
            people.append(DemoPerson(email, role, password))
    return people


def people_banner_lines(people: list[DemoPerson], public_url: str) -> list[str]:
    """Comment lines for the demo banner: who can sign in, and how."""
    lines = ["", f"# --- people: sign in at {public_url}/signin by email (or POST /admin/api/signin for a token)"]
    for person in people:
        secret = person.password if person.password is not None else "(shown when first made; not kept)"
        lines.append(f"# {person.role}: {person.email}  password: {secret}")
    return lines
