"""Helpers for the people tests: an org with one person of each role (made through the domain functions), receipts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from conftest_helpers import NOW
from glasskey.keys.service import KeyRecord
from glasskey.orgs.service import create_org
from glasskey.people.members import add_member
from glasskey.people.users import User, create_user
from glasskey.store.tables import receipts

PEPPER = "pepper-for-tests-0123456789abcdef"
PASSWORD = "a long passphrase 42"


@dataclass
class Team:
    org_id: str
    owner: User
    billing: User
    member: User
    viewer: User

    def of(self, role: str) -> User:
        return {"owner": self.owner, "billing": self.billing, "member": self.member, "viewer": self.viewer}[role]


def make_team(conn: Connection, name: str = "acme") -> Team:
    org = create_org(conn, name, NOW)
    people = {}
    for role in ("owner", "billing", "member", "viewer"):
        user = create_user(conn, f"{role}@{name}.example", PASSWORD, NOW)
        add_member(conn, "operator", org.id, user.id, role, NOW)
        people[role] = user
    return Team(org.id, **people)


def add_receipt(conn: Connection, key: KeyRecord, request_id: str, **fields: Any) -> None:
    """A receipt row of ``key`` as the gateway would leave one (tests of reading, not of writing, receipts)."""
    values: dict[str, Any] = {"endpoint": "chat", "status": "succeeded", "http_status": 200, "created_at": NOW}
    conn.execute(
        receipts.insert().values(
            request_id=request_id, key_id=key.id, key_public_id=key.public_id, org_id=key.org_id, **{**values, **fields}
        )
    )
