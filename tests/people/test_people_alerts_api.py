"""The alerts admin API: owners set rules and the webhook, the other roles cannot; the endpoints are documented."""

from __future__ import annotations

from sqlalchemy import select

from alert_receiver import receiver
from glasskey.admin.api import build_admin_app
from glasskey.alerts.signing import verify
from glasskey.people.tables import audit_events
from people_api import ADMIN, admin_client, org_with_tokens

ALERT_ENDPOINTS = {
    ("get", "/orgs/{org_id}/alerts"),
    ("get", "/orgs/{org_id}/alerts/rules"),
    ("put", "/orgs/{org_id}/alerts/rules"),
    ("delete", "/orgs/{org_id}/alerts/rules/{rule_id}"),
    ("get", "/orgs/{org_id}/alerts/webhook"),
    ("put", "/orgs/{org_id}/alerts/webhook"),
    ("delete", "/orgs/{org_id}/alerts/webhook"),
    ("post", "/orgs/{org_id}/alerts/webhook/test"),
    ("get", "/orgs/{org_id}/alerts/deliveries"),
}


def test_only_an_owner_changes_rules_every_role_reads_them_and_the_endpoints_are_documented(services):
    paths = build_admin_app(services).openapi()["paths"]
    documented = {(method, path) for path, operations in paths.items() for method in operations}
    assert documented >= ALERT_ENDPOINTS
    assert "signing_secret" in paths["/orgs/{org_id}/alerts/webhook"]["put"]["description"]
    acme, other = org_with_tokens(services, "acme"), org_with_tokens(services, "other")
    url = f"/orgs/{acme.team.org_id}/alerts/rules"
    rule = {"kind": "wallet_balance", "wallet": "routed", "balance_below_micros": 5_000_000}
    with admin_client(services) as client:
        refused = {
            role: client.put(url, json=rule, headers=acme.auth(role)) for role in ("member", "billing", "viewer")
        }
        foreign = client.put(url, json=rule, headers=other.auth("owner"))
        made = client.put(url, json=rule, headers=acme.auth("owner"))
        read = client.get(url, headers=acme.auth("viewer")).json()["data"]
        member_delete = client.delete(f"{url}/{made.json()['id']}", headers=acme.auth("member"))
        bad = client.put(url, json={"kind": "key_budget", "budget_percents": [150]}, headers=acme.auth("owner"))
        float_money = client.put(url, json={**rule, "balance_below_micros": 1.5}, headers=acme.auth("owner"))
        deleted = client.delete(f"{url}/{made.json()['id']}", headers=ADMIN)
    assert {role: answer.status_code for role, answer in refused.items()} == {
        "member": 403,
        "billing": 403,
        "viewer": 403,
    }
    assert refused["member"].json()["error"]["source"] == "key"
    assert foreign.status_code == 404
    assert made.status_code == 200 and made.json()["subject"] == "wallet:routed"
    in_force = {(r["kind"], r["subject"]): r for r in read}
    assert in_force[("wallet_balance", "wallet:routed")]["balance_below_micros"] == 5_000_000
    assert in_force[("key_budget", "keys")]["default"] is True
    assert member_delete.status_code == 403
    assert bad.status_code == 400 and float_money.status_code == 400
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    with services.db.read() as conn:
        actions = list(conn.scalars(select(audit_events.c.action).where(audit_events.c.org_id == acme.team.org_id)))
    assert actions.count("alerts.rule") == 1 and actions.count("alerts.rule.delete") == 1 and "denied" in actions


def test_an_owner_sets_the_webhook_sends_a_test_and_reads_the_delivery_log(services):
    acme = org_with_tokens(services, "acme")
    base = f"/orgs/{acme.team.org_id}/alerts"
    owner = acme.auth("owner")
    with receiver([(202, b'{"received": true}')]) as hook, admin_client(services) as client:
        refused = client.put(f"{base}/webhook", json={"url": "http://169.254.169.254/x"}, headers=owner)
        no_hook = client.post(f"{base}/webhook/test", headers=owner)
        member = client.put(f"{base}/webhook", json={"url": hook.url}, headers=acme.auth("member"))
        made = client.put(f"{base}/webhook", json={"url": hook.url}, headers=owner)
        shown = client.get(f"{base}/webhook", headers=owner)
        tested = client.post(f"{base}/webhook/test", headers=owner)
        log = client.get(f"{base}/deliveries", headers=owner)
        member_log = client.get(f"{base}/deliveries", headers=acme.auth("member"))
        removed = client.delete(f"{base}/webhook", headers=owner)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "upstream_address_refused"
    assert refused.json()["error"]["param"] == "url"
    assert no_hook.status_code == 409 and no_hook.json()["error"]["code"] == "no_webhook"
    assert member.status_code == 403
    secret = made.json()["signing_secret"]
    assert made.status_code == 200 and secret.startswith("gkwh_")
    assert "signing_secret" not in shown.json() and secret not in shown.text
    assert tested.status_code == 200 and tested.json()["status"] == "delivered"
    assert tested.json()["answers"][0]["status_code"] == 202
    assert tested.json()["answers"][0]["excerpt"] == '{"received": true}'
    (got,) = hook.received
    assert verify(
        secret,
        got.headers["glasskey-timestamp"],
        got.headers["glasskey-signature"],
        got.body,
        now_seconds=int(got.headers["glasskey-timestamp"]),
    )
    assert [d["event"] for d in log.json()["data"]] == ["alert.test"]
    assert member_log.status_code == 403
    assert removed.status_code == 200
