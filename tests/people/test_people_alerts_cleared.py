"""An alert that clears is sent as an ``alert.cleared`` event, once, in the shape docs/alerts.md shows."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

from alert_helpers import ALERTS_DOC, VAULT, Clock, set_total_spend
from alert_receiver import receiver
from conftest_helpers import NOW
from glasskey.alerts.delivery import DeliveryLimits
from glasskey.alerts.firing import evaluate
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.webhooks import set_webhook
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, revoke_key
from glasskey.orgs.service import create_org, top_up
from people_helpers import PEPPER, add_receipt


def _documented_cleared_event():
    blocks = re.findall(r"```json\n(.*?)```", ALERTS_DOC.read_text(), re.S)
    (cleared,) = [json.loads(block) for block in blocks if '"alert.cleared"' in block]
    return cleared


def test_a_cleared_alert_is_sent_once_to_the_webhook_in_the_documented_shape(sqlite_db):
    clock = Clock()
    with receiver() as hook:
        with sqlite_db.write() as conn:
            org = create_org(conn, "acme", NOW)
            top_up(conn, org.id, "credit", 1_000_000, NOW)  # the routed wallet stays empty: it fires
            set_webhook(conn, VAULT, org.id, hook.url, NOW, allow_private=True)
            key, _ = create_key(
                conn, pepper=PEPPER, org_id=org.id, name="ci", policy=KeyPolicy(budget_total_micros=1000), now=NOW
            )
            set_total_spend(conn, key, 600)  # 50% crossed
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=True)
        fired = runner.evaluate_all()
        asyncio.run(runner.deliver_due())
        with sqlite_db.write() as conn:
            set_total_spend(conn, key, 900)  # 80% crossed, later than 50%
        runner.evaluate_all()
        asyncio.run(runner.deliver_due())
        clock.now = NOW + timedelta(minutes=15)
        with sqlite_db.write() as conn:
            set_total_spend(conn, key, 100)  # both budget thresholds clear in one evaluation
            top_up(conn, org.id, "routed", 1_000_000, clock())  # the wallet clears
        cleared = runner.evaluate_all()
        asyncio.run(runner.deliver_due())
        again = runner.evaluate_all()  # nothing changed since: nothing more to send
    events = [json.loads(got.body) for got in hook.received]
    assert fired == 2 and cleared == 2 and again == 0
    assert [event["type"] for event in events] == ["alert.fired"] * 3 + ["alert.cleared"] * 2
    by_kind = {event["alert"]["kind"]: event for event in events[3:]}
    budget, wallet = by_kind["key_budget_total"], by_kind["wallet_balance"]
    assert budget["alert"] == {
        "alert": f"key_budget_total:{key.id}:80",
        "kind": "key_budget_total",
        "level": "info",
        "key": key.prefix,
        "key_id": key.id,
        "threshold_percent": 80,
        "thresholds_percent": [80, 50],
        "message": f"Key ci ({key.prefix}) is back below 80% of its total budget",
        "since": NOW.isoformat(),
        "cleared_at": clock.now.isoformat(),
    }
    assert wallet["alert"]["wallet"] == "routed" and wallet["alert"]["below_micros"] == 1
    assert wallet["org"] == {"id": org.id, "name": "acme"} and wallet["created_at"] == clock.now.isoformat()
    # The example in docs/alerts.md has exactly the fields a real event has.
    documented = _documented_cleared_event()
    assert set(documented) == set(budget) and set(documented["alert"]) == set(budget["alert"])
    assert set(documented["org"]) == set(budget["org"])


def test_failures_that_left_the_window_and_a_revoked_keys_budget_clear_too(sqlite_db):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "credit", 1_000_000, NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
        flaky, _ = create_key(conn, pepper=PEPPER, org_id=org.id, name="flaky", policy=KeyPolicy(), now=NOW)
        spent, _ = create_key(
            conn, pepper=PEPPER, org_id=org.id, name="spent", policy=KeyPolicy(budget_total_micros=1000), now=NOW
        )
        set_total_spend(conn, spent, 1000)
        for index in range(10):
            add_receipt(conn, flaky, f"req_{index}", status="failed", created_at=NOW)
        fired = evaluate(conn, org.id, NOW, DeliveryLimits())
        revoke_key(conn, spent.id, NOW)
        later = NOW + timedelta(minutes=16)  # the failures are past the default 15-minute window
        cleared = evaluate(conn, org.id, later, DeliveryLimits())
    assert sorted(event["alert"]["kind"] for event in fired) == ["key_budget_total", "key_failures"]
    assert {event["type"] for event in cleared} == {"alert.cleared"}
    found = {event["alert"]["kind"]: event["alert"] for event in cleared}
    assert found["key_failures"]["key_id"] == flaky.id and found["key_failures"]["key"] == flaky.prefix
    assert found["key_budget_total"]["thresholds_percent"] == [100, 80, 50]
