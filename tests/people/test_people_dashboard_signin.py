"""The dashboard's sign-in form: wrong admin tokens are throttled per address, and every attempt is audited."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from conftest_helpers import NOW
from glasskey.app import build_app
from glasskey.dashboard import build_dashboard
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org
from glasskey.people.audit import list_events

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_wrong_tokens_are_throttled_with_retry_after_and_audited(services):
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        csrf = _csrf(client.get("/signin").text)
        statuses = []
        for _ in range(11):
            answer = client.post("/signin", data={"csrf_token": csrf, "admin_token": "wrong-token-" * 3})
            statuses.append(answer.status_code)
        assert statuses == [401] * 10 + [429]
        assert "Too many failed sign-ins from this address" in answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        # The right token waits too: a throttled answer says nothing about the guess.
        right = client.post("/signin", data={"csrf_token": csrf, "admin_token": ADMIN_TOKEN})
        assert right.status_code == 429
    with services.db.read() as conn:
        outcomes = [event["outcome"] for event in list_events(conn, action="signin")]
    assert outcomes == ["failed"] * 10


def test_a_right_token_signs_in_and_is_audited(services):
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        csrf = _csrf(client.get("/signin").text)
        assert client.post("/signin", data={"csrf_token": csrf, "admin_token": ADMIN_TOKEN}).status_code == 303
    with services.db.read() as conn:
        assert [event["outcome"] for event in list_events(conn, action="signin")] == ["ok"]


def test_the_dashboard_the_admin_api_and_metrics_share_one_throttle(services):
    wrong = {"Authorization": "Bearer wrong-token-wrong-token-wrong"}
    with TestClient(build_app(services), follow_redirects=False) as client:
        csrf = _csrf(client.get("/signin").text)
        for _ in range(5):
            assert (
                client.post("/signin", data={"csrf_token": csrf, "admin_token": "wrong-token-" * 3}).status_code == 401
            )
        for _ in range(5):
            assert client.get("/metrics", headers=wrong).status_code == 401
        refused = client.get("/admin/api/orgs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_failed_sign_ins"
        assert client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 429


def test_changes_made_in_the_dashboard_are_audited_under_the_org_they_touched(services):
    with services.db.write() as conn:
        org = create_org(conn, "acme", NOW)
        key, _ = create_key(conn, pepper=services.pepper, org_id=org.id, name="k", policy=KeyPolicy(), now=NOW)
    with TestClient(build_dashboard(services), follow_redirects=False) as client:
        csrf = _csrf(client.get("/signin").text)
        client.post("/signin", data={"csrf_token": csrf, "admin_token": ADMIN_TOKEN})
        csrf = _csrf(client.get("/keys").text)
        assert client.post(f"/keys/{key.id}/revoke", data={"csrf_token": csrf}).status_code == 303
        refused = client.post("/orgs", data={"csrf_token": "forged", "name": "nope"})
        assert refused.status_code == 403
    with services.db.read() as conn:
        events = list_events(conn, org_id=org.id)
        everything = [event["action"] for event in list_events(conn)]
    assert [(event["action"], event["actor"]) for event in events] == [("key.revoke", "operator")]
    assert "POST /orgs" not in everything  # a refused form changed nothing
