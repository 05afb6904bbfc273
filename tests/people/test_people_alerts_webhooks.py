"""Alert webhooks against a receiver on loopback: signed bodies, the replay window, retries with backoff,
the delivery log, the address policy, and a secret shown once and stored sealed."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import select

from alert_helpers import ALERTS_DOC, VAULT, Clock
from alert_receiver import receiver
from conftest_helpers import NOW, TEST_ENCRYPTION_KEY
from glasskey.alerts.delivery import DeliveryLimits, backoff_seconds, enqueue, list_deliveries
from glasskey.alerts.runner import AlertRunner
from glasskey.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, verify
from glasskey.alerts.tables import alert_webhooks
from glasskey.alerts.webhooks import reseal_webhook_secrets, set_webhook
from glasskey.orgs.service import create_org
from glasskey.routing.credentials import CredentialVault
from glasskey.routing.guarded_resolver import UpstreamAddressResolver
from glasskey.routing.upstream_address import UpstreamAddressRefused


def _org_with_webhook(db, url, clock):
    with db.write() as conn:
        org = create_org(conn, "acme", clock())
        _webhook, secret = set_webhook(conn, VAULT, org.id, url, clock(), allow_private=True)
    return org.id, secret


def _queue(db, org_id, clock, limits, alert=None):
    with db.write() as conn:
        payload = {"id": "evt_1", "type": "alert.fired", "alert": alert or {"kind": "wallet_empty"}}
        return enqueue(conn, org_id, "alert.fired", payload, clock(), limits)


def test_a_delivery_is_signed_over_timestamp_and_body_and_the_docs_receiver_accepts_it(sqlite_db):
    clock = Clock()
    with receiver() as hook:
        org_id, secret = _org_with_webhook(sqlite_db, hook.url, clock)
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=True)
        _queue(sqlite_db, org_id, clock, runner.limits)
        statuses = asyncio.run(runner.deliver_due())
    (got,) = hook.received
    assert statuses == ["delivered"]
    assert got.path == "/hooks/glasskey" and json.loads(got.body)["type"] == "alert.fired"
    timestamp = got.headers[TIMESTAMP_HEADER]
    assert int(timestamp) == int(NOW.timestamp())
    assert got.headers[SIGNATURE_HEADER] == signature(secret, int(timestamp), got.body)
    assert verify(secret, timestamp, got.headers[SIGNATURE_HEADER], got.body, now_seconds=NOW.timestamp())
    # The receiver's snippet in docs/alerts.md, run as written, accepts it too.
    snippet = re.search(r"```python\n(.*?)```", ALERTS_DOC.read_text(), re.S)
    assert snippet is not None
    scope: dict[str, Any] = {}
    exec(snippet.group(1), scope)
    headers = {"Glasskey-Timestamp": timestamp, "Glasskey-Signature": got.headers[SIGNATURE_HEADER]}
    assert scope["verify_glasskey_webhook"](secret, headers, got.body, now=NOW.timestamp()) is True
    assert scope["verify_glasskey_webhook"](secret, headers, got.body + b" ", now=NOW.timestamp()) is False


def test_a_replayed_or_tampered_delivery_fails_verification():
    secret, body = "gkwh_test", b'{"id":"evt_1"}'
    sent_at = int(time.time())
    signed = signature(secret, sent_at, body)
    assert verify(secret, str(sent_at), signed, body, now_seconds=sent_at + 299)
    assert not verify(secret, str(sent_at), signed, body, now_seconds=sent_at + 301)  # replayed too late
    assert not verify(secret, str(sent_at + 400), signed, body, now_seconds=sent_at + 400)  # timestamp moved
    assert not verify(secret, str(sent_at), signed, b'{"id":"evt_2"}', now_seconds=sent_at)  # body changed
    assert not verify("gkwh_other", str(sent_at), signed, body, now_seconds=sent_at)  # wrong secret
    assert not verify(secret, "yesterday", signed, body, now_seconds=sent_at)


def test_a_500_is_retried_with_exponential_backoff_then_delivered_and_the_log_keeps_every_answer(sqlite_db):
    clock = Clock()
    limits = DeliveryLimits(retry_base_seconds=10)
    script = [(500, b"database down"), (503, b"x" * 5000), (200, b"thanks")]
    with receiver(script) as hook:
        org_id, _secret = _org_with_webhook(sqlite_db, hook.url, clock)
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=True, limits=limits)
        _queue(sqlite_db, org_id, clock, limits)
        rounds = [asyncio.run(runner.deliver_due())]
        clock.now = NOW + timedelta(seconds=9)  # not due yet: the first backoff is 10 s
        rounds.append(asyncio.run(runner.deliver_due()))
        clock.now = NOW + timedelta(seconds=10)
        rounds.append(asyncio.run(runner.deliver_due()))
        clock.now = NOW + timedelta(seconds=10 + 19)  # the second backoff is 20 s
        rounds.append(asyncio.run(runner.deliver_due()))
        clock.now = NOW + timedelta(seconds=10 + 20)
        rounds.append(asyncio.run(runner.deliver_due()))
        with sqlite_db.read() as conn:
            (delivery,) = list_deliveries(conn, org_id)
    assert rounds == [["pending"], [], ["pending"], [], ["delivered"]]
    assert len(hook.received) == 3
    assert len({r.headers["glasskey-event-id"] for r in hook.received}) == 1  # one event, three attempts
    assert [backoff_seconds(n, limits) for n in (1, 2, 3)] == [10, 20, 40]
    answers = delivery["answers"]
    assert [a["status_code"] for a in answers] == [500, 503, 200]
    assert answers[0]["excerpt"] == "database down" and answers[2]["excerpt"] == "thanks"
    assert len(answers[1]["excerpt"]) == 512  # a long answer is cut
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3


def test_attempts_are_bounded_then_the_delivery_fails(sqlite_db):
    clock = Clock()
    limits = DeliveryLimits(attempts_max=2, retry_base_seconds=1)
    with receiver([(500, b"no")]) as hook:
        org_id, _secret = _org_with_webhook(sqlite_db, hook.url, clock)
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=True, limits=limits)
        _queue(sqlite_db, org_id, clock, limits)
        first = asyncio.run(runner.deliver_due())
        clock.now = NOW + timedelta(seconds=1)
        second = asyncio.run(runner.deliver_due())
        clock.now = NOW + timedelta(hours=1)
        third = asyncio.run(runner.deliver_due())
    assert (first, second, third) == (["pending"], ["failed"], [])
    assert len(hook.received) == 2


def test_the_pending_queue_is_bounded_the_oldest_event_is_dropped(sqlite_db):
    clock = Clock()
    limits = DeliveryLimits(pending_per_org_max=3, log_per_org_max=4)
    org_id, _secret = _org_with_webhook(sqlite_db, "http://127.0.0.1:9/none", clock)
    for index in range(6):
        clock.now = NOW + timedelta(seconds=index)
        with sqlite_db.write() as conn:
            enqueue(conn, org_id, "alert.fired", {"id": f"evt_{index}", "n": index}, clock(), limits)
    with sqlite_db.read() as conn:
        log = list_deliveries(conn, org_id)
    assert [(d["id"], d["status"]) for d in log] == [
        ("evt_5", "pending"),
        ("evt_4", "pending"),
        ("evt_3", "pending"),
        ("evt_2", "dropped"),
    ]


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://metadata.google.internal/hook", True),
        ("http://user:pass@example.com/hook", True),
        ("ftp://example.com/hook", True),
        ("http://127.0.0.1:8080/hook", False),
        ("http://10.0.0.7/hook", False),
    ],
)
def test_a_webhook_url_the_address_policy_refuses_is_not_saved(sqlite_db, url, allow_private):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        with pytest.raises(UpstreamAddressRefused) as refused:
            set_webhook(conn, VAULT, org.id, url, NOW, allow_private=allow_private)
        assert conn.execute(select(alert_webhooks)).first() is None
    assert refused.value.param == "url" and "webhook url refused" in refused.value.message


def test_a_url_refused_at_delivery_time_fails_at_once_without_retries(sqlite_db):
    clock = Clock()
    with receiver() as hook:
        org_id, _secret = _org_with_webhook(sqlite_db, hook.url, clock)
        # The operator turned allow_private_upstreams off since the webhook was saved.
        runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=False)
        _queue(sqlite_db, org_id, clock, runner.limits)
        statuses = asyncio.run(runner.deliver_due())
        with sqlite_db.read() as conn:
            (delivery,) = list_deliveries(conn, org_id)
    assert statuses == ["failed"] and hook.received == []
    assert "loopback or private" in delivery["answers"][0]["error"]


def test_the_signing_secret_is_shown_once_and_stored_sealed(sqlite_db):
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        webhook, secret = set_webhook(conn, VAULT, org.id, "https://hooks.example.com/a", NOW, allow_private=False)
        moved, kept = set_webhook(conn, VAULT, org.id, "https://hooks.example.com/b", NOW, allow_private=False)
        _rotated, new_secret = set_webhook(
            conn, VAULT, org.id, "https://hooks.example.com/b", NOW, allow_private=False, rotate_secret=True
        )
        stored = conn.execute(select(alert_webhooks.c.secret_sealed)).scalar_one()
    assert secret is not None and secret.startswith("gkwh_") and kept is None
    assert new_secret is not None and new_secret != secret
    assert secret not in webhook.secret_sealed and new_secret not in stored
    assert VAULT.open(stored) == new_secret
    assert webhook.public()["secret"] == f"{secret[:3]}…{secret[-4:]}" and "secret_sealed" not in webhook.public()
    assert moved.public()["url"] == "https://hooks.example.com/b"


def test_rotating_the_encryption_key_reseals_webhook_secrets_and_an_unopenable_one_fails_alone(sqlite_db):
    clock = Clock()
    new_key = CredentialVault.generate_key()
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        _webhook, secret = set_webhook(conn, VAULT, org.id, "http://127.0.0.1:9/hook", NOW, allow_private=True)
        assert reseal_webhook_secrets(conn, CredentialVault([new_key, TEST_ENCRYPTION_KEY])) == 1
        stored = conn.execute(select(alert_webhooks.c.secret_sealed)).scalar_one()
    assert CredentialVault([new_key]).open(stored) == secret
    # Without the key it was sealed with, the delivery cannot be signed: it fails, logged, and the round goes on.
    runner = AlertRunner(sqlite_db, CredentialVault([CredentialVault.generate_key()]), clock, allow_private=True)
    _queue(sqlite_db, org.id, clock, runner.limits)
    assert asyncio.run(runner.deliver_due()) == []
    with sqlite_db.read() as conn:
        (delivery,) = list_deliveries(conn, org.id)
    assert delivery["status"] == "failed" and "rotate the webhook secret" in delivery["answers"][0]["error"]


class _RebindingResolver(AbstractResolver):
    """A name server that answers every name with loopback: a public-looking name rebound inwards."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


def test_a_name_that_resolves_to_a_refused_address_is_not_reached_and_not_retried(sqlite_db, monkeypatch):
    monkeypatch.setattr(
        "glasskey.alerts.runner.UpstreamAddressResolver",
        lambda allow_private: UpstreamAddressResolver(allow_private=allow_private, inner=_RebindingResolver()),
    )
    clock = Clock()
    with sqlite_db.write() as conn:
        org = create_org(conn, "acme", NOW)
        set_webhook(conn, VAULT, org.id, "http://hooks.example.com/glasskey", NOW, allow_private=False)
    runner = AlertRunner(sqlite_db, VAULT, clock, allow_private=False)
    _queue(sqlite_db, org.id, clock, runner.limits)
    statuses = asyncio.run(runner.deliver_due())
    with sqlite_db.read() as conn:
        (delivery,) = list_deliveries(conn, org.id)
    assert statuses == ["failed"]
    assert "resolves only to refused addresses" in delivery["answers"][0]["error"]
