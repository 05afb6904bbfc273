"""The Alerts page: an owner sets a rule and the webhook, sees the secret once, sends a test and reads the log;
a member reads the notices and rules and changes nothing."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from alert_receiver import receiver
from glasskey.alerts.rules import list_rules
from glasskey.dashboard import build_dashboard
from people_helpers import PASSWORD, make_team


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _sign_in(client, email):
    csrf = _csrf(client.get("/signin").text)
    client.post("/signin", data={"csrf_token": csrf, "email": email, "password": PASSWORD, "code": ""})
    return _csrf(client.get("/alerts").text)


def test_an_owner_sets_rules_and_webhook_sends_a_test_and_a_member_only_reads(services):
    with services.db.write() as conn:
        team = make_team(conn, "acme")
    with receiver([(200, b"got it")]) as hook:
        with TestClient(build_dashboard(services), follow_redirects=False) as owner:
            csrf = _sign_in(owner, "owner@acme.example")
            rule = {"csrf_token": csrf, "kind": "key_budget", "budget_percents": "70, 95", "enabled": "on"}
            saved = owner.post("/alerts/rules", data=rule)
            bad = owner.post("/alerts/rules", data={**rule, "budget_percents": "lots"})
            bad_flash = owner.get("/alerts").text
            made = owner.post("/alerts/webhook", data={"csrf_token": csrf, "url": hook.url})
            secret = re.search(r"data-signing-secret>([^<]+)<", made.text)
            again = owner.get("/alerts").text
            tested = owner.post("/alerts/test", data={"csrf_token": csrf})
            page = owner.get("/alerts").text
        with TestClient(build_dashboard(services), follow_redirects=False) as member:
            member_csrf = _sign_in(member, "member@acme.example")
            member_page = member.get("/alerts")
            refused = member.post("/alerts/rules", data={**rule, "csrf_token": member_csrf, "budget_percents": "1"})
    assert saved.status_code == 303 and saved.headers["location"] == "/alerts"
    assert bad.status_code == 303 and "Not changed" in bad_flash and "whole numbers" in bad_flash
    assert made.status_code == 200 and secret is not None and secret.group(1).startswith("gkwh_")
    assert secret.group(1) not in again and "data-signing-secret" not in again  # shown once
    assert tested.status_code == 303
    assert "Test delivery delivered: the receiver answered 200" in page
    assert "<b>200</b>" in page and "got it" in page and len(hook.received) == 1
    assert 'data-rule="key_budget keys"' in page and "70%, 95%" in page
    assert member_page.status_code == 200 and "routed wallet has nothing left" in member_page.text
    assert "data-rule-form" not in member_page.text and "data-webhook-form" not in member_page.text
    assert hook.url not in member_page.text
    assert refused.status_code in (303, 403)
    with services.db.read() as conn:
        assert [r.budget_percents for r in list_rules(conn, team.org_id)] == [(70, 95)]


def test_the_operator_picks_the_org_with_a_query_and_sets_its_rules(services):
    with services.db.write() as conn:
        make_team(conn, "first")
        team = make_team(conn, "second")
    with TestClient(build_dashboard(services), follow_redirects=False) as operator:
        csrf = _csrf(operator.get("/signin").text)
        operator.post("/signin", data={"csrf_token": csrf, "admin_token": "admin-token-for-tests-0123456789"})
        page = operator.get(f"/alerts?org={team.org_id}")
        csrf = _csrf(page.text)
        rule = {
            "csrf_token": csrf,
            "org": team.org_id,
            "kind": "wallet_balance",
            "wallet": "credit",
            "below_micros": "7",
        }
        saved = operator.post("/alerts/rules", data=rule)
    assert page.status_code == 200 and "second" in page.text and "data-rule-form" in page.text
    assert saved.status_code == 303 and saved.headers["location"] == f"/alerts?org={team.org_id}"
    with services.db.read() as conn:
        assert [(r.subject, r.balance_below_micros) for r in list_rules(conn, team.org_id)] == [("wallet:credit", 7)]
