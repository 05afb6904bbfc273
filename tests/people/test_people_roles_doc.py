"""docs/roles.md is the role table of the code, row for row, and the table covers every route served."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from glasskey.admin.access import ADMIN_ACCESS, DASHBOARD_ACCESS, roles_table_rows
from glasskey.admin.api import build_admin_app
from glasskey.dashboard import build_dashboard

ROLES_DOC = Path(__file__).parents[2] / "docs" / "roles.md"


def test_the_doc_lists_exactly_the_rules_in_the_code():
    documented = [line for line in ROLES_DOC.read_text().splitlines() if line.startswith(("| API |", "| page |"))]
    assert documented == roles_table_rows()


def test_every_admin_endpoint_has_a_rule_and_every_rule_an_endpoint(services):
    served = {
        (method.upper(), path)
        for path, operations in build_admin_app(services).openapi()["paths"].items()
        for method in operations
    }
    assert served == set(ADMIN_ACCESS)


def test_every_dashboard_page_has_a_rule_and_every_rule_a_page(services):
    served = {
        (method, route.path)
        for route in build_dashboard(services).routes
        if isinstance(route, Route)
        for method in set(route.methods or ()) - {"HEAD"}
    }
    assert served == set(DASHBOARD_ACCESS)
