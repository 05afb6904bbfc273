"""An admin API client for the people tests, and two orgs whose people hold access tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.admin import build_admin_app
from glasskey.people.tokens import create_token
from glasskey.services import Services
from people_helpers import Team, make_team

ADMIN = {"Authorization": "Bearer admin-token-for-tests-0123456789"}


def admin_client(services: Services) -> TestClient:
    app = Starlette(routes=[Mount("/admin/api", app=build_admin_app(services))])
    return TestClient(app, base_url="http://testserver/admin/api")


@dataclass
class Org:
    team: Team
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return self.tokens[role]


def org_with_tokens(services: Services, name: str) -> Org:
    with services.db.write() as conn:
        team = make_team(conn, name)
        org = Org(team)
        for role in ("owner", "billing", "member", "viewer"):
            _token, full = create_token(
                conn,
                pepper=services.pepper,
                user_id=team.of(role).id,
                org_id=team.org_id,
                role=role,
                name="t",
                now=NOW,
            )
            org.tokens[role] = {"Authorization": f"Bearer {full}"}
    return org
