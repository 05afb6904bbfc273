"""Receipts say who held the key and who answers for it: the admin API, ``/v1/receipts`` and the dashboard.

Nothing is written on the request path for it: the holder is resolved when receipts are read, one
query for a whole page, so a service key handed over at offboarding names who answers for it now.
"""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import event
from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.app import build_app
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.people.holders import create_person_key, hand_over, holder_views
from glasskey.people.principal import Principal
from people_api import ADMIN
from people_helpers import PEPPER, add_receipt, make_team


def _world(services):
    with services.db.write() as conn:
        acme = make_team(conn, "acme")
        member = Principal(role="member", user_id=acme.member.id, email=acme.member.email, org_id=acme.org_id)
        personal, personal_secret, _ = create_person_key(
            conn, member, pepper=PEPPER, name="mine", policy=KeyPolicy(), now=NOW
        )
        nightly, _, _ = create_person_key(
            conn, member, pepper=PEPPER, name="bot", policy=KeyPolicy(), now=NOW, service="nightly"
        )
        operators, _ = create_key(
            conn, pepper=PEPPER, org_id=acme.org_id, name="ops", policy=KeyPolicy(), now=NOW, owner="the ops script"
        )
        add_receipt(conn, personal, "req_personal")
        add_receipt(conn, nightly, "req_nightly")
        add_receipt(conn, operators, "req_operators")
    return acme, personal, personal_secret, nightly


def test_the_admin_api_and_v1_receipts_name_the_holder_and_who_answers(services):
    acme, _personal, secret, nightly = _world(services)
    with TestClient(build_app(services)) as client:
        listed = client.get("/admin/api/receipts", params={"org_id": acme.org_id}, headers=ADMIN).json()["data"]
        holders = {receipt["request_id"]: receipt["holder"] for receipt in listed}
        assert holders["req_personal"] == {
            "kind": "person",
            "name": "member@acme.example",
            "responsible": "member@acme.example",
        }
        assert holders["req_nightly"] == {"kind": "service", "name": "nightly", "responsible": "member@acme.example"}
        assert holders["req_operators"] == {
            "kind": "unassigned",
            "name": "the ops script",
            "responsible": "the operator",
        }
        one = client.get("/admin/api/receipts/req_nightly", headers=ADMIN).json()
        assert one["holder"]["name"] == "nightly"
        mine = client.get("/v1/receipts", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
        assert [receipt["holder"]["kind"] for receipt in mine] == ["person"]
        own = client.get("/v1/receipts/req_personal", headers={"Authorization": f"Bearer {secret}"}).json()
        assert own["holder"]["responsible"] == "member@acme.example"
        with services.db.write() as conn:
            hand_over(conn, nightly.id, acme.owner.id)
        handed = client.get("/admin/api/receipts/req_nightly", headers=ADMIN).json()
        assert handed["holder"]["responsible"] == "owner@acme.example"  # resolved at read time


def test_a_page_of_holders_is_one_query(services):
    _acme, personal, _secret, nightly = _world(services)
    statements: list[str] = []
    with services.db.read() as conn:
        event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        views = holder_views(conn, [personal.id, nightly.id, personal.id])
    assert set(views) == {personal.id, nightly.id} and len(statements) == 1


def test_the_dashboards_receipt_pages_name_the_holder(services):
    _world(services)
    with TestClient(build_app(services), follow_redirects=False) as client:
        page = client.get("/signin").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        client.post("/signin", data={"csrf_token": csrf.group(1), "admin_token": "admin-token-for-tests-0123456789"})
        receipt = client.get("/receipts/req_nightly").text
        assert re.search(r"<dd data-holder>nightly \(a service\)</dd>", receipt)
        assert "<dd data-responsible>member@acme.example</dd>" in receipt
        listing = client.get("/receipts").text
        assert "held by nightly (a service) · member@acme.example answers for it" in listing
        assert "held by the ops script · the operator answers for it" in listing
        exported = {row["request_id"]: row for row in csv.DictReader(io.StringIO(client.get("/receipts.csv").text))}
        assert (exported["req_nightly"]["held_by"], exported["req_nightly"]["holder_kind"]) == ("nightly", "service")
        assert exported["req_nightly"]["responsible"] == "member@acme.example"
