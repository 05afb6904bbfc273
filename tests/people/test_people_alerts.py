"""Notices: budgets at 50/80/100%, keys failing, wallets empty; a member sees only their keys' notices."""

from __future__ import annotations

from datetime import timedelta

from conftest_helpers import NOW
from glasskey.alerts.notices import notices
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, list_keys
from glasskey.orgs.service import create_org, top_up
from glasskey.store.tables import key_spend
from people_api import ADMIN, admin_client, org_with_tokens
from people_helpers import PEPPER, add_receipt


def _key(conn, org_id, name, **policy):
    key, _ = create_key(conn, pepper=PEPPER, org_id=org_id, name=name, policy=KeyPolicy(**policy), now=NOW)
    return key


def _receipts(conn, key, org_id, failed, succeeded):
    for index in range(failed + succeeded):
        add_receipt(
            conn,
            key,
            f"req_{key.public_id}_{index}",
            status="failed" if index < failed else "succeeded",
            created_at=NOW - timedelta(minutes=5),
        )


def test_budget_failure_and_wallet_notices_say_what_needs_attention(db):
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        half = _key(conn, org.id, "half", budget_total_micros=1000)
        most = _key(conn, org.id, "most", budget_daily_micros=1000)
        spent = _key(conn, org.id, "spent", budget_total_micros=1000)
        flaky = _key(conn, org.id, "flaky")
        calm = _key(conn, org.id, "calm")
        conn.execute(key_spend.insert().values(key_id=half.id, period="total", spent_micros=400, held_micros=100))
        conn.execute(
            key_spend.insert().values(key_id=most.id, period=NOW.date().isoformat(), spent_micros=850, held_micros=0)
        )
        conn.execute(key_spend.insert().values(key_id=spent.id, period="total", spent_micros=1000, held_micros=0))
        _receipts(conn, flaky, org.id, failed=5, succeeded=5)
        _receipts(conn, calm, org.id, failed=5, succeeded=4)  # 9 requests: too few to call it an alarm
        found = notices(conn, org.id, list_keys(conn, org.id), NOW)
    by_key = {(notice["kind"], notice.get("key")): notice for notice in found}
    assert by_key[("key_budget_total", half.prefix)]["threshold_percent"] == 50
    assert by_key[("key_budget_daily", most.prefix)]["threshold_percent"] == 80
    assert by_key[("key_budget_total", spent.prefix)]["level"] == "critical"
    assert by_key[("key_failures", flaky.prefix)]["failed"] == 5
    assert ("key_failures", calm.prefix) not in by_key
    assert ("wallet_empty", None) in by_key and by_key[("wallet_empty", None)]["wallet"] == "credit"
    assert found[0]["level"] == "critical"
    assert len(found) == 5


def test_a_member_sees_the_notices_of_their_own_keys_only(services):
    acme = org_with_tokens(services, "acme")
    with admin_client(services) as client:
        mine = client.post("/me/keys", json={"name": "mine", "budget_total_micros": 10}, headers=acme.auth("member"))
        owners = client.post("/me/keys", json={"name": "owners", "budget_total_micros": 10}, headers=acme.auth("owner"))
        with services.db.write() as conn:
            for key in (mine.json(), owners.json()):
                conn.execute(
                    key_spend.insert().values(key_id=key["id"], period="total", spent_micros=10, held_micros=0)
                )
        url = f"/orgs/{acme.team.org_id}/alerts"
        seen_by_member = {n.get("key") for n in client.get(url, headers=acme.auth("member")).json()["data"]}
        seen_by_admin = {n.get("key") for n in client.get(url, headers=ADMIN).json()["data"]}
    assert mine.json()["prefix"] in seen_by_member and owners.json()["prefix"] not in seen_by_member
    assert {mine.json()["prefix"], owners.json()["prefix"]} <= seen_by_admin
