"""Alert rules and firing: an owner's thresholds replace the defaults, and a crossing is sent once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from alert_helpers import VAULT, set_total_spend
from conftest_helpers import NOW
from glasskey.alerts.delivery import DeliveryLimits
from glasskey.alerts.firing import _record_firing, changed, evaluate
from glasskey.alerts.notices import notices
from glasskey.alerts.rules import (
    KEY_BUDGET,
    KEY_FAILURE_RATE,
    WALLET_BALANCE,
    AlertRule,
    delete_rule,
    rule_book,
    set_rule,
)
from glasskey.alerts.tables import alert_deliveries
from glasskey.alerts.webhooks import delete_webhook, set_webhook
from glasskey.errors import ClientError
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key, list_keys
from glasskey.orgs.service import create_org, top_up
from people_helpers import PEPPER, add_receipt

LIMITS = DeliveryLimits()


def _key(conn, org_id, name, **policy):
    key, _ = create_key(conn, pepper=PEPPER, org_id=org_id, name=name, policy=KeyPolicy(**policy), now=NOW)
    return key


def _sent(conn, org_id):
    rows = conn.execute(select(alert_deliveries.c.body).where(alert_deliveries.c.org_id == org_id)).all()
    return [json.loads(row.body)["alert"]["alert"] for row in rows]


def test_a_keys_own_rule_wins_over_the_orgs_which_wins_over_the_default(sqlite_db):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "credit", 1_000_000, NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        plain = _key(conn, org.id, "plain", budget_total_micros=1000)
        special = _key(conn, org.id, "special", budget_total_micros=1000)
        set_total_spend(conn, plain, 300)
        set_total_spend(conn, special, 300)
        assert {n["kind"] for n in notices(conn, org.id, list_keys(conn, org.id), NOW)} == set()
        set_rule(conn, org.id, AlertRule(KEY_BUDGET, "keys", budget_percents=(25,)), NOW)
        set_rule(conn, org.id, AlertRule(KEY_BUDGET, f"key:{special.id}", budget_percents=(90,)), NOW)
        set_rule(conn, org.id, AlertRule(WALLET_BALANCE, "wallet:routed", balance_below_micros=2_000_000), NOW)
        found = {(n["kind"], n.get("key")): n for n in notices(conn, org.id, list_keys(conn, org.id), NOW)}
        book = rule_book(conn, org.id)
    assert found[("key_budget_total", plain.prefix)]["threshold_percent"] == 25
    assert ("key_budget_total", special.prefix) not in found  # its own 90% rule: 30% is not an alarm
    assert (
        found[("wallet_low", None)]["wallet"] == "routed" and found[("wallet_low", None)]["below_micros"] == 2_000_000
    )
    in_force = {(rule.kind, rule.subject): rule for rule in book.in_force()}
    assert in_force[(KEY_FAILURE_RATE, "keys")].id is None  # still the default
    assert in_force[(KEY_BUDGET, "keys")].budget_percents == (25,)


def test_a_failure_rate_rule_sets_rate_window_and_least_requests(sqlite_db):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        flaky = _key(conn, org.id, "flaky")
        for index in range(4):  # 1 failure of 4, 40 minutes ago: outside the default 15 minutes
            status = "failed" if index == 0 else "succeeded"
            add_receipt(conn, flaky, f"req_{index}", status=status, created_at=NOW - timedelta(minutes=40))
        before = notices(conn, org.id, [flaky], NOW)
        rule = set_rule(
            conn,
            org.id,
            AlertRule(
                KEY_FAILURE_RATE, "keys", failure_rate_percent=25, failure_window_minutes=60, failure_min_requests=4
            ),
            NOW,
        )
        after = notices(conn, org.id, [flaky], NOW)
        delete_rule(conn, org.id, rule.id or "")
        back = notices(conn, org.id, [flaky], NOW)
    assert [n["kind"] for n in before if n["kind"] == "key_failures"] == []
    assert [(n["kind"], n["failed"], n["window_minutes"]) for n in after if n["kind"] == "key_failures"] == [
        ("key_failures", 1, 60)
    ]
    assert [n for n in back if n["kind"] == "key_failures"] == []


@pytest.mark.parametrize(
    "rule",
    [
        AlertRule(KEY_BUDGET, "keys", budget_percents=(0,)),
        AlertRule(KEY_BUDGET, "keys", budget_percents=(101,)),
        AlertRule(KEY_BUDGET, "keys", budget_percents=()),
        AlertRule(KEY_FAILURE_RATE, "keys", failure_rate_percent=50, failure_window_minutes=0),
        AlertRule(WALLET_BALANCE, "wallet:gold", balance_below_micros=5),
        AlertRule(WALLET_BALANCE, "wallet:credit", balance_below_micros=-1),
        AlertRule("key_mood", "keys"),
    ],
)
def test_out_of_bounds_rules_are_refused(sqlite_db, rule):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        with pytest.raises(ClientError):
            set_rule(conn, org.id, rule, NOW)


def test_a_threshold_crossing_fires_once_and_again_only_after_it_clears(db):
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "credit", 1_000_000, NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
        key = _key(conn, org.id, "k", budget_total_micros=1000)
        set_total_spend(conn, key, 100)
        assert evaluate(conn, org.id, NOW, LIMITS) == []  # 10%: nothing crossed
        set_total_spend(conn, key, 850)  # 50 and 80 crossed at once: one event, the highest
        fired = evaluate(conn, org.id, NOW, LIMITS)
        again = [evaluate(conn, org.id, NOW + timedelta(seconds=15 * n), LIMITS) for n in range(1, 4)]
        set_total_spend(conn, key, 600)  # below 80 again: 80 clears (an alert.cleared event), 50 still holds
        after_drop = evaluate(conn, org.id, NOW, LIMITS)
        set_total_spend(conn, key, 820)  # crossed 80 once more
        refired = evaluate(conn, org.id, NOW, LIMITS)
        sent = _sent(conn, org.id)
    assert [event["alert"]["threshold_percent"] for event in fired] == [80]
    assert fired[0]["type"] == "alert.fired" and fired[0]["org"]["name"] == "acme"
    assert again == [[], [], []]
    assert [(event["type"], event["alert"]["alert"]) for event in after_drop] == [
        ("alert.cleared", f"key_budget_total:{key.id}:80")
    ]
    assert [event["alert"]["alert"] for event in refired] == [f"key_budget_total:{key.id}:80"]
    assert sent.count(f"key_budget_total:{key.id}:80") == 3 and len(sent) == 3  # fired, cleared, fired


def test_a_crossing_recorded_by_one_process_is_not_sent_again_by_another(db):
    with db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "credit", 1_000_000, NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
        key = _key(conn, org.id, "k", budget_total_micros=1000)
        set_total_spend(conn, key, 1000)
    # Each sweep is its own transaction, as two gateway processes' would be: the firing row is shared.
    with db.write() as first:
        first_events = evaluate(first, org.id, NOW, LIMITS)
    with db.write() as second:
        second_events = evaluate(second, org.id, NOW, LIMITS)
        # And had it not seen the row yet, recording it again says so (INSERT ... ON CONFLICT DO NOTHING).
        recorded_again = _record_firing(second, org.id, [first_events[0]["alert"]["alert"]], NOW)
    # A webhook removed forgets what was firing and drops what was pending; set again, it is told anew, once.
    with db.write() as conn:
        delete_webhook(conn, org.id, NOW)
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/other", NOW, allow_private=True)
        anew = evaluate(conn, org.id, NOW, LIMITS)
        statuses = sorted(conn.scalars(select(alert_deliveries.c.status)))
    assert [event["alert"]["level"] for event in first_events] == ["critical"]
    assert second_events == [] and recorded_again == set()
    assert [event["alert"]["alert"] for event in anew] == [first_events[0]["alert"]["alert"]]
    assert statuses == ["dropped", "pending"]


def test_spend_and_failures_are_read_for_many_keys_at_once_in_bounded_batches(sqlite_db, monkeypatch):
    monkeypatch.setattr("glasskey.alerts.notices.IDS_PER_QUERY_MAX", 2)
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        keys = [_key(conn, org.id, f"k{index}", budget_total_micros=1000) for index in range(5)]
        for key in keys:
            set_total_spend(conn, key, 800)
            for index in range(10):
                add_receipt(conn, key, f"req_{key.id}_{index}", status="failed", created_at=NOW)
        found = notices(conn, org.id, keys, NOW)
    assert sorted(n["key"] for n in found if n["kind"] == "key_budget_total") == sorted(k.prefix for k in keys)
    assert sorted(n["key"] for n in found if n["kind"] == "key_failures") == sorted(k.prefix for k in keys)


def test_one_evaluation_past_the_queue_bound_logs_the_rest_as_dropped_and_then_only_reads(sqlite_db):
    limits = DeliveryLimits(pending_per_org_max=2)
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        top_up(conn, org.id, "credit", 1_000_000, NOW)
        top_up(conn, org.id, "routed", 1_000_000, NOW)
        set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
        for index in range(5):
            set_total_spend(conn, _key(conn, org.id, f"k{index}", budget_total_micros=1000), 1000)
        assert changed(conn, org.id, NOW) is True
        events = evaluate(conn, org.id, NOW, limits)
        statuses = sorted(conn.scalars(select(alert_deliveries.c.status)))
        assert changed(conn, org.id, NOW) is False  # steady: the sweep only reads
    assert len(events) == 5
    assert statuses == ["dropped", "dropped", "dropped", "pending", "pending"]
